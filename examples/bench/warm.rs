//! The warm path over HTTPS: oha against ecr-guard and against the floor, same
//! bodies, same settings, interleaved within each run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What one oha run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    /// Successful (HTTP 200) responses per second.
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Requests that were not answered 200.
    pub failed: u64,
    /// The server's CPU time (user + system, all threads) per successful
    /// request, in µs: unlike req/s, it does not depend on how the two cores
    /// were shared with oha.
    pub cpu_us: f64,
    /// oha's CPU time per successful request, in µs. The two share two cores,
    /// so saturated throughput is about 2 cores / (server + oha CPU per
    /// request): oha's share is the part of the ratio the server cannot change.
    pub oha_cpu_us: f64,
}

impl Load {
    /// Server and load generator CPU per request: what saturated throughput
    /// on the shared cores is inversely proportional to.
    pub fn total_cpu_us(&self) -> f64 {
        self.cpu_us + self.oha_cpu_us
    }
}

pub struct Oha<'a> {
    pub binary: &'a Path,
    pub bodies: &'a Path,
    pub duration: Duration,
    pub concurrency: usize,
}

impl Oha<'_> {
    /// Saturated (`rate: None`) or fixed-rate load on `url`, served by
    /// process `pid`.
    pub fn run(&self, url: &str, pid: u32, rate: Option<u32>) -> Load {
        let mut command = Command::new(self.binary);
        command
            .args(["--no-tui", "--output-format", "json", "--insecure"])
            .args(["--http-version", "1.1"])
            .args(["-z", &format!("{}ms", self.duration.as_millis())])
            .args(["-c", &self.concurrency.to_string()])
            .args(["-m", "POST", "-T", "application/json"])
            .arg("-Z")
            .arg(self.bodies);
        if let Some(rate) = rate {
            // Open-loop: requests are due at a fixed rate, and latency is
            // counted from when each was due (no coordinated omission).
            command
                .args(["-q", &rate.to_string()])
                .arg("--latency-correction");
        }
        command.arg(url);
        let cpu_before = cpu_ticks(&pid.to_string());
        let oha_before = waited_children_ticks();
        let output = command.output().expect("run oha");
        let cpu = cpu_ticks(&pid.to_string()).saturating_sub(cpu_before);
        // oha is the only child that ends (and is waited for) in between.
        let oha_cpu = waited_children_ticks().saturating_sub(oha_before);
        assert!(
            output.status.success(),
            "oha failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("oha prints JSON");
        let ok = json["statusCodeDistribution"]["200"].as_u64().unwrap_or(0);
        let all: u64 = json["statusCodeDistribution"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0);
        // Requests still in flight when the duration ends are reported as
        // "aborted due to deadline": not failures of the server.
        let errors: u64 = json["errorDistribution"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(error, _)| !error.contains("deadline"))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            })
            .unwrap_or(0);
        let total_s = json["summary"]["total"].as_f64().unwrap_or(f64::NAN);
        let latency = &json["metrics"]["latency_ms"];
        Load {
            rps: ok as f64 / total_s,
            p50_ms: latency["p50"].as_f64().unwrap_or(f64::NAN),
            p99_ms: latency["p99"].as_f64().unwrap_or(f64::NAN),
            max_ms: latency["max"].as_f64().unwrap_or(f64::NAN),
            failed: all - ok + errors,
            cpu_us: cpu as f64 * 1e6 / USER_HZ / ok as f64,
            oha_cpu_us: oha_cpu as f64 * 1e6 / USER_HZ / ok as f64,
        }
    }
}

/// The unit of `/proc/PID/stat`'s CPU times: fixed at 100 by Linux's ABI.
const USER_HZ: f64 = 100.0;

/// utime + stime of process `pid` (every thread), in 1/USER_HZ s; 0 if gone.
fn cpu_ticks(pid: &str) -> u64 {
    stat_fields(pid, 14) + stat_fields(pid, 15)
}

/// cutime + cstime of this process: the CPU time of its children that ended
/// and were waited for.
fn waited_children_ticks() -> u64 {
    stat_fields("self", 16) + stat_fields("self", 17)
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`; 0 if unreadable.
fn stat_fields(pid: &str, n: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold
    // spaces, start at field 3 (state).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    rest.split_whitespace()
        .nth(n - 3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

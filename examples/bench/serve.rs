//! `ecr-guard serve` as a child process, the way `make bench` runs it: the
//! release binary, local mode (policy file + namespace labels), a generated
//! certificate, AWS at `aws_endpoint` (moto or the counting proxy).

use std::net::SocketAddr;

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct ServeOptions<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    pub policies: &'a str,
    pub aws_endpoint: &'a str,
    pub extra_args: Vec<String>,
}

/// A running `ecr-guard serve`; killed on drop.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca: String,
    /// From spawn to the first `/readyz` 200.
    pub ready_after: Duration,
    pub log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    pub async fn start(options: ServeOptions<'_>) -> Serve {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let policy_file = options.dir.join("policies.yaml");
        std::fs::write(&policy_file, options.policies).expect("write the policy file");
        let ca_path = options.dir.join(format!("ca-{}.pem", addr.port()));
        let log = options.dir.join(format!("ecr-guard-{}.log", addr.port()));
        let mut command = Command::new(options.binary);
        command
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(["--metrics-listen", &admin.to_string()])
            .arg("--write-ca")
            .arg(&ca_path)
            .arg("--policy-file")
            .arg(&policy_file);
        for ns in super::fixtures::NAMESPACES {
            command.args(["--namespace-labels", ns]);
        }
        command
            .args(&options.extra_args)
            .env("AWS_ENDPOINT_URL", options.aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", super::fixtures::REGION)
            .env_remove("AWS_PROFILE")
            .env_remove("ECR_GUARD_LOG_LEVEL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"));
        let started = Instant::now();
        let child = command.spawn().expect("spawn ecr-guard serve");
        let mut serve = Serve {
            child,
            addr,
            admin,
            ca: String::new(),
            ready_after: Duration::ZERO,
            log,
        };
        loop {
            if let Ok((200, _)) = get(admin, "/readyz").await {
                serve.ready_after = started.elapsed();
                break;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!(
                    "ecr-guard serve exited with {status}; its log:\n{}",
                    std::fs::read_to_string(&serve.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ecr-guard serve not ready after 30 s"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        serve.ca = std::fs::read_to_string(&ca_path).expect("the CA written by --write-ca");
        serve
    }

    /// (current, peak) resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// One series of `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = get(self.admin, "/metrics").await.unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// A plain HTTP GET on the admin port: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

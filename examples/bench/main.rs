//! `make bench`: the load, cold-path, memory and start-up figures of
//! BENCHMARKS.md, measured against the release `ecr-guard serve` binary.
//!
//! - warm path: oha over HTTPS (HTTP/1.1 keep-alive, 64 connections, mixed Pod
//!   reviews) against ecr-guard with a warm cache and against the floor server
//!   (`examples/floor.rs`), interleaved in each run; saturated and at a fixed
//!   2,000 reviews/s; medians over the runs, ratios taken within each run;
//!   for reference, the floor again reading each body with serde_json
//!   (`--read-json`), saturated: the ratio a webhook reaches if reading the
//!   review is all it does;
//! - cold path: 1,000 concurrent reviews of one uncached repository, then 1,000
//!   over 1,000 distinct ones, AWS calls counted (and concurrency watched) by a
//!   proxy in front of moto;
//! - memory: peak RSS of serve after caching 100,000 repositories, each looked
//!   up through the normal code (the proxy answers DescribeRepositories itself:
//!   seeding 100,000 repositories into moto would take longer than the rest);
//! - start-up: process start to `/readyz` 200 in local mode.
//!
//! Usage: `bench [--runs N] [--seconds S] [--repositories N] [--only warm,cold,memory,startup]
//! [--oha PATH] [--binary PATH-TO-ECR-GUARD]`

#[path = "../../tests/support/https.rs"]
#[allow(dead_code)]
mod https;
#[path = "../../tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;
#[path = "../../tests/support/ports.rs"]
mod ports;
#[path = "../../tests/support/proxy.rs"]
#[allow(dead_code)]
mod proxy;
#[path = "../../tests/support/pull_through.rs"]
#[allow(dead_code)]
mod pull_through;

#[path = "../../benches/fixtures/mod.rs"]
mod fixtures;

mod cold;
mod serve;
mod warm;

use ports::free_port;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use moto::{Encryption, Key, Moto};
use proxy::{DESCRIBE_KEY, DESCRIBE_REPOSITORIES, Fault, GET_KEY_ROTATION_STATUS, Proxy};
use serve::{Serve, ServeOptions};
use warm::{Load, Oha, median};

struct Args {
    runs: usize,
    seconds: u64,
    repositories: usize,
    only: Vec<String>,
    oha: PathBuf,
    binary: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        runs: 5,
        seconds: 10,
        repositories: 100_000,
        only: vec![],
        oha: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/oha"),
        binary: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--repositories" => args.repositories = value().parse().expect("--repositories N"),
            "--only" => args.only = value().split(',').map(str::to_string).collect(),
            "--oha" => args.oha = value().into(),
            "--binary" => args.binary = Some(value().into()),
            other => panic!("unknown argument {other}; see the top of examples/bench/main.rs"),
        }
    }
    args
}

/// The floor server (`examples/floor.rs`) with `extra` arguments, once it
/// accepts connections: the child and its URL.
async fn start_floor(extra: &[&str]) -> (std::process::Child, String) {
    let port = free_port();
    let child = std::process::Command::new(sibling("examples/floor"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the floor server");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(10), "floor not up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (child, format!("https://127.0.0.1:{port}/validate"))
}

/// The release binaries next to this one (`target/release/examples/bench`).
fn sibling(relative: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let release = exe
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target/release/examples/bench");
    let path = release.join(relative);
    assert!(
        path.exists(),
        "{} is missing: `make bench` builds it",
        path.display()
    );
    path
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores; load average before the run: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

struct Keys {
    rotating: Key,
    static_key: Key,
    dsse: Key,
}

async fn seed(moto: &Moto) -> Keys {
    let region = fixtures::REGION;
    let rotating = moto.create_key(region).await;
    moto.enable_key_rotation(&rotating).await;
    let static_key = moto.create_key(region).await;
    let dsse = moto.create_key(region).await;
    moto.enable_key_rotation(&dsse).await;
    for (name, enc) in fixtures::REPOSITORIES {
        let encryption = match enc {
            fixtures::Enc::Aes256 => Encryption::Aes256,
            fixtures::Enc::Kms { rotating: true } => Encryption::Kms(rotating.arn.clone()),
            fixtures::Enc::Kms { rotating: false } => Encryption::Kms(static_key.arn.clone()),
            fixtures::Enc::KmsDsse => Encryption::KmsDsse(dsse.arn.clone()),
        };
        moto.create_repository(region, name, encryption).await;
    }
    Keys {
        rotating,
        static_key,
        dsse,
    }
}

fn cold_repository(i: usize) -> String {
    format!("cold/service-{i:04}")
}

fn memory_repository(i: usize) -> String {
    format!("fleet/team-{:03}/service-{i:06}", i % 500)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = args();
    let want = |part: &str| args.only.is_empty() || args.only.iter().any(|o| o == part);
    let binary = args.binary.clone().unwrap_or_else(|| sibling("ecr-guard"));
    let dir = tempfile::tempdir().expect("temp dir");
    let policies = fixtures::load_test_policies();

    println!("ecr-guard benchmarks");
    println!("machine: {}", machine());
    println!("binary:  {}", binary.display());
    println!();

    let moto = Moto::start().await;
    let keys = seed(&moto).await;
    let mut report: Vec<String> = Vec::new();

    if want("startup") {
        report.extend(startup(&binary, dir.path(), &policies, moto.endpoint()).await);
    }
    if want("warm") {
        report.extend(warm_path(&args, &binary, dir.path(), &policies, &moto).await);
    }
    if want("cold") {
        report.extend(cold_path(&binary, dir.path(), &policies, &moto).await);
    }
    if want("memory") {
        report.extend(memory(&args, &binary, dir.path(), &policies, &moto, &keys).await);
    }
    let _ = (&keys.static_key, &keys.dsse);

    println!();
    println!("==================== summary ====================");
    for line in report {
        println!("{line}");
    }
}

async fn startup(
    binary: &std::path::Path,
    dir: &std::path::Path,
    policies: &str,
    aws: &str,
) -> Vec<String> {
    println!("==> start-up: process start to /readyz 200, local mode, 11 starts");
    let mut times = Vec::new();
    for _ in 0..11 {
        let serve = Serve::start(ServeOptions {
            binary,
            dir,
            policies,
            aws_endpoint: aws,
            extra_args: vec![],
        })
        .await;
        times.push(serve.ready_after.as_secs_f64() * 1e3);
    }
    let line = format!(
        "start-up to ready (local mode): median {:.1} ms, min {:.1} ms, max {:.1} ms over {} starts   (goal < 200 ms)",
        median(times.clone()),
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(0.0, f64::max),
        times.len()
    );
    println!("    {line}");
    vec![line]
}

async fn warm_path(
    args: &Args,
    binary: &std::path::Path,
    dir: &std::path::Path,
    policies: &str,
    moto: &Moto,
) -> Vec<String> {
    assert!(
        args.oha.exists(),
        "{} is missing: `make bench` installs oha",
        args.oha.display()
    );
    let proxy = Proxy::start(moto.endpoint()).await;
    let serve = Serve::start(ServeOptions {
        binary,
        dir,
        policies,
        aws_endpoint: proxy.endpoint(),
        extra_args: vec![],
    })
    .await;
    let reviews = fixtures::mixed_reviews(500);
    let bodies_path = dir.join("bodies.jsonl");
    let mut lines = String::new();
    let mut sizes = Vec::new();
    for review in &reviews {
        let line = serde_json::to_string(review).expect("encode review");
        sizes.push(line.len() as f64);
        lines.push_str(&line);
        lines.push('\n');
    }
    std::fs::write(&bodies_path, lines).expect("write bodies");

    // Warm the cache: every review once, and see what they decide.
    let (mut sender, _) = https::connect(serve.addr, &serve.ca)
        .await
        .expect("connect to ecr-guard");
    let (mut allowed, mut warned, mut denied) = (0, 0, 0);
    for review in &reviews {
        let body = serde_json::to_vec(review).expect("encode review");
        sender.ready().await.expect("connection ready");
        let answer = https::send(&mut sender, "POST", "/validate", body)
            .await
            .expect("warm-up review");
        assert_eq!(answer.status, 200, "warm-up review answered 200");
        let json = answer.json();
        let response = &json["response"];
        if response["allowed"].as_bool() != Some(true) {
            denied += 1;
        } else if response["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            warned += 1;
        } else {
            allowed += 1;
        }
    }
    let aws_calls_warm = proxy.count(DESCRIBE_REPOSITORIES);

    let (mut floor, floor_url) = start_floor(&[]).await;
    let (mut floor_json, floor_json_url) = start_floor(&["--read-json"]).await;
    let guard_url = format!("https://127.0.0.1:{}/validate", serve.addr.port());

    println!(
        "==> warm path: {} mixed Pod reviews (1-5 containers, {} repositories, 5 policies, 4 namespaces; {:.0} bytes median): {allowed} allowed, {warned} warned, {denied} denied",
        reviews.len(),
        fixtures::REPOSITORIES.len(),
        median(sizes)
    );
    println!(
        "    oha, HTTP/1.1 keep-alive, 64 connections, {} s per measurement, {} runs; ecr-guard and floor interleaved",
        args.seconds, args.runs
    );
    let oha = Oha {
        binary: &args.oha,
        bodies: &bodies_path,
        duration: Duration::from_secs(args.seconds),
        concurrency: 64,
    };
    let warmup = Oha {
        duration: Duration::from_secs(2),
        ..oha
    };
    let (guard_pid, floor_pid, floor_json_pid) = (serve.child.id(), floor.id(), floor_json.id());
    let _ = warmup.run(&guard_url, guard_pid, None);
    let _ = warmup.run(&floor_url, floor_pid, None);
    let _ = warmup.run(&floor_json_url, floor_json_pid, None);

    let mut saturated: Vec<(Load, Load)> = Vec::new();
    let mut json_ceiling: Vec<Load> = Vec::new();
    let mut fixed: Vec<(Load, Load)> = Vec::new();
    let show = |what: &str, l: &Load| {
        format!(
            "{what:<22} {:>9.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>7.2} ms  cpu {:>5.1} µs/req (oha {:>5.1}){}",
            l.rps,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.cpu_us,
            l.oha_cpu_us,
            if l.failed > 0 {
                format!("  ({} failed)", l.failed)
            } else {
                String::new()
            }
        )
    };
    for run in 0..args.runs {
        let guard_first = run % 2 == 0;
        let pair = |rate: Option<u32>| {
            if guard_first {
                let g = oha.run(&guard_url, guard_pid, rate);
                (g, oha.run(&floor_url, floor_pid, rate))
            } else {
                let f = oha.run(&floor_url, floor_pid, rate);
                (oha.run(&guard_url, guard_pid, rate), f)
            }
        };
        let (g, f) = pair(None);
        println!("    run {}: {}", run + 1, show("saturated ecr-guard", &g));
        println!("    run {}: {}", run + 1, show("saturated floor", &f));
        println!("    run {}: throughput ratio {:.3}", run + 1, g.rps / f.rps);
        println!(
            "    run {}: server + oha CPU per request: ecr-guard {:.1} µs, floor {:.1} µs (ratio {:.3}); 0.80 of the floor needs ecr-guard + oha <= {:.1} µs",
            run + 1,
            g.total_cpu_us(),
            f.total_cpu_us(),
            f.total_cpu_us() / g.total_cpu_us(),
            f.total_cpu_us() / 0.8
        );
        let j = oha.run(&floor_json_url, floor_json_pid, None);
        println!("    run {}: {}", run + 1, show("saturated floor+json", &j));
        println!(
            "    run {}: floor+json/floor {:.3}, ecr-guard/floor+json {:.3}",
            run + 1,
            j.rps / f.rps,
            g.rps / j.rps
        );
        saturated.push((g, f));
        json_ceiling.push(j);
        let (g, f) = pair(Some(2000));
        println!("    run {}: {}", run + 1, show("2000/s ecr-guard", &g));
        println!("    run {}: {}", run + 1, show("2000/s floor", &f));
        println!("    run {}: p99 ratio {:.3}", run + 1, g.p99_ms / f.p99_ms);
        fixed.push((g, f));
    }
    for server in [&mut floor, &mut floor_json] {
        let _ = server.kill();
        let _ = server.wait();
    }
    let aws_calls_during_load = proxy.count(DESCRIBE_REPOSITORIES) - aws_calls_warm;

    let med = |v: &[(Load, Load)], pick: fn(&Load) -> f64, guard: bool| {
        median(
            v.iter()
                .map(|(g, f)| pick(if guard { g } else { f }))
                .collect(),
        )
    };
    let summary = |title: &str, v: &[(Load, Load)]| {
        let m = |guard| Load {
            rps: med(v, |l| l.rps, guard),
            p50_ms: med(v, |l| l.p50_ms, guard),
            p99_ms: med(v, |l| l.p99_ms, guard),
            max_ms: med(v, |l| l.max_ms, guard),
            cpu_us: med(v, |l| l.cpu_us, guard),
            oha_cpu_us: med(v, |l| l.oha_cpu_us, guard),
            failed: v
                .iter()
                .map(|(g, f)| if guard { g.failed } else { f.failed })
                .sum(),
        };
        vec![
            show(&format!("{title} ecr-guard"), &m(true)),
            show(&format!("{title} floor"), &m(false)),
        ]
    };
    let throughput_ratios: Vec<f64> = saturated.iter().map(|(g, f)| g.rps / f.rps).collect();
    let p99_ratios: Vec<f64> = fixed.iter().map(|(g, f)| g.p99_ms / f.p99_ms).collect();
    let fmt_all = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = vec![format!(
        "warm path (oha, HTTP/1.1 keep-alive, 64 connections, {} s x {} runs, medians; max is the median of the runs' maxima; cpu is the server's CPU time per answered request):",
        args.seconds, args.runs
    )];
    out.extend(
        summary("saturated", &saturated)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    out.push(format!(
        "  throughput ecr-guard/floor: median {:.3} (runs: {})   (goal >= 0.80)",
        median(throughput_ratios.clone()),
        fmt_all(&throughput_ratios)
    ));
    let cpu_ratios: Vec<f64> = saturated
        .iter()
        .map(|(g, f)| f.total_cpu_us() / g.total_cpu_us())
        .collect();
    let budgets: Vec<f64> = saturated
        .iter()
        .map(|(_, f)| f.total_cpu_us() / 0.8)
        .collect();
    out.push(format!(
        "  server + oha CPU per request, floor/ecr-guard: median {:.3} (runs: {})   (saturated throughput on the shared cores follows it)",
        median(cpu_ratios.clone()),
        fmt_all(&cpu_ratios)
    ));
    out.push(format!(
        "    0.80 of the floor needs ecr-guard + oha <= {:.1} µs per request (median over runs); ecr-guard + oha used {:.1} µs",
        median(budgets),
        median(saturated.iter().map(|(g, _)| g.total_cpu_us()).collect())
    ));
    let ceiling: Vec<f64> = json_ceiling
        .iter()
        .zip(&saturated)
        .map(|(j, (_, f))| j.rps / f.rps)
        .collect();
    let of_ceiling: Vec<f64> = json_ceiling
        .iter()
        .zip(&saturated)
        .map(|(j, (g, _))| g.rps / j.rps)
        .collect();
    out.push(format!(
        "  reference, saturated floor+json (the floor reading each body with serde_json, keeping nothing): {:.0} req/s, cpu {:.1} µs/req (oha {:.1})",
        median(json_ceiling.iter().map(|l| l.rps).collect()),
        median(json_ceiling.iter().map(|l| l.cpu_us).collect()),
        median(json_ceiling.iter().map(|l| l.oha_cpu_us).collect())
    ));
    out.push(format!(
        "    floor+json/floor: median {:.3} (runs: {})   (what a webhook reaches if reading the body with serde_json is all it does)",
        median(ceiling.clone()),
        fmt_all(&ceiling)
    ));
    out.push(format!(
        "    ecr-guard/floor+json: median {:.3} (runs: {})",
        median(of_ceiling.clone()),
        fmt_all(&of_ceiling)
    ));
    out.extend(
        summary("2000/s", &fixed)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    out.push(format!(
        "  p99 at 2000/s ecr-guard/floor: median {:.3} (runs: {})   (goal <= 2.0)",
        median(p99_ratios.clone()),
        fmt_all(&p99_ratios)
    ));
    out.push(format!(
        "  DescribeRepositories calls during the load test (cache warm): {aws_calls_during_load}"
    ));
    out
}

async fn cold_path(
    binary: &std::path::Path,
    dir: &std::path::Path,
    policies: &str,
    moto: &Moto,
) -> Vec<String> {
    const REVIEWS: usize = 1000;
    const CAP: usize = 32;
    // AWS answers in tens of milliseconds; moto on loopback in a few. The proxy
    // adds 20 ms to every call so that concurrent misses really overlap.
    const AWS_LATENCY: Duration = Duration::from_millis(20);
    println!("==> cold path: seeding {REVIEWS} more repositories in moto");
    let key = moto.create_key(fixtures::REGION).await;
    moto.enable_key_rotation(&key).await;
    let names: Vec<String> = (0..=REVIEWS).map(cold_repository).collect();
    for chunk in names.chunks(16) {
        futures::future::join_all(chunk.iter().map(|name| {
            moto.create_repository(fixtures::REGION, name, Encryption::Kms(key.arn.clone()))
        }))
        .await;
    }
    let extra = vec![
        "--max-concurrent-aws-calls".to_string(),
        CAP.to_string(),
        "--lookup-timeout".to_string(),
        "3s".to_string(),
    ];
    let mut out = vec![format!(
        "cold path (moto behind a counting proxy adding {} ms per AWS call; --max-concurrent-aws-calls {CAP}, --lookup-timeout 3s; connections opened first, reviews sent at once):",
        AWS_LATENCY.as_millis()
    )];

    // 1,000 reviews of one repository nobody has asked about.
    let proxy = Proxy::start(moto.endpoint()).await;
    proxy.set_fault(Fault::Delay(AWS_LATENCY));
    let serve = Serve::start(ServeOptions {
        binary,
        dir,
        policies,
        aws_endpoint: proxy.endpoint(),
        extra_args: extra.clone(),
    })
    .await;
    let single = cold_repository(REVIEWS);
    let bodies = (0..REVIEWS)
        .map(|i| cold::review_body(i, "payments", &single))
        .collect();
    let burst = cold::burst(serve.addr, &serve.ca, bodies).await;
    out.push(format!(
        "  {REVIEWS} concurrent reviews, 1 uncached repository: DescribeRepositories {} (goal 1), DescribeKey {}, GetKeyRotationStatus {}; {} allowed, {} denied, {} failed; all answered in {:.0} ms",
        proxy.count(DESCRIBE_REPOSITORIES),
        proxy.count(DESCRIBE_KEY),
        proxy.count(GET_KEY_ROTATION_STATUS),
        burst.allowed,
        burst.denied,
        burst.failed,
        burst.elapsed.as_secs_f64() * 1e3
    ));
    println!("{}", out.last().unwrap());
    drop(serve);
    drop(proxy);

    // 1,000 reviews over 1,000 distinct repositories nobody has asked about.
    let proxy = Proxy::start(moto.endpoint()).await;
    proxy.set_fault(Fault::Delay(AWS_LATENCY));
    let serve = Serve::start(ServeOptions {
        binary,
        dir,
        policies,
        aws_endpoint: proxy.endpoint(),
        extra_args: extra,
    })
    .await;
    let bodies = (0..REVIEWS)
        .map(|i| cold::review_body(i, "payments", &cold_repository(i)))
        .collect();
    let burst = cold::burst(serve.addr, &serve.ca, bodies).await;
    out.push(format!(
        "  {REVIEWS} concurrent reviews, {REVIEWS} distinct uncached repositories: DescribeRepositories {}, most AWS calls in flight {} (cap {CAP}); {} allowed, {} denied, {} failed; all answered in {:.0} ms",
        proxy.count(DESCRIBE_REPOSITORIES),
        proxy.max_in_flight(),
        burst.allowed,
        burst.denied,
        burst.failed,
        burst.elapsed.as_secs_f64() * 1e3
    ));
    if let Some(denial) = burst.example_denial {
        out.push(format!(
            "    e.g. {}",
            denial.lines().next().unwrap_or_default()
        ));
    }
    println!("{}", out.last().unwrap());
    out
}

async fn memory(
    args: &Args,
    binary: &std::path::Path,
    dir: &std::path::Path,
    policies: &str,
    moto: &Moto,
    keys: &Keys,
) -> Vec<String> {
    let n = args.repositories;
    println!("==> memory: caching {n} repositories through the normal lookup path");
    let proxy = Proxy::start(moto.endpoint()).await;
    // Every DescribeRepositories gets the same answer (ecr-guard reads only the
    // encryption configuration): KMS with a rotating customer key, which moto
    // describes (once: the key cache holds it).
    let answer = serde_json::json!({"repositories": [{
        "repositoryArn": format!("arn:aws:ecr:{}:{}:repository/fleet/service", fixtures::REGION, fixtures::ACCOUNT),
        "registryId": fixtures::ACCOUNT,
        "repositoryName": "fleet/service",
        "repositoryUri": format!("{}/fleet/service", fixtures::ecr_host()),
        "createdAt": 1.7e9,
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": false},
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": keys.rotating.arn}
    }]});
    proxy.set_fault_for(
        DESCRIBE_REPOSITORIES,
        Fault::Answer {
            status: 200,
            body: answer.to_string(),
        },
    );
    let capacity = (n * 2).max(50_000);
    let serve = Serve::start(ServeOptions {
        binary,
        dir,
        policies,
        aws_endpoint: proxy.endpoint(),
        extra_args: vec!["--cache-capacity".into(), capacity.to_string()],
    })
    .await;
    let (rss_ready, _) = serve.rss_kib();
    let filled = cold::stream(serve.addr, &serve.ca, n, 32, "payments", memory_repository).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss, peak) = serve.rss_kib();
    let misses = serve
        .metric(r#"ecr_guard_cache_requests_total{cache="repository",result="miss"}"#)
        .await;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let line = format!(
        "memory: {n} repositories cached ({misses} repository cache misses = DescribeRepositories calls, {} allowed, {} denied, {} failed, filled in {:.1} s, --cache-capacity {capacity}): RSS when ready {:.1} MiB, after filling {:.1} MiB, peak {:.1} MiB   (goal < 64 MiB)",
        filled.allowed,
        filled.denied,
        filled.failed,
        filled.elapsed.as_secs_f64(),
        mib(rss_ready),
        mib(rss),
        mib(peak)
    );
    println!("    {line}");
    vec![line]
}

//! `make bench-scan`: the figures of BENCHMARKS.md's "`scan` of 10,000
//! repositories" — wall time, AWS calls by API and peak RSS of one
//! `ecr-guard scan` over two regions against moto, through the counting proxy
//! (which pages `DescribeRepositories` and answers the pull-through APIs in
//! moto's place, as in tests/scan.rs).
//!
//! Seeds N repositories (default 10,000), half in us-east-1 and half in
//! eu-west-1: a third AES256, the rest KMS over ten customer-managed keys per
//! region (half of them rotating). Peak RSS is the child's `ru_maxrss`, read
//! by `/usr/bin/time -f %M`.
//!
//! Usage: `scan_bench [--repositories N] [--binary PATH-TO-ECR-GUARD] [--concurrency N]`

#[path = "../tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;
#[path = "../tests/support/ports.rs"]
mod ports;
#[path = "../tests/support/proxy.rs"]
#[allow(dead_code)]
mod proxy;
#[path = "../tests/support/pull_through.rs"]
#[allow(dead_code)]
mod pull_through;

use ports::free_port;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use aws_sdk_ecr::types::{EncryptionConfiguration, EncryptionType};
use moto::Moto;
use proxy::{
    ASSUME_ROLE, DESCRIBE_KEY, DESCRIBE_PULL_THROUGH_CACHE_RULES, DESCRIBE_REPOSITORIES,
    DESCRIBE_REPOSITORY_CREATION_TEMPLATES, GET_CALLER_IDENTITY, GET_KEY_ROTATION_STATUS, Proxy,
};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const KEYS_PER_REGION: usize = 10;
/// Repositories created at once (moto answers one request per thread).
const SEED_CONCURRENCY: usize = 32;

const POLICY: &str = "\
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: require-kms}
spec:
  mode: Enforce
  images: ['*']
  rules: {allowedEncryptionTypes: [KMS, KMS_DSSE], requireKeyRotation: true}
";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut repositories = 10_000usize;
    let mut concurrency: Option<String> = None;
    let mut binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/ecr-guard");
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        binary = PathBuf::from(dir).join("release/ecr-guard");
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--repositories" => repositories = value().parse().expect("a number"),
            "--binary" => binary = PathBuf::from(value()),
            "--concurrency" => concurrency = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        binary.exists(),
        "{} is missing: build it first",
        binary.display()
    );

    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    let seeding = Instant::now();
    for region in REGIONS {
        let mut keys = Vec::new();
        for k in 0..KEYS_PER_REGION {
            let key = moto.create_key(region).await;
            if k % 2 == 0 {
                moto.enable_key_rotation(&key).await;
            }
            keys.push(key.arn);
        }
        let ecr = moto.ecr(region);
        let names: Vec<usize> = (0..repositories / REGIONS.len()).collect();
        for batch in names.chunks(SEED_CONCURRENCY) {
            let creates = batch.iter().map(|&i| {
                let encryption = if i % 3 == 0 {
                    EncryptionConfiguration::builder()
                        .encryption_type(EncryptionType::Aes256)
                        .build()
                } else {
                    EncryptionConfiguration::builder()
                        .encryption_type(EncryptionType::Kms)
                        .kms_key(&keys[i % KEYS_PER_REGION])
                        .build()
                };
                ecr.create_repository()
                    .repository_name(format!("team-{}/app-{i:05}", i % 50))
                    .encryption_configuration(encryption.expect("encryption type set"))
                    .send()
            });
            for created in futures::future::join_all(creates).await {
                created.expect("CreateRepository");
            }
        }
    }
    println!(
        "seeded {repositories} repositories in {} regions in {:.1} s",
        REGIONS.len(),
        seeding.elapsed().as_secs_f64()
    );

    // moto answers every repository of a registry to each page request (the
    // proxy pages its answer), so each page costs one full listing: timed here
    // to tell moto's share of the scan from ecr-guard's.
    let listing = Instant::now();
    let all = moto
        .ecr(REGIONS[0])
        .describe_repositories()
        .send()
        .await
        .expect("DescribeRepositories");
    let moto_listing = listing.elapsed();
    println!(
        "moto: one DescribeRepositories answering {} repositories takes {:.2} s",
        all.repositories().len(),
        moto_listing.as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("write the policy");
    let report = dir.path().join("report.json");
    let rss = dir.path().join("rss");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-o")
        .arg(&rss)
        .args(["-f", "%M"])
        .arg(&binary)
        .args([
            "scan", "-o", "json", "--region", REGIONS[0], "--region", REGIONS[1],
        ])
        .arg("--policy-file")
        .arg(&policy)
        .arg("--output-file")
        .arg(&report)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", REGIONS[0])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("ECR_GUARD_LOG_LEVEL", "warn");
    if let Some(n) = &concurrency {
        cmd.args(["--concurrency", n]);
    }
    proxy.reset_counts();
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || cmd.status().expect("run ecr-guard scan"))
        .await
        .expect("scan thread");
    let elapsed = started.elapsed();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("the report")).expect("JSON");
    let peak_kib: u64 = std::fs::read_to_string(&rss)
        .expect("time's output")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("peak RSS in KiB");

    println!("binary: {}", binary.display());
    println!("exit code: {:?}", status.code());
    println!(
        "repositories in the report: {}",
        report["summary"]["repositories"]
    );
    println!("summary: {}", report["summary"]);
    println!("wall time: {:.2} s", elapsed.as_secs_f64());
    println!("peak RSS: {:.1} MiB", peak_kib as f64 / 1024.0);
    println!("AWS calls:");
    let mut total = 0;
    for api in [
        GET_CALLER_IDENTITY,
        ASSUME_ROLE,
        DESCRIBE_REPOSITORIES,
        DESCRIBE_PULL_THROUGH_CACHE_RULES,
        DESCRIBE_REPOSITORY_CREATION_TEMPLATES,
        DESCRIBE_KEY,
        GET_KEY_ROTATION_STATUS,
    ] {
        let n = proxy.count(api);
        total += n;
        println!("  {api}: {n}");
    }
    println!("  total: {total}");
}

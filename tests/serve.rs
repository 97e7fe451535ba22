//! `ecr-guard serve` as a process, as a user (or the kubelet) runs it: flags and
//! environment, JSON logs, graceful shutdown on SIGTERM, certificate rotation.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::https;
use support::moto::{Encryption, Moto};
use support::proxy::{self, Fault, Proxy};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const POLICY: &str = "apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: kms-only}
spec:
  rules: {allowedEncryptionTypes: [KMS]}
";

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::free_port()))
}

fn pod_review(uid: &str, image: &str) -> serde_json::Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": gvk, "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "p", "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                       "spec": {"containers": [{"name": "app", "image": image}]}},
            "dryRun": false
        }
    })
}

struct Serve {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    ca: String,
    ca_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_serve(aws_endpoint: &str, extra: &[&str]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let (addr, admin) = (free_addr(), free_addr());
    let ca = dir.path().join("ca.pem");
    let child = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .arg("serve")
        .args([
            "--listen",
            &addr.to_string(),
            "--metrics-listen",
            &admin.to_string(),
        ])
        .arg("--write-ca")
        .arg(&ca)
        .arg("--policy-file")
        .arg(dir.path().join("policy.yaml"))
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("ECR_GUARD_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut serve = Serve {
        child,
        addr,
        admin,
        ca: String::new(),
        ca_path: ca.clone(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "serve did not become ready");
        if let Ok(Some(status)) = serve.child.try_wait() {
            panic!("serve exited early: {status}");
        }
        if readyz(admin).await == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve.ca = std::fs::read_to_string(&ca).unwrap();
    serve
}

async fn readyz(admin: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.ok()?;
    raw.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_reviews_finish_then_exits_cleanly_with_json_logs() {
    let moto = Moto::start().await;
    for i in 0..8 {
        moto.create_repository("us-east-1", &format!("slow/r{i}"), Encryption::Aes256)
            .await;
    }
    let proxy = Proxy::start(moto.endpoint()).await;
    // No shutdown delay: the listener closes at once, with the reviews in flight.
    let mut serve = start_serve(proxy.endpoint(), &["--shutdown-delay=0s"]).await;
    // Every lookup now takes a second: reviews will be in flight when SIGTERM lands.
    proxy.set_fault_for(
        proxy::DESCRIBE_REPOSITORIES,
        Fault::Delay(Duration::from_millis(1000)),
    );

    let mut inflight = Vec::new();
    for i in 0..8 {
        let (addr, ca) = (serve.addr, serve.ca.clone());
        let review = pod_review(&format!("uid-{i}"), &format!("{HOST}/slow/r{i}:1"));
        inflight.push(tokio::spawn(async move {
            https::post_review(addr, &ca, &review).await
        }));
    }
    // Wait until the lookups are really in flight, then ask the process to stop.
    let started = Instant::now();
    while proxy.count(proxy::DESCRIBE_REPOSITORIES) < 8
        && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = serve.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    for (i, task) in inflight.into_iter().enumerate() {
        let resp = task.await.unwrap();
        assert_eq!(resp.status, 200, "review {i} must complete");
        let r = &resp.json()["response"];
        assert_eq!(r["uid"], format!("uid-{i}"));
        assert_eq!(r["allowed"], false, "AES256 is not KMS: {r}");
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = serve.child.wait().unwrap();
        let stderr = serve.child.stderr.take().unwrap();
        (
            status,
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>(),
        )
    })
    .await
    .unwrap();
    let (status, lines) = status;
    assert!(status.success(), "exit status {status}");
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("received SIGTERM")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"stopped\"")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_aws_credentials_and_healthz_answers_meanwhile() {
    // No credentials anywhere: the admin port answers, /readyz says why it is not ready.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let (addr, admin) = (free_addr(), free_addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .arg("serve")
        .args([
            "--listen",
            &addr.to_string(),
            "--metrics-listen",
            &admin.to_string(),
        ])
        .arg("--policy-file")
        .arg(dir.path().join("policy.yaml"))
        .env_clear()
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = None;
    while Instant::now() < deadline {
        ready = readyz(admin).await;
        if ready.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, Some(503));
    // Issue 14, fault 10: stderr says plainly that no credentials were found and
    // where they were looked for, in one line; none of the credential chain's
    // `Debug` dumps.
    let mut seen = Vec::new();
    let why = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match said.recv_timeout(left) {
            Ok(line) if line.contains("AWS not ready") => break line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("never said why AWS is not ready: {seen:#?}"),
        }
    };
    assert!(
        why.contains(
            "failed to find AWS credentials: looked in environment variables \
             (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), the shared config and credentials files"
        ),
        "{why}"
    );
    for line in seen.iter().chain([&why]) {
        for dump in [
            "FailedToLoadToken(",
            "SdkBody",
            "ServiceError {",
            "source: ",
        ] {
            assert!(!line.contains(dump), "{dump} in {line}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_roles_to_assume_readyz_waits_for_the_own_account_from_sts() {
    // Issue 17: ecr-guard learns its own account (sts:GetCallerIdentity) once,
    // before /readyz says ready; roles themselves are assumed on first use.
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    proxy.set_fault_for(
        proxy::GET_CALLER_IDENTITY,
        Fault::Delay(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let _serve = start_serve(
        proxy.endpoint(),
        &[
            "--assume-role-template",
            "arn:aws:iam::{account}:role/ecr-guard-reader",
        ],
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ready before STS answered"
    );
    assert_eq!(proxy.count(proxy::GET_CALLER_IDENTITY), 1);
    assert_eq!(proxy.count(proxy::ASSUME_ROLE), 0);

    // Without roles, no STS call at all, as before.
    let plain = Proxy::start(moto.endpoint()).await;
    let _serve = start_serve(plain.endpoint(), &[]).await;
    assert_eq!(plain.count(proxy::GET_CALLER_IDENTITY), 0);

    // A malformed role is a usage error, as for `check`.
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = serve_fails(
        &["--assume-role", "123=arn:aws:iam::123:role/r"],
        dir.path(),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("12 digits"), "{stderr}");
}

/// Lays out a directory the way the kubelet mounts a Secret: `tls.crt` →
/// `..data/tls.crt`, `..data` → `..<timestamp>/`, swapped atomically on update.
fn kubelet_write(dir: &Path, generation: u32, cert: &str, key: &str) {
    let versioned = dir.join(format!("..2026_11_27_{generation}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("tls.crt"), cert).unwrap();
    std::fs::write(versioned.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(versioned.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
}

fn issue(ca: &rcgen::Issuer<'_, rcgen::KeyPair>, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn common_name(der: &[u8]) -> String {
    // Enough for a test: the CN we set is the only printable run after the CN OID.
    let oid = [0x55, 0x04, 0x03];
    let at = der.windows(3).rposition(|w| w == oid).unwrap();
    let len = der[at + 4] as usize;
    String::from_utf8_lossy(&der[at + 5..at + 5 + len]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_served_without_restart_and_a_broken_one_is_ignored() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca = rcgen::Issuer::new(ca_params, ca_key);

    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = issue(&ca, "first");
    kubelet_write(dir.path(), 1, &cert1, &key1);

    let moto = Moto::start().await;
    let mut settings = support::webhook::Settings::new(POLICY);
    settings.tls = Some(ecr_guard::server::TlsSource::Files {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        reload_interval: Duration::from_millis(100),
    });
    let hook = support::webhook::Webhook::start(moto.endpoint(), settings).await;
    let served = || async { common_name(&https::connect(hook.addr, &ca_pem).await.unwrap().1) };
    assert_eq!(served().await, "first");

    let (cert2, key2) = issue(&ca, "second");
    kubelet_write(dir.path(), 2, &cert2, &key2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while served().await != "second" {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken update (key of another certificate) keeps the last good pair.
    let (_, other_key) = issue(&ca, "third");
    let (cert3, _) = issue(&ca, "third");
    kubelet_write(dir.path(), 3, &cert3, &other_key);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served().await, "second");
    let resp = https::post_review(hook.addr, &ca_pem, &pod_review("u", "nginx")).await;
    assert_eq!(resp.status, 200);
}

/// Sends `SIGTERM` to the process.
fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Waits for the process to exit, for at most `bound`; its status and stderr lines.
async fn exit_within(mut child: Child, bound: Duration) -> (std::process::ExitStatus, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + bound;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("still running after {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let lines = child
            .stderr
            .take()
            .map(|stderr| {
                BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                    .collect()
            })
            .unwrap_or_default();
        (status, lines)
    })
    .await
    .unwrap()
}

/// How reviews of one client went: answered (HTTP 200 with a verdict), and the
/// first failure, if any.
#[derive(Default)]
struct Tally {
    answered: usize,
    answered_after_sigterm: usize,
    failure: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_answering_through_the_shutdown_delay_then_drains_and_exits() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let moto = Moto::start().await;
    let mut serve = start_serve(moto.endpoint(), &["--shutdown-delay=3s"]).await;
    let (addr, ca) = (serve.addr, serve.ca.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let termed = Arc::new(AtomicBool::new(false));
    let review = serde_json::to_vec(&pod_review("u", "nginx:1")).unwrap();
    let record =
        |tally: &mut Tally, termed: &AtomicBool, result: Result<https::Response, String>| {
            match result {
                Ok(resp) if resp.status == 200 && resp.json()["response"]["allowed"] == true => {
                    tally.answered += 1;
                    if termed.load(Ordering::SeqCst) {
                        tally.answered_after_sigterm += 1;
                    }
                }
                Ok(resp) => {
                    tally.failure.get_or_insert(format!(
                        "HTTP {}: {}",
                        resp.status,
                        String::from_utf8_lossy(&resp.body)
                    ));
                }
                Err(e) => {
                    tally.failure.get_or_insert(e);
                }
            }
        };

    // Without pause: a new connection per review…
    let fresh = tokio::spawn({
        let (stop, termed, ca, review) = (stop.clone(), termed.clone(), ca.clone(), review.clone());
        async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::SeqCst) {
                let result =
                    https::request(addr, &ca, "POST", "/validate?timeout=10s", review.clone())
                        .await;
                record(&mut tally, &termed, result);
            }
            tally
        }
    });
    // …one kept-alive HTTP/1.1 connection…
    let (mut h1, _) = https::connect(addr, &ca).await.unwrap();
    let kept_h1 = tokio::spawn({
        let (stop, termed, review) = (stop.clone(), termed.clone(), review.clone());
        async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::SeqCst) {
                let result =
                    https::send(&mut h1, "POST", "/validate?timeout=10s", review.clone()).await;
                record(&mut tally, &termed, result);
            }
            (tally, h1)
        }
    });
    // …and one kept-alive HTTP/2 connection, as the API server keeps.
    let (mut h2, h2_driver) = https::connect_h2(addr, &ca).await.unwrap();
    let kept_h2 = tokio::spawn({
        let (stop, termed, review) = (stop.clone(), termed.clone(), review.clone());
        async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::SeqCst) {
                let body = http_body_util::Full::new(bytes::Bytes::from(review.clone()));
                let result = https::send_h2(&mut h2, "POST", "/validate?timeout=10s", body).await;
                record(&mut tally, &termed, result);
            }
            (tally, h2)
        }
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    termed.store(true, Ordering::SeqCst);
    sigterm(&serve.child);
    let sent_at = Instant::now();
    // /readyz turns 503 at once, so the endpoint is taken out of the Service…
    loop {
        match readyz(serve.admin).await {
            Some(503) => break,
            other => assert!(
                sent_at.elapsed() < Duration::from_secs(10),
                "/readyz still says {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …while reviews are still answered, on new connections too, as the API
    // server goes on sending until it learns the endpoint is gone.
    let resp = https::request(addr, &ca, "POST", "/validate", review.clone())
        .await
        .expect("a new connection after /readyz turned 503");
    assert_eq!(resp.status, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The API server has stopped sending here (well within the 3 s delay).
    stop.store(true, Ordering::SeqCst);
    let fresh = fresh.await.unwrap();
    let (kept_h1, mut h1) = kept_h1.await.unwrap();
    let (kept_h2, _h2) = kept_h2.await.unwrap();
    for (what, tally) in [
        ("new connections", &fresh),
        ("kept-alive HTTP/1.1", &kept_h1),
        ("kept-alive HTTP/2", &kept_h2),
    ] {
        assert_eq!(
            tally.failure, None,
            "{what}: a review failed during shutdown"
        );
        assert!(
            tally.answered_after_sigterm > 0,
            "{what}: nothing sent after SIGTERM"
        );
    }

    // After the delay the kept-alive connections are told to go: the idle
    // HTTP/1.1 one is closed, the HTTP/2 one gets GOAWAY and ends cleanly.
    let generous = Duration::from_secs(40);
    tokio::time::timeout(generous, async {
        while !h1.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the kept-alive HTTP/1.1 connection was never closed");
    assert!(
        https::send(&mut h1, "POST", "/validate", review.clone())
            .await
            .is_err()
    );
    let ended = tokio::time::timeout(generous, h2_driver)
        .await
        .expect("the HTTP/2 connection never ended")
        .unwrap();
    assert_eq!(
        ended,
        Ok(()),
        "GOAWAY ends the HTTP/2 connection without an error"
    );

    // Exits by delay + drain (3 s + at most 30 s; a generous bound, not a timing).
    let child = std::mem::replace(&mut serve.child, Command::new("true").spawn().unwrap());
    let (status, lines) = exit_within(child, Duration::from_secs(3 + 30 + 20)).await;
    assert!(status.success(), "exit status {status}: {lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("shutdown delay")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"stopped\"")),
        "{lines:#?}"
    );
}

/// Runs `ecr-guard serve` with `args` to its end (expected soon: a start-up
/// failure), text logs; (exit code, stderr).
fn serve_fails(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .arg("serve")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_a_busy_port_changes_nothing_and_says_why_once() {
    let moto = Moto::start().await;
    let running = start_serve(moto.endpoint(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let (listen, admin) = (running.addr.to_string(), running.admin.to_string());
    let free = free_addr().to_string();
    for (what, listen, metrics) in [
        ("webhook port busy", listen.as_str(), free.as_str()),
        ("admin port busy", free.as_str(), admin.as_str()),
    ] {
        let ca_path = running.ca_path.to_str().unwrap();
        let (code, stderr) = serve_fails(
            &[
                "--listen",
                listen,
                "--metrics-listen",
                metrics,
                "--write-ca",
                ca_path,
                "--policy-file",
                policy.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert_eq!(
            stderr.matches("failed to bind").count(),
            1,
            "{what}: the fatal error, once: {stderr}"
        );
        // The running server's CA file is untouched, and still the one it serves.
        assert_eq!(
            std::fs::read_to_string(&running.ca_path).unwrap(),
            running.ca,
            "{what}"
        );
    }
    let resp = https::post_review(running.addr, &running.ca, &pod_review("u", "nginx")).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_that_fails_to_start_writes_no_ca_and_never_calls_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let ca = dir.path().join("ca.pem");
    let ca_arg = ca.to_str().unwrap();

    // Bound, but the client CA is unusable: fails before --write-ca is written.
    let bad_client_ca = dir.path().join("client-ca.pem");
    std::fs::write(&bad_client_ca, "not a certificate\n").unwrap();
    let (code, stderr) = serve_fails(
        &[
            "--listen",
            &free_addr().to_string(),
            "--metrics-listen",
            &free_addr().to_string(),
            "--write-ca",
            ca_arg,
            "--client-ca",
            bad_client_ca.to_str().unwrap(),
            "--policy-file",
            policy.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.matches("client CA").count(), 1, "once: {stderr}");
    assert!(
        !ca.exists(),
        "--write-ca written by a serve that never served"
    );

    // A policy file that cannot be read: the same.
    let (code, stderr) = serve_fails(
        &[
            "--listen",
            &free_addr().to_string(),
            "--metrics-listen",
            &free_addr().to_string(),
            "--write-ca",
            ca_arg,
            "--policy-file",
            dir.path().join("missing.yaml").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        !ca.exists(),
        "--write-ca written by a serve that never served"
    );

    // Cluster mode on a busy port: fails before it watches the cluster or writes
    // policy status. The "API server" here counts the connections it gets.
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    api.set_nonblocking(true).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
current-context: test
clusters: [{{name: test, cluster: {{server: 'http://{}'}}}}]
users: [{{name: test, user: {{token: t}}}}]
contexts: [{{name: test, context: {{cluster: test, user: test}}}}]
",
            api.local_addr().unwrap()
        ),
    )
    .unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, stderr) = serve_fails(
        &[
            "--listen",
            &busy.local_addr().unwrap().to_string(),
            "--metrics-listen",
            &free_addr().to_string(),
            "--write-ca",
            ca_arg,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("failed to bind"), "{stderr}");
    assert!(
        matches!(api.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the API server was contacted by a serve that could not bind"
    );
    assert!(!ca.exists());
}

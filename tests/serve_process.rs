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
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
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
    ca: String,
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
        ca: String::new(),
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
    let mut serve = start_serve(proxy.endpoint(), &[]).await;
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let _ = child.kill();
    let _ = child.wait();
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

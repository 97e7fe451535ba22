//! No AWS secret or session token in the logs, at any level: `serve` and `check`
//! run as child processes with `--log-level trace` (every crate, the AWS SDK and
//! hyper included), recognisable fake credentials in the environment and moto
//! behind `AWS_ENDPOINT_URL`, then their whole output is searched.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::https;
use support::moto::Moto;
use support::proxy::{ASSUME_ROLE, Fault, Proxy};

const SECRET: &str = "SeCrEtKeyThatMustNeverBeLogged0123456789ab";
const TOKEN: &str = "SeSsIoNtOkEnThatMustNeverBeLogged/IQoJb3JpZ2luX2VjE+AAAA==";
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

const POLICY: &str = "
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: strict}
spec:
  rules: {allowedEncryptionTypes: [KMS], requireKeyRotation: true}
";

/// The fake credentials and moto as every AWS endpoint; nothing from the
/// developer's own AWS configuration.
fn aws_env(command: &mut Command, endpoint: &str, dir: &std::path::Path) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("ECR_GUARD_") {
            command.env_remove(k);
        }
    }
    command
        .env("AWS_ACCESS_KEY_ID", "AKIAECRGUARDLOGTEST0")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("NO_COLOR", "1");
}

fn assert_clean(what: &str, output: &str) {
    assert!(!output.contains(SECRET), "{what} logged the secret key");
    assert!(!output.contains(TOKEN), "{what} logged the session token");
    // Nor recognisable pieces of them (e.g. a truncated or URL-encoded form).
    assert!(
        !output.contains(&SECRET[..20]),
        "{what} logged part of the secret key"
    );
    assert!(
        !output.contains(&TOKEN[..20]),
        "{what} logged part of the session token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_at_trace_level_never_logs_credentials() {
    let moto = Moto::start_with_team_repositories().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let ca = dir.path().join("ca.pem");
    let (listen, admin) = (support::free_port(), support::free_port());
    let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
    command
        .args(["--log-level", "trace", "serve", "--policy-file"])
        .arg(&policy)
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{admin}")])
        .arg("--write-ca")
        .arg(&ca)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    aws_env(&mut command, moto.endpoint(), dir.path());
    let mut child = command.spawn().expect("start ecr-guard serve");

    // Ready once credentials are resolved and clients built.
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", admin)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await;
            let mut raw = String::new();
            let _ = s.read_to_string(&mut raw).await;
            if raw.starts_with("HTTP/1.1 200") {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ca_pem = std::fs::read_to_string(&ca).unwrap_or_default();
    let mut answers = Vec::new();
    if ready {
        let addr = format!("127.0.0.1:{listen}").parse().unwrap();
        for (uid, image) in [
            ("good", "team/secure:1"),
            ("bad", "team/plain:1"),
            ("gone", "team/gone:1"),
        ] {
            let review = json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {
                    "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "default", "operation": "CREATE", "userInfo": {},
                    "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": uid},
                               "spec": {"containers": [{"name": "a", "image": format!("{HOST}/{image}")}]}}
                }
            });
            let resp = https::post_review(addr, &ca_pem, &review).await;
            answers.push(resp.json()["response"]["allowed"].clone());
        }
    }
    // SIGTERM, so it logs its shutdown too.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let output = std::fs::read_to_string(dir.path().join("stdout")).unwrap()
        + &std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(ready, "serve never became ready:\n{output}");
    assert_eq!(answers, [json!(true), json!(false), json!(false)]);
    // Trace logging really was on, AWS calls included (signed with these credentials).
    assert!(output.contains("TRACE"), "no trace lines");
    assert!(
        output.contains("DescribeRepositories"),
        "no AWS call was logged"
    );
    assert_clean("serve", &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_at_trace_level_never_logs_credentials() {
    let moto = Moto::start_with_team_repositories().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
    command
        .args(["--log-level", "trace", "check", "--policy-file"])
        .arg(&policy)
        .args(["--image", &format!("{HOST}/team/secure:1")])
        .args(["--image", &format!("{HOST}/team/plain:1")]);
    aws_env(&mut command, moto.endpoint(), dir.path());
    let out = command.output().expect("run ecr-guard check");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(output.contains("is encrypted with AES256"), "{output}");
    assert!(output.contains("TRACE"), "no trace lines");
    assert_clean("check", &output);
}

const ASSUMED_SECRET: &str = "AsSuMeDsEcReTThatMustNeverBeLogged012345";
const ASSUMED_TOKEN: &str = "AsSuMeDsEsSiOnToKeNThatMustNeverBeLogged/FwoGZXIvYXdzEA==";

/// STS's AssumeRole answer (API reference, AssumeRole, "Examples"), with
/// credentials the test knows, so that it can look for them in the logs.
fn assume_role_answer() -> String {
    format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <AssumedRoleUser><Arn>arn:aws:sts::111111111111:assumed-role/ecr-guard-reader/ecr-guard</Arn>\
         <AssumedRoleId>AROA3XFRBF535PLBIFPI4:ecr-guard</AssumedRoleId></AssumedRoleUser>\
         <Credentials><AccessKeyId>ASIAECRGUARDLOGTEST1</AccessKeyId>\
         <SecretAccessKey>{ASSUMED_SECRET}</SecretAccessKey><SessionToken>{ASSUMED_TOKEN}</SessionToken>\
         <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult>\
         <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>\
         </AssumeRoleResponse>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_role_credentials_are_never_logged_either() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    proxy.set_fault_for(
        ASSUME_ROLE,
        Fault::XmlAnswer {
            status: 200,
            body: assume_role_answer(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
    command
        .args(["--log-level", "trace", "check", "--policy-file"])
        .arg(&policy)
        .args([
            "--assume-role-template",
            "arn:aws:iam::{account}:role/ecr-guard-reader",
            "--image",
            "111111111111.dkr.ecr.us-east-1.amazonaws.com/central/app:1",
        ]);
    aws_env(&mut command, proxy.endpoint(), dir.path());
    let out = command.output().expect("run ecr-guard check");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(proxy.count(ASSUME_ROLE), 1, "{output}");
    assert!(
        output.contains("ASIAECRGUARDLOGTEST1"),
        "the key id is logged, to debug"
    );
    assert_clean("check", &output);
    for (what, secret) in [
        ("secret key", ASSUMED_SECRET),
        ("session token", ASSUMED_TOKEN),
    ] {
        assert!(
            !output.contains(&secret[..20]),
            "check logged (part of) the assumed role's {what}"
        );
    }
}

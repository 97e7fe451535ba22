//! `ecr-guard check` as a CI pipeline runs it: exit codes 0/1/2, text and JSON,
//! images and manifests, against moto.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::moto::{Encryption, Moto};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples")
}

fn check(moto: Option<&Moto>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
    cmd.arg("check")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    if let Some(moto) = moto {
        cmd.env("AWS_ENDPOINT_URL", moto.endpoint());
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// moto seeded with a compliant and a non-compliant repository for the
/// regulated-require-cmk example policy.
async fn seeded() -> Moto {
    let moto = Moto::start().await;
    let key = moto.create_key("us-east-1").await;
    moto.enable_key_rotation(&key).await;
    moto.create_repository("us-east-1", "payments/ledger", Encryption::Kms(key.arn))
        .await;
    moto.create_repository("us-east-1", "payments/api", Encryption::Aes256)
        .await;
    moto
}

fn regulated() -> Vec<String> {
    vec![
        "--policy-file".into(),
        examples()
            .join("regulated-require-cmk.yaml")
            .display()
            .to_string(),
        "--policy-file".into(),
        examples()
            .join("prod-require-kms.yaml")
            .display()
            .to_string(),
        "--policy-file".into(),
        examples()
            .join("staging-dry-run.yaml")
            .display()
            .to_string(),
        "--namespaces-file".into(),
        examples().join("namespaces.yaml").display().to_string(),
    ]
}

fn with<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliant_image_exits_0_and_non_compliant_exits_1_with_one_line_per_violation() {
    let moto = seeded().await;
    let base = regulated();
    let good = format!("{HOST}/payments/ledger:1");
    let out = check(
        Some(&moto),
        &with(&base, &["-n", "payments", "--image", &good]),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("ALLOWED: payments Pod/"),
        "{}",
        stdout(&out)
    );

    let bad = format!("{HOST}/payments/api:1.4");
    let out = check(
        Some(&moto),
        &with(&base, &["-n", "payments", "--image", &bad]),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let deny_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  [deny] "))
        .collect();
    assert_eq!(
        deny_lines.len(),
        2,
        "regulated + prod policies each: {text}"
    );
    assert!(deny_lines.iter().any(|l| l.ends_with(&format!(
        "container \"api\" image {bad}: repository payments/api is encrypted with AES256; policy regulated-require-cmk allows only KMS, KMS_DSSE"
    ))), "{text}");
    assert!(
        text.contains("  hint: a repository's encryption cannot be changed"),
        "{text}"
    );
    assert!(text.ends_with("1 checked: 1 denied, 0 allowed\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_judged_each_in_its_own_namespace_and_json_is_machine_readable() {
    let moto = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: payments}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      initContainers: [{{name: migrate, image: '{HOST}/payments/ledger:1'}}]
      containers: [{{name: api, image: '{HOST}/payments/api:2'}}]
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: payments}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: report, namespace: staging}}
spec:
  schedule: '0 * * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{{name: report, image: '{HOST}/payments/api:2'}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: scratch}}
spec:
  containers: [{{name: c, image: busybox}}]
"
        ),
    )
    .unwrap();
    let base = regulated();
    let out = check(
        Some(&moto),
        &with(&base, &["-f", manifest.to_str().unwrap(), "-o", "json"]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = results
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}/{}",
                    r["namespace"].as_str().unwrap(),
                    r["kind"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                ),
                r["decision"].as_str().unwrap().to_string(),
                r["violations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["mode"].as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "payments/Deployment/api".to_string(),
                "denied".to_string(),
                "Enforce,Enforce".to_string()
            ),
            (
                "staging/CronJob/report".to_string(),
                "allowed".to_string(),
                "DryRun".to_string()
            ),
            (
                "default/Pod/scratch".to_string(),
                "allowed".to_string(),
                String::new()
            ),
        ]
    );
    assert_eq!(report["denied"], 1);
    assert_eq!(report["allowed"], 2);
}

#[test]
fn usage_policy_and_input_errors_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let broken_policy = dir.path().join("broken.yaml");
    std::fs::write(
        &broken_policy,
        "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {name: broken}\nspec:\n  images: ['team/[x']\n  rules: {allowedEncryptionTypes: []}\n",
    )
    .unwrap();
    let unknown_mode = dir.path().join("mode.yaml");
    std::fs::write(
        &unknown_mode,
        "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {name: m}\nspec: {mode: Enforced}\n",
    )
    .unwrap();
    let policy = examples().join("regulated-require-cmk.yaml");
    let policy = policy.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--policy-file", policy], "nothing to check"),
        (
            vec![
                "--policy-file",
                broken_policy.to_str().unwrap(),
                "--image",
                "nginx",
            ],
            "spec.images[0]: invalid glob",
        ),
        (
            vec![
                "--policy-file",
                broken_policy.to_str().unwrap(),
                "--image",
                "nginx",
            ],
            "spec.rules.allowedEncryptionTypes: must not be empty",
        ),
        (
            vec![
                "--policy-file",
                unknown_mode.to_str().unwrap(),
                "--image",
                "nginx",
            ],
            "Enforced",
        ),
        (
            vec!["--policy-file", "/nonexistent.yaml", "--image", "nginx"],
            "failed to read /nonexistent.yaml",
        ),
        (
            vec!["--policy-file", policy, "-f", "/nonexistent.yaml"],
            "failed to read /nonexistent.yaml",
        ),
        (
            vec![
                "--policy-file",
                policy,
                "--namespace-labels",
                "nolabels",
                "--image",
                "nginx",
            ],
            "expected NS:KEY=VALUE",
        ),
        (
            vec![
                "--policy-file",
                policy,
                "--output",
                "xml",
                "--image",
                "nginx",
            ],
            "invalid value 'xml'",
        ),
    ];
    for (args, expected) in cases {
        let out = check(None, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn images_needing_no_lookup_need_no_aws() {
    // nonEcrImages: Deny judges Docker Hub images without any AWS call, so no
    // endpoint or credentials are needed.
    let policy = examples().join("regulated-require-cmk.yaml");
    let ns = examples().join("namespaces.yaml");
    let out = check(
        None,
        &[
            "--policy-file",
            policy.to_str().unwrap(),
            "--namespaces-file",
            ns.to_str().unwrap(),
            "-n",
            "payments",
            "--image",
            "nginx:1.27",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("the image is not from a private ECR registry"),
        "{}",
        stdout(&out)
    );
    let out = check(
        None,
        &[
            "--policy-file",
            policy.to_str().unwrap(),
            "-n",
            "dev",
            "--image",
            "nginx:1.27",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A policy file with misspelt fields, at several levels (issue 14, fault 1).
const MISSPELT_POLICY: &str = "apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata:
  name: regulated
spec:
  namespaceSelecter:
    matchLabels: {compliance: regulated}
  rules:
    allowedEncryptionTypes: [KMS]
    requireKeyRotaton: true
";

#[test]
fn misspelt_policy_fields_exit_2_naming_every_one_and_the_field_meant() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, MISSPELT_POLICY).unwrap();
    for output in ["text", "json"] {
        let out = check(
            None,
            &[
                "--policy-file",
                policy.to_str().unwrap(),
                "-n",
                "payments",
                "--namespace-labels",
                "payments:compliance=regulated",
                "--image",
                "nginx:1.27",
                "--output",
                output,
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(stdout(&out), "", "nothing is judged");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{}: document 1: spec.namespaceSelecter: unknown field, did you mean namespaceSelector?; spec.rules.requireKeyRotaton: unknown field, did you mean requireKeyRotation?",
                policy.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn serve_refuses_to_start_on_a_misspelt_policy_field() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, MISSPELT_POLICY).unwrap();
    let ca = dir.path().join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--write-ca")
        .arg(&ca)
        .arg("--policy-file")
        .arg(&policy)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with a misspelt policy field");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(
            "spec.rules.requireKeyRotaton: unknown field, did you mean requireKeyRotation?"
        ) && err.contains("spec.namespaceSelecter: unknown field, did you mean namespaceSelector?"),
        "{err}"
    );
    assert!(!ca.exists(), "nothing is written before the policies load");
}

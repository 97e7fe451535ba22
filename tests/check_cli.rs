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

// --- Issue 14, faults 2 and 3: unknown namespaces are said, names follow
// Kubernetes' rules, input with nothing to judge is an input error.

fn check_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .arg("check")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn regulated_policy() -> String {
    examples()
        .join("regulated-require-cmk.yaml")
        .display()
        .to_string()
}

/// The example: without --namespace-labels, `payments` is unknown, no
/// policy selects it and an AES256 repository is admitted. The verdict stays (the
/// namespace may really have no labels), but it is no longer silent: stderr warns,
/// the text result says so and that no policy applied, JSON has a field for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_namespace_and_an_object_no_policy_judged_are_said() {
    let moto = seeded().await;
    let policy = regulated_policy();
    let aes = format!("{HOST}/payments/api:1.4");
    let base = ["--policy-file", &policy, "-n", "payments", "--image", &aes];

    let out = check(Some(&moto), &base);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "ALLOWED: payments Pod/(--image {aes})\n  [note] no policy applies: no policy selects namespace payments\n  [note] namespace payments is unknown: judged by its name label alone\n1 checked: 0 denied, 1 allowed\n"
        )
    );
    assert_eq!(
        stderr(&out),
        "ecr-guard: warning: namespace \"payments\" is not in --namespace-labels or --namespaces-file: judged by its kubernetes.io/metadata.name label alone, as if it had no other labels; is the name misspelt, or the namespace missing there?\n"
    );

    let json_args: Vec<&str> = base.iter().copied().chain(["-o", "json"]).collect();
    let out = check(Some(&moto), &json_args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("namespace \"payments\" is not in"),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"][0]["namespace_known"], false);
    assert_eq!(report["results"][0]["policies"], serde_json::json!([]));

    // Described, the same image is judged and denied, and nothing is warned.
    let known: Vec<&str> = json_args
        .iter()
        .copied()
        .chain(["--namespace-labels", "payments:compliance=regulated"])
        .collect();
    let out = check(Some(&moto), &known);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("warning: namespace"),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"][0]["namespace_known"], true);
    assert_eq!(
        report["results"][0]["policies"],
        serde_json::json!(["regulated-require-cmk"])
    );
    assert_eq!(report["results"][0]["decision"], "denied");

    // A namespace given with only its name label is known: no warning, but the
    // result still says that no policy applied.
    let out = check(
        Some(&moto),
        &with(
            &base.map(String::from),
            &[
                "--namespace-labels",
                "payments:kubernetes.io/metadata.name=payments",
            ],
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("warning: namespace"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("  [note] no policy applies: no policy selects namespace payments\n"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("is unknown"), "{}", stdout(&out));
}

/// A misspelt metadata.namespace against a namespaces file: warned once per
/// namespace (not per object), each result marked; a policy selecting the
/// namespace that does not select the image is named as the reason.
#[test]
fn a_misspelt_manifest_namespace_is_warned_once_and_marked_in_each_result() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: paymnets}\nspec: {containers: [{name: c, image: nginx:1.27}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: paymnets}\nspec: {containers: [{name: c, image: nginx:1.27}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: payments}\nspec: {containers: [{name: c, image: nginx:1.27}]}\n",
    )
    .unwrap();
    let narrow = dir.path().join("narrow.yaml");
    std::fs::write(
        &narrow,
        "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {name: team-only}\nspec:\n  namespaceSelector: {matchLabels: {compliance: regulated}}\n  images: ['*.dkr.ecr.*.amazonaws.com/team/*']\n  nonEcrImages: Deny\n",
    )
    .unwrap();
    let namespaces = examples().join("namespaces.yaml");
    let out = check(
        None,
        &[
            "--policy-file",
            &regulated_policy(),
            "--policy-file",
            narrow.to_str().unwrap(),
            "--namespaces-file",
            namespaces.to_str().unwrap(),
            "-f",
            manifest.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("ecr-guard: warning: namespace"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(warnings[0].contains("\"paymnets\""), "{}", warnings[0]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<(bool, &str, serde_json::Value)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["namespace_known"].as_bool().unwrap(),
                r["decision"].as_str().unwrap(),
                r["policies"].clone(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            (false, "allowed", serde_json::json!([])),
            (false, "allowed", serde_json::json!([])),
            (true, "denied", serde_json::json!(["regulated-require-cmk"])),
        ]
    );

    // In text, a policy that selects the namespace but not the image is named.
    let out = check(
        None,
        &[
            "--policy-file",
            narrow.to_str().unwrap(),
            "--namespaces-file",
            namespaces.to_str().unwrap(),
            "-n",
            "payments",
            "--image",
            "nginx:1.27",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "  [note] no policy applies: the policies selecting namespace payments (team-only) select none of its images\n"
        ),
        "{}",
        stdout(&out)
    );
}

/// Fault 3 on the command line: the label forms and their kind exit 2
/// naming what was wrong and the rule; so do the same names given by -n, in a
/// manifest's metadata.namespace and in a namespaces file.
#[test]
fn names_and_labels_kubernetes_would_refuse_exit_2_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let pod = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: nginx}}]}}\n"
        )
    };
    let upper = write("upper.yaml", &pod("Payments"));
    let number = write("number.yaml", &pod("5"));
    let staging = write("staging.yaml", &pod("staging"));
    let bad_ns_file = write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments, labels: {'compliance ': regulated}}\n",
    );
    let policy = regulated_policy();
    let labels = |value: &'static str| vec!["--namespace-labels", value, "--image", "nginx"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            labels("payments: compliance=regulated"),
            "invalid --namespace-labels \"payments: compliance=regulated\": label key \" compliance\" is not a valid label key: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        ),
        (
            labels("payments:compliance=regulated env=prod"),
            "label compliance: value \"regulated env=prod\" is not a valid label value (labels are separated by ',')",
        ),
        (
            labels("Payments:compliance=regulated"),
            "invalid --namespace-labels \"Payments:compliance=regulated\": namespace \"Payments\" is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        (labels("payments:a=b,"), "an empty label"),
        (
            vec![
                "--namespace-labels",
                "payments:env=prod",
                "--namespace-labels",
                "payments:env=dev",
                "--image",
                "nginx",
            ],
            "label env is \"prod\" in --namespace-labels \"payments:env=prod\" but \"dev\" here",
        ),
        (
            vec!["-n", "Payments", "--image", "nginx"],
            "invalid --namespace \"Payments\": not a valid namespace name: a lowercase RFC 1123 label",
        ),
        (
            vec!["-n", "pay ments", "--image", "nginx"],
            "invalid --namespace \"pay ments\": not a valid namespace name",
        ),
        (
            vec!["-f", &upper],
            "document 1: Pod: p: metadata.namespace \"Payments\" is not a valid namespace name: a lowercase RFC 1123 label",
        ),
        (
            vec!["-f", &number],
            "document 1: Pod: p: metadata.namespace is not a string: 5",
        ),
        (
            vec!["-n", "payments", "-f", &staging],
            "document 1: Pod: p: the namespace from the object, \"staging\", does not match --namespace \"payments\"",
        ),
        (
            vec!["--namespaces-file", &bad_ns_file, "--image", "nginx"],
            "document 1: namespace payments: label key \"compliance \" is not a valid label key",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = ["--policy-file", policy.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let out = check(None, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}

/// Fault 2's other half: a -f input that holds no Pod or workload (a policy file,
/// an empty file or standard input, an empty List, only Services), a document
/// that is no manifest, and an empty --image are input errors, not "0 checked".
#[test]
fn input_with_nothing_to_judge_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let policy = regulated_policy();
    let empty = write("empty.yaml", "");
    let comments = write("comments.yaml", "# nothing here\n---\n---\n");
    let list = write("list.yaml", "apiVersion: v1\nkind: List\nitems: []\n");
    let services = write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let sequence = write("seq.yaml", "- apiVersion: v1\n  kind: Pod\n");
    let no_kind = write(
        "nokind.yaml",
        "apiVersion: v1\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\n",
    );
    let bad_items = write("items.yaml", "apiVersion: v1\nkind: List\nitems: {a: 1}\n");
    let bad_item = write(
        "item.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n  spec: {containers: [{name: c, image: nginx}]}\n- {kind: Pod}\n",
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["-f", &policy],
            format!(
                "{policy}: no Pod or workload to check (it holds 1 EcrEncryptionPolicy); check judges Pods"
            ),
        ),
        (
            vec!["-f", &empty],
            format!("{empty}: no Pod or workload to check (it holds no objects)"),
        ),
        (
            vec!["-f", &comments],
            format!("{comments}: no Pod or workload to check (it holds no objects)"),
        ),
        (
            vec!["-f", &list],
            format!("{list}: no Pod or workload to check (it holds no objects)"),
        ),
        (
            vec!["-f", &services],
            format!(
                "{services}: no Pod or workload to check (it holds 1 ConfigMap, 2 Service objects)"
            ),
        ),
        (
            vec!["-f", &sequence],
            format!("{sequence}: document 1: is not an object"),
        ),
        (
            vec!["-f", &no_kind],
            format!("{no_kind}: document 1: has no kind"),
        ),
        (
            vec!["-f", &bad_items],
            format!("{bad_items}: document 1: List: items is not a list"),
        ),
        (
            vec!["-f", &bad_item],
            format!("{bad_item}: document 1: List items[1] Pod has no apiVersion"),
        ),
        (
            vec!["--image", ""],
            "invalid --image \"\": empty image reference".to_string(),
        ),
        (
            vec!["--image", "nginx,,busybox"],
            "invalid --image \"\": empty image reference".to_string(),
        ),
        (
            vec!["--image", " nginx"],
            "invalid --image \" nginx\": leading or trailing whitespace".to_string(),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = ["--policy-file", policy.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let out = check(None, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(&expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "", "{args:?}");
    }

    // Standard input: nothing is an error; a Pod is judged, in -n's namespace.
    let out = check_stdin(&["--policy-file", &policy, "-f", "-"], "");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("standard input: no Pod or workload to check (it holds no objects)"),
        "{}",
        stderr(&out)
    );
    let out = check_stdin(
        &["--policy-file", &policy, "-n", "dev", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ALLOWED: dev Pod/p\n"),
        "{}",
        stdout(&out)
    );
}

/// -n and metadata.namespace, as kubectl apply takes them: the object's own
/// namespace wins when -n is not given, -n fills in one that names none, and an
/// explicit -n that agrees is fine (a disagreeing one is an error, above).
#[test]
fn manifests_take_their_namespace_as_kubectl_does() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pods.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: own, namespace: payments}\nspec: {containers: [{name: c, image: nginx}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: none, namespace: ''}\nspec: {containers: [{name: c, image: nginx}]}\n",
    )
    .unwrap();
    let policy = regulated_policy();
    let namespaces = examples().join("namespaces.yaml");
    let base = [
        "--policy-file",
        policy.as_str(),
        "--namespaces-file",
        namespaces.to_str().unwrap(),
        "-f",
        manifest.to_str().unwrap(),
    ];
    let lines = |out: &Output| -> Vec<String> {
        stdout(out)
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(String::from)
            .collect()
    };
    let out = check(None, &base);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        lines(&out),
        [
            "DENIED: payments Pod/own",
            "ALLOWED: default Pod/none",
            "2 checked: 1 denied, 1 allowed"
        ]
    );
    assert!(
        stderr(&out).contains("namespace \"default\" is not in"),
        "{}",
        stderr(&out)
    );
    let with_n: Vec<&str> = base.iter().copied().chain(["-n", "payments"]).collect();
    let out = check(None, &with_n);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        lines(&out),
        [
            "DENIED: payments Pod/own",
            "DENIED: payments Pod/none",
            "2 checked: 2 denied, 0 allowed"
        ]
    );
    assert!(
        !stderr(&out).contains("warning: namespace"),
        "{}",
        stderr(&out)
    );
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
    // Said once: a fatal error is one log line, not a log line and an echo.
    assert_eq!(
        err.matches("spec.namespaceSelecter: unknown field").count(),
        1,
        "{err}"
    );
    assert!(!ca.exists(), "nothing is written before the policies load");
}

/// A pull-through cache image whose repository does not exist yet is judged by
/// the creation template that will create it; the proxy answers the rules and
/// templates in moto's place (moto implements neither).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_images_are_judged_by_the_template_that_will_create_them() {
    use support::proxy::{DESCRIBE_PULL_THROUGH_CACHE_RULES, Proxy};

    let moto = seeded().await;
    let key = moto.create_key("us-east-1").await;
    moto.enable_key_rotation(&key).await;
    let proxy = Proxy::start(moto.endpoint()).await;
    {
        let mut pull_through = proxy.pull_through();
        let account = support::moto::ACCOUNT;
        pull_through.add_rule(account, "docker-hub", "registry-1.docker.io");
        pull_through.add_rule(account, "quay", "quay.io");
        pull_through.add_template("docker-hub", &["PULL_THROUGH_CACHE"], "KMS", Some(&key.arn));
        pull_through.add_template("ROOT", &["PULL_THROUGH_CACHE"], "AES256", None);
    }
    let endpoint = proxy.endpoint().to_owned();
    let run = |image: String| {
        let endpoint = endpoint.clone();
        tokio::task::spawn_blocking(move || {
            let base = regulated();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
            cmd.arg("check")
                .args(with(&base, &["-n", "payments", "--image", &image]))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ENDPOINT_URL", endpoint);
            cmd.output().unwrap()
        })
    };

    let out = run(format!("{HOST}/docker-hub/library/nginx:1.27"))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let image = format!("{HOST}/quay/prometheus/node-exporter:v1.8.2");
    let out = run(image.clone()).await.unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "container \"node-exporter\" image {image}: repository quay/prometheus/node-exporter does not exist yet; \
             pull-through cache rule quay will create it with template ROOT (AES256); \
             policy regulated-require-cmk allows only KMS, KMS_DSSE"
        )),
        "{text}"
    );
    assert!(
        text.contains("  hint: change the repository creation template that will create it (account 123456789012): `aws ecr update-repository-creation-template --prefix ROOT"),
        "{text}"
    );
    assert_eq!(
        proxy.count(DESCRIBE_PULL_THROUGH_CACHE_RULES),
        2,
        "one per run, two runs"
    );
    assert_eq!(proxy.pull_through().shape_errors(), Vec::<String>::new());
}

//! `ecr-guard audit --once --pods-file`: the audit without a cluster. Pods from
//! files as `kubectl get pods -A -o yaml` prints them, policies from
//! `--policy-file`, the reports printed as `kubectl get policyreport -A -o yaml`
//! would show them. No AWS: the policies here need no lookup.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const POLICY: &str = "\
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata:
  name: no-hub
spec:
  namespaceSelector:
    matchLabels: {tier: regulated}
  nonEcrImages: Deny
";

fn pod(namespace: &str, name: &str, image: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {"phase": phase},
    })
}

/// Runs `ecr-guard audit --once` on these Pods (one `List`) with the policy
/// above and `demo` labelled tier=regulated; no AWS endpoint is reachable.
fn audit(dir: &Path, pods: Vec<Value>, extra: &[&str]) -> Output {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let pods_file = dir.join("pods.yaml");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": pods, "metadata": {"resourceVersion": ""}});
    std::fs::write(&pods_file, serde_json::to_string(&list).unwrap()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .args(["audit", "--once", "--pods-file"])
        .arg(&pods_file)
        .arg("--policy-file")
        .arg(&policy)
        .args([
            "--namespace-labels",
            "demo:tier=regulated",
            "--namespace-labels",
            "other:kubernetes.io/metadata.name=other",
        ])
        .args(extra)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

fn cluster_pods() -> Vec<Value> {
    vec![
        pod("demo", "web", "nginx:1.27", "Running"),
        // Not judged: finished, or in an excluded namespace (kube-system by default).
        pod("demo", "migrate", "busybox:1.36", "Succeeded"),
        pod("kube-system", "dns", "coredns:1.11", "Running"),
        // No policy applies in `other`.
        pod("other", "tool", "busybox:1.36", "Running"),
    ]
}

#[test]
fn a_violation_exits_1_and_yaml_is_the_list_kubectl_would_print() {
    let dir = tempfile::tempdir().unwrap();
    let out = audit(dir.path(), cluster_pods(), &["--output", "yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["metadata"], json!({"resourceVersion": ""}));
    let items = list["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "one report: the namespace with results\n{stdout}"
    );
    let report = &items[0];
    assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(report["kind"], "PolicyReport");
    assert_eq!(
        report["metadata"],
        json!({
            "name": "ecr-guard",
            "namespace": "demo",
            "labels": {"app.kubernetes.io/managed-by": "ecr-guard"},
        })
    );
    assert_eq!(
        report["summary"],
        json!({"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let result = &report["results"][0];
    assert_eq!(result["source"], "ecr-guard");
    assert_eq!(result["policy"], "no-hub");
    assert_eq!(result["result"], "fail");
    assert_eq!(result["rule"], "non_ecr_image");
    assert_eq!(result["severity"], "high");
    assert_eq!(
        result["resources"],
        json!([{"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "demo", "uid": "uid-web"}])
    );
    assert!(result["timestamp"]["seconds"].as_i64().unwrap() > 0);
    assert_eq!(result["timestamp"]["nanos"], 0);
    // Keys in kubectl's order (sorted), `apiVersion` first.
    assert!(stdout.starts_with("apiVersion: v1\nitems:\n"), "{stdout}");

    // -o json: the same List.
    let out = audit(dir.path(), cluster_pods(), &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, list);

    // The summary (default): Succeeded and kube-system Pods left out.
    let out = audit(dir.path(), cluster_pods(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.starts_with(
            "audited 2 Pods in 2 namespaces: 0 pass, 1 fail, 0 warn, 0 error, 0 skip\n"
        ),
        "{summary}"
    );
    assert!(summary.contains("  fail demo/web no-hub: "), "{summary}");
    assert!(
        summary.contains("reports: 1 PolicyReport, not written (local mode)"),
        "{summary}"
    );
}

#[test]
fn nothing_violated_exits_0_with_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let pods = vec![pod("other", "tool", "busybox:1.36", "Running")];
    let out = audit(dir.path(), pods, &["-o", "yaml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"], json!([]));
}

#[test]
fn usage_and_input_errors_exit_2() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
            .args(args)
            .output()
            .unwrap()
    };
    // --pods-file needs --once (and --policy-file); --output needs --pods-file.
    for args in [
        &[
            "audit",
            "--pods-file",
            "pods.yaml",
            "--policy-file",
            "p.yaml",
        ][..],
        &["audit", "--once", "--pods-file", "pods.yaml"][..],
        &["audit", "--once", "--output", "yaml"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("required arguments were not provided"),
            "{stderr}"
        );
    }
    // A file of something else than Pods.
    let dir = tempfile::tempdir().unwrap();
    let deployment =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    let out = audit(dir.path(), vec![deployment], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("document 1: apps/v1 Deployment is not a Pod"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

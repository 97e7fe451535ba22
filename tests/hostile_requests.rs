//! Malformed and adversarial requests, sent over real HTTPS to a webhook backed by
//! moto. The bodies are in tests/data/hostile/cases (made by generate.py there),
//! the expected answers in tests/data/hostile/manifest.json; bodies too large to
//! keep in git are built here from the manifest's `generate` entries.
//!
//! What every case must show: no panic, no HTTP 5xx, an answer within the
//! deadline, and the expected verdict — above all, nothing that should be
//! denied is allowed.

mod support;

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use support::https;
use support::moto::Moto;
use support::proxy::Proxy;
use support::webhook::{Settings, Webhook};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// `regulated`: KMS with a rotating customer key, nothing from outside ECR.
/// `lenient`: KMS only, images from elsewhere allowed — where a host spelled to
/// look non-ECR would slip through.
const POLICIES: &str = "
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: strict}
spec:
  namespaceSelector: {matchLabels: {tier: regulated}}
  rules: {allowedEncryptionTypes: [KMS, KMS_DSSE], requireCustomerManagedKey: true, requireKeyRotation: true}
  nonEcrImages: Deny
---
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: lenient}
spec:
  namespaceSelector: {matchLabels: {tier: lenient}}
  rules: {allowedEncryptionTypes: [KMS, KMS_DSSE]}
  nonEcrImages: Allow
";

/// A correctness bound for one answer, generous for the 5,000-container case on
/// a shared machine.
const DEADLINE: Duration = Duration::from_secs(10);
/// However large the input, the message a user reads stays readable.
const MAX_MESSAGE_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// A file in cases/ …
    #[serde(default)]
    file: Option<String>,
    /// … or a body built by [`generate`].
    #[serde(default)]
    generate: Option<String>,
    status: u16,
    /// `response.allowed`, for HTTP 200 answers.
    #[serde(default)]
    allowed: Option<bool>,
    /// `response.status.code` of a denial.
    #[serde(default)]
    code: Option<u16>,
    /// Substrings of `response.status.message` (the 400/413 error text included).
    #[serde(default)]
    contains: Vec<String>,
    /// Substrings of the joined warnings.
    #[serde(default)]
    warns: Vec<String>,
}

fn data(path: &str) -> String {
    format!("{}/tests/data/hostile/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn pod_review(namespace: &str, spec: Value) -> Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "generated", "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "x", "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "mallory"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec},
            "oldObject": null, "dryRun": false
        }
    })
}

/// Bodies too large for git.
fn generate(what: &str) -> Vec<u8> {
    let containers = |n: usize, bad_at: Option<usize>| -> Value {
        (0..n)
            .map(|i| {
                let repo = if Some(i) == bad_at { "plain" } else { "secure" };
                json!({"name": format!("c{i}"), "image": format!("{HOST}/team/{repo}:{i}")})
            })
            .collect()
    };
    let review = match what {
        "containers-5000-one-aes256" => pod_review(
            "regulated",
            json!({"containers": containers(5000, Some(4321))}),
        ),
        "containers-5000-all-compliant" => {
            pod_review("regulated", json!({"containers": containers(5000, None)}))
        }
        "containers-5000-all-aes256" => {
            let all: Value = (0..5000)
                .map(
                    |i| json!({"name": format!("c{i}"), "image": format!("{HOST}/team/plain:{i}")}),
                )
                .collect();
            pod_review("regulated", json!({"containers": all}))
        }
        "annotation-2mib" => {
            let mut r = pod_review(
                "regulated",
                json!({"containers": [{"name": "app", "image": format!("{HOST}/team/plain:1")}]}),
            );
            r["request"]["object"]["metadata"]["annotations"] = json!({"x": "y".repeat(2 << 20)});
            r
        }
        "body-4mib" => {
            let mut r = pod_review("regulated", json!({"containers": []}));
            r["request"]["object"]["metadata"]["annotations"] = json!({"x": "y".repeat(4 << 20)});
            r
        }
        "body-8mib" => {
            let mut r = pod_review("regulated", json!({"containers": []}));
            r["request"]["object"]["metadata"]["annotations"] = json!({"x": "y".repeat(8 << 20)});
            r
        }
        "image-1mib" => pod_review(
            "lenient",
            json!({"containers": [{"name": "app", "image": format!("{HOST}/{}", "a".repeat(1 << 20))}]}),
        ),
        other => panic!("unknown generator {other}"),
    };
    serde_json::to_vec(&review).unwrap()
}

fn manifest() -> Vec<Case> {
    serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap())
        .expect("manifest.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_request_gets_its_expected_answer() {
    let cases = manifest();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    // Every file in cases/ is in the manifest, and the other way round.
    let mut files: Vec<String> = std::fs::read_dir(data("cases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = cases.iter().filter_map(|c| c.file.clone()).collect();
    listed.sort();
    assert_eq!(files, listed, "cases/ and manifest.json disagree");

    let moto = Moto::start_with_team_repositories().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    let hook = Webhook::start(
        proxy.endpoint(),
        Settings::new(POLICIES)
            .namespace("regulated:tier=regulated")
            .namespace("lenient:tier=lenient"),
    )
    .await;

    let record = std::env::var_os("HOSTILE_RECORD");
    let mut failures = Vec::new();
    let mut worst = Duration::ZERO;
    for case in &cases {
        let body = match (&case.file, &case.generate) {
            (Some(file), None) => std::fs::read(data(&format!("cases/{file}"))).unwrap(),
            (None, Some(what)) => generate(what),
            _ => panic!("{}: exactly one of file and generate", case.name),
        };
        let sent_uid = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["request"]["uid"].as_str().map(str::to_owned));
        let started = Instant::now();
        let resp = https::request(hook.addr, &hook.ca, "POST", "/validate", body)
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.name));
        let took = started.elapsed();
        worst = worst.max(took);
        // Every answer, error or not, is an AdmissionReview.
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
            panic!(
                "{}: HTTP {} answer is not JSON ({e}): {}",
                case.name,
                resp.status,
                String::from_utf8_lossy(&resp.body)
            )
        });
        let r = &body["response"];
        let message = r["status"]["message"].as_str().unwrap_or_default();
        let warnings = r["warnings"].to_string();
        if let Some(path) = &record {
            // HOSTILE_RECORD=FILE: what each case got, as JSON lines, to review
            // by hand when adding cases.
            let line = json!({"name": case.name, "status": resp.status, "allowed": r["allowed"],
                              "code": r["status"]["code"], "message": message, "warnings": r["warnings"]});
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()).unwrap();
        }
        let mut problems = Vec::new();
        if took > DEADLINE {
            problems.push(format!("answered after {took:?}"));
        }
        if resp.status != case.status {
            problems.push(format!("HTTP {} (expected {})", resp.status, case.status));
        }
        if body["kind"] != "AdmissionReview" {
            problems.push("the answer is not an AdmissionReview".to_string());
        }
        // (serde_json cannot read one body here, `1e999`, so it has no uid to compare.)
        if resp.status == 200 && sent_uid.is_some() && r["uid"].as_str() != sent_uid.as_deref() {
            problems.push("the answer does not carry the request's uid".to_string());
        }
        if let Some(allowed) = case.allowed
            && r["allowed"] != allowed
        {
            problems.push(format!("allowed={} (expected {allowed})", r["allowed"]));
        }
        if let Some(code) = case.code
            && r["status"]["code"] != code
        {
            problems.push(format!("code={} (expected {code})", r["status"]["code"]));
        }
        if message.len() > MAX_MESSAGE_BYTES {
            problems.push(format!(
                "message is {} bytes (at most {MAX_MESSAGE_BYTES})",
                message.len()
            ));
        }
        for needle in &case.contains {
            if !message.contains(needle.as_str()) {
                problems.push(format!("message lacks {needle:?}"));
            }
        }
        for needle in &case.warns {
            if !warnings.contains(needle.as_str()) {
                problems.push(format!("warnings lack {needle:?}"));
            }
        }
        if !problems.is_empty() {
            let short: String = message.chars().take(400).collect();
            failures.push(format!(
                "{}: {}\n    message: {short}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    eprintln!(
        "hostile corpus: {} cases, worst answer {worst:?}",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Three repositories behind every ECR image in the corpus (team/secure,
    // team/plain and the 230-character one, which does not exist): looked up
    // once each.
    assert!(proxy.count(support::proxy::DESCRIBE_REPOSITORIES) <= 3);
}

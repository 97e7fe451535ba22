//! The webhook over real HTTPS, against moto, with AdmissionReview bodies of the
//! shape a kube-apiserver sends (tests/data/admission-reviews, captured from one).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ecr_guard::admission::{RequestContext, ViolationSink};
use ecr_guard::policy::Violation;
use serde_json::{Value, json};
use support::https::{self, post_review};
use support::moto::Moto;
use support::proxy::{self, Proxy};
use support::webhook::{Settings, Webhook};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

const STRICT: &str = "
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: strict}
spec:
  namespaceSelector: {matchLabels: {tier: regulated}}
  rules:
    allowedEncryptionTypes: [KMS, KMS_DSSE]
    requireCustomerManagedKey: true
    requireKeyRotation: true
";

fn good() -> String {
    format!("{HOST}/team/secure:1.0")
}
fn bad() -> String {
    format!("{HOST}/team/plain:1.0")
}

/// moto with `team/secure` (customer key, rotation on) and `team/plain` (AES256),
/// a counting proxy in front of it.
async fn aws() -> (Moto, Proxy) {
    let moto = Moto::start_with_team_repositories().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    (moto, proxy)
}

async fn webhook(proxy: &Proxy, policies: &str) -> Webhook {
    Webhook::start(
        proxy.endpoint(),
        Settings::new(policies).namespace("demo:tier=regulated"),
    )
    .await
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/admission-reviews/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Rewrites every `image` (and image volume `reference`) in the review's objects.
fn set_images(review: &mut Value, image: &str) {
    fn walk(v: &mut Value, image: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if (k == "image" || k == "reference") && child.is_string() {
                        *child = Value::String(image.to_string());
                    } else {
                        walk(child, image);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, image)),
            _ => {}
        }
    }
    walk(&mut review["request"]["object"], image);
    walk(&mut review["request"]["oldObject"], image);
}

fn response(resp: &https::Response) -> Value {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    body["response"].clone()
}

/// A review of `kind` in namespace demo, its pod spec running `image`.
fn workload_review(group: &str, kind: &str, resource: &str, image: &str) -> Value {
    let pod_spec = json!({"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}], "restartPolicy": "Always"});
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": pod_spec});
    let spec = match kind {
        "Pod" => pod_spec,
        "CronJob" => {
            json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}})
        }
        _ => json!({"selector": {"matchLabels": {"app": "x"}}, "template": template}),
    };
    let version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let gvk = json!({"group": group, "version": "v1", "kind": kind});
    let gvr = json!({"group": group, "version": "v1", "resource": resource});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{kind}-{image}"), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "x", "namespace": "demo", "operation": "CREATE",
            "userInfo": {"username": "kube-local-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": {"apiVersion": version, "kind": kind, "metadata": {"name": "x", "namespace": "demo"}, "spec": spec},
            "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_judged_kind_is_allowed_with_a_compliant_image_and_denied_with_an_aes256_one() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    let kinds = [
        ("", "Pod", "pods"),
        ("apps", "Deployment", "deployments"),
        ("apps", "StatefulSet", "statefulsets"),
        ("apps", "DaemonSet", "daemonsets"),
        ("apps", "ReplicaSet", "replicasets"),
        ("batch", "Job", "jobs"),
        ("batch", "CronJob", "cronjobs"),
        ("", "ReplicationController", "replicationcontrollers"),
    ];
    for (group, kind, resource) in kinds {
        let review = workload_review(group, kind, resource, &good());
        let r = response(&post_review(hook.addr, &hook.ca, &review).await);
        assert_eq!(r["uid"], review["request"]["uid"], "{kind}");
        assert_eq!(r["allowed"], true, "{kind}: {r}");

        let review = workload_review(group, kind, resource, &bad());
        let r = response(&post_review(hook.addr, &hook.ca, &review).await);
        assert_eq!(r["allowed"], false, "{kind}: {r}");
        assert_eq!(r["status"]["code"], 403, "{kind}");
        assert_eq!(r["status"]["reason"], "Forbidden", "{kind}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "container \"app\" image {}: repository team/plain is encrypted with AES256; policy strict allows only KMS, KMS_DSSE",
                bad()
            )),
            "{kind}: {message}"
        );
        assert!(
            message.contains("\nhint: a repository's encryption cannot be changed"),
            "{message}"
        );
    }
    // Two repositories, looked up once each (then cached), however many reviews.
    assert_eq!(proxy.count(proxy::DESCRIBE_REPOSITORIES), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_as_the_api_server_sends_them_are_judged() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    // 0001: a multi-container Pod by kubectl; 0006: a Pod made by the ReplicaSet controller.
    for name in [
        "0001-CREATE-Pod-demo-multi.json",
        "0006-CREATE-Pod-demo-web_568b485c7f_gxtfr.json",
        "0005-CREATE-Deployment-demo-web.json",
    ] {
        let mut review = fixture(name);
        set_images(&mut review, &bad());
        let r = response(&post_review(hook.addr, &hook.ca, &review).await);
        assert_eq!(r["allowed"], false, "{name}");
        assert_eq!(r["uid"], review["request"]["uid"]);
        set_images(&mut review, &good());
        let r = response(&post_review(hook.addr, &hook.ca, &review).await);
        assert_eq!(r["allowed"], true, "{name}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_policies_answer_with_short_warnings() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(
        &proxy,
        &STRICT
            .replace("metadata: {name: strict}", "metadata: {name: strict}\n")
            .replace("spec:\n", "spec:\n  mode: Warn\n"),
    )
    .await;
    let r = response(
        &post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", "Pod", "pods", &bad()),
        )
        .await,
    );
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for w in warnings {
        let w = w.as_str().unwrap();
        assert!(w.chars().count() <= 120, "{w}");
        assert!(w.starts_with("container \"app\""), "{w}");
    }
}

const DRY_RUN_ANNOTATION: &str = "dry-run-violations";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_policies_admit_and_annotate() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(
        &proxy,
        &STRICT.replace("spec:\n", "spec:\n  mode: DryRun\n"),
    )
    .await;
    let r = response(
        &post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", "Pod", "pods", &bad()),
        )
        .await,
    );
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none(), "{r}");
    let listed: Vec<String> =
        serde_json::from_str(r["auditAnnotations"][DRY_RUN_ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].contains("repository team/plain is encrypted with AES256"),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_dry_run_switch_turns_enforce_into_dry_run() {
    let (_moto, proxy) = aws().await;
    let mut settings = Settings::new(STRICT).namespace("demo:tier=regulated");
    settings.dry_run = true;
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    let r = response(
        &post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", "Pod", "pods", &bad()),
        )
        .await,
    );
    assert_eq!(r["allowed"], true);
    assert!(
        r["auditAnnotations"][DRY_RUN_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("AES256")
    );
}

#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl ViolationSink for Recorded {
    fn record(&self, context: &RequestContext, violation: &Violation) {
        self.0.lock().unwrap().push(format!(
            "{}/{}: {}",
            context.namespace, context.name, violation.policy
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_requests_are_judged_the_same_without_side_effects() {
    let (_moto, proxy) = aws().await;
    let sink = Arc::new(Recorded::default());
    let policies = format!(
        "{STRICT}---\n{}",
        STRICT
            .replace("name: strict", "name: watch")
            .replace("spec:\n", "spec:\n  mode: Warn\n")
    );
    let mut settings = Settings::new(&policies).namespace("demo:tier=regulated");
    settings.sink = Some(sink.clone());
    let hook = Webhook::start(proxy.endpoint(), settings).await;

    // 0003: `kubectl create --dry-run=server`.
    let mut review = fixture("0003-CREATE-Pod-demo-dryrun_pod-dryrun.json");
    assert_eq!(review["request"]["dryRun"], true);
    set_images(&mut review, &bad());
    let r = response(&post_review(hook.addr, &hook.ca, &review).await);
    assert_eq!(r["allowed"], false, "judged the same as a real request");
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "no events for dryRun requests"
    );

    review["request"]["dryRun"] = json!(false);
    let r = response(&post_review(hook.addr, &hook.ca, &review).await);
    assert_eq!(r["allowed"], false);
    let recorded = sink.0.lock().unwrap().clone();
    // One Warn violation per container (init, a, b); Enforce ones are not events.
    assert_eq!(recorded, ["demo/dryrun-pod: watch"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_judges_changed_images_only() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    let mut review = fixture("0010-UPDATE-Pod-demo-multi.json");
    assert_eq!(review["request"]["operation"], "UPDATE");
    // Unchanged non-compliant images (e.g. a label edit): not this update's doing.
    set_images(&mut review, &bad());
    let r = response(&post_review(hook.addr, &hook.ca, &review).await);
    assert_eq!(r["allowed"], true, "{r}");
    // Changing a container's image to a non-compliant one is judged.
    set_images(&mut review["request"]["oldObject"], &good());
    let mut old = review["request"]["oldObject"].clone();
    set_images_value(&mut old, &good());
    review["request"]["oldObject"] = old;
    let r = response(&post_review(hook.addr, &hook.ca, &review).await);
    assert_eq!(r["allowed"], false, "{r}");
}

fn set_images_value(v: &mut Value, image: &str) {
    let mut wrapper = json!({"request": {"object": v.clone(), "oldObject": null}});
    set_images(&mut wrapper, image);
    *v = wrapper["request"]["object"].take();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_debug_ephemeral_containers_are_judged() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    // 0012: `kubectl debug` → UPDATE pods/ephemeralcontainers.
    let mut review = fixture("0012-UPDATE-Pod-demo-multi-ephemeralcontainers.json");
    assert_eq!(review["request"]["subResource"], "ephemeralcontainers");
    set_images(&mut review, &good());
    let debugger = &mut review["request"]["object"]["spec"]["ephemeralContainers"][0];
    debugger["image"] = json!(bad());
    let r = response(&post_review(hook.addr, &hook.ca, &review).await);
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("ephemeral container \"debugger\" image"),
        "{r}"
    );

    review["request"]["object"]["spec"]["ephemeralContainers"][0]["image"] = json!(good());
    let r = response(&post_review(hook.addr, &hook.ca, &review).await);
    assert_eq!(r["allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_kinds_operations_and_subresources_pass_untouched_without_lookups() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    for name in [
        "0008-UPDATE-Scale-demo-web-scale.json",
        "0013-CONNECT-PodExecOptions-demo-multi-exec.json",
        "0015-CREATE-Binding-demo-runpod-binding.json",
        "0019-DELETE-Pod-demo-alice_pod.json",
        "0027-UPDATE-Pod-demo-runpod-status.json",
        "0028-DELETE-Pod-demo-runpod.json",
    ] {
        let mut review = fixture(name);
        set_images(&mut review, &bad());
        let r = response(&post_review(hook.addr, &hook.ca, &review).await);
        assert_eq!(r["allowed"], true, "{name}: {r}");
        assert_eq!(r["uid"], review["request"]["uid"], "{name}");
    }
    assert_eq!(proxy.count(proxy::DESCRIBE_REPOSITORIES), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_get_clear_errors_and_wrong_routes_404_405() {
    let (_moto, proxy) = aws().await;
    let mut settings = Settings::new(STRICT);
    settings.max_body_bytes = 64 * 1024;
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    let post = |body: Vec<u8>| https::request(hook.addr, &hook.ca, "POST", "/validate", body);

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", b"{\"apiVersion\": ".to_vec(), 400, "request body is not valid JSON"),
        ("empty body", Vec::new(), 400, "request body is empty"),
        ("not a review", b"[1,2,3]".to_vec(), 400, "request body is not an AdmissionReview"),
        (
            "wrong apiVersion",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{},"name":"x"}}"#.to_vec(),
            400,
            "unsupported AdmissionReview version \"admission.k8s.io/v1beta1\"",
        ),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "AdmissionReview has no request"),
        ("oversize", vec![b' '; 65 * 1024], 413, ""),
    ];
    for (what, body, status, message) in cases {
        let resp = post(body).await.unwrap();
        assert_eq!(
            resp.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        if status == 400 {
            let r = &resp.json()["response"];
            assert_eq!(r["allowed"], false, "{what}");
            assert!(
                r["status"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(message),
                "{what}: {r}"
            );
        }
    }
    assert_eq!(
        https::request(hook.addr, &hook.ca, "POST", "/mutate", b"{}".to_vec())
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        https::request(hook.addr, &hook.ca, "GET", "/validate", vec![])
            .await
            .unwrap()
            .status,
        405
    );
    // Still serving afterwards.
    let r = response(
        &post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", "Pod", "pods", "nginx"),
        )
        .await,
    );
    assert_eq!(r["allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http_and_tls_1_1_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;

    let mut tcp = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
    tcp.write_all(b"POST /validate HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext must not be served: {}",
        String::from_utf8_lossy(&answer)
    );

    // rustls cannot speak TLS 1.1, so ask openssl (on the machine) to try.
    let (ok, text) = openssl_handshake(hook.addr, "-tls1_1").await;
    assert!(!ok, "TLS 1.1 handshake must fail: {text}");
    assert!(text.contains("no peer certificate available"), "{text}");
    // …while TLS 1.2 works.
    let (ok, text) = openssl_handshake(hook.addr, "-tls1_2").await;
    assert!(ok && text.contains("Protocol  : TLSv1.2"), "{text}");
}

/// `openssl s_client` with one protocol flag: (exit success, stdout + stderr).
async fn openssl_handshake(addr: std::net::SocketAddr, protocol: &'static str) -> (bool, String) {
    let addr = addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                protocol,
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("openssl must be installed");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let (_moto, proxy) = aws().await;
    let hook = webhook(&proxy, STRICT).await;
    let (status, _) = hook.admin_get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(hook.admin_get("/healthz").await.0, 200);
    for image in [good(), bad(), bad()] {
        post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", "Pod", "pods", &image),
        )
        .await;
    }
    // Kinds ecr-guard does not judge share one label value, whatever they are called.
    for kind in ["ConfigMap", "Made-Up-Kind-1", "Made-Up-Kind-2"] {
        post_review(
            hook.addr,
            &hook.ca,
            &workload_review("", kind, "configmaps", &good()),
        )
        .await;
    }
    let (status, text) = hook.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(!text.contains("Made-Up-Kind"), "{text}");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, number) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(number.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(!series.contains(HOST), "no image names in labels: {line}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
    assert_eq!(
        value(
            "ecr_guard_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"allowed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            "ecr_guard_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"denied\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            "ecr_guard_policy_violations_total{policy=\"strict\",mode=\"Enforce\",reason=\"encryption_type\"}"
        ),
        2.0
    );
    assert_eq!(
        value("ecr_guard_admission_duration_seconds_count{kind=\"Pod\"}"),
        3.0
    );
    assert_eq!(
        value(
            "ecr_guard_admission_requests_total{kind=\"other\",operation=\"CREATE\",decision=\"skipped\"}"
        ),
        3.0
    );
}

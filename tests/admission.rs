//! Admission behaviour through the real webhook router, in-process: the axum
//! router `serve` runs (`server::webhook_router`), an `Admission` over policy
//! files and `--namespace-labels` as local `serve` loads them, fixed repository
//! facts (`judging::FixedFacts`), and AdmissionReview bodies captured from a
//! kube-apiserver (tests/data/admission-reviews). Each request goes through
//! `tower::ServiceExt::oneshot`: no TLS, no sockets, no moto.
//!
//! What only a real connection or the real AWS API can show (TLS, HTTP/1.1 and
//! HTTP/2, bodies still streaming, lookups and their cache) is in
//! tests/webhook_https.rs.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use ecr_guard::admission::{Admission, RequestContext, ViolationSink};
use ecr_guard::image::EcrRepository;
use ecr_guard::judging::{FixedFacts, Judge};
use ecr_guard::metrics::{AdmissionMetrics, WebhookMetrics};
use ecr_guard::policy::Options;
use ecr_guard::policy::Violation;
use ecr_guard::policy::facts::{
    EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, RepositoryFacts, RepositoryLookup,
    Rotation,
};
use ecr_guard::server::{deadline::SAFETY_MARGIN, webhook_router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::reviews::{
    HOST, JUDGED_KINDS, STRICT, bad, fixture, good, set_images, set_images_value, workload_review,
};
use tokio::time::Instant;
use tower::ServiceExt;

/// An ECR repository of [`HOST`].
fn repository(name: &str) -> EcrRepository {
    EcrRepository {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        name: name.into(),
    }
}

/// What moto says of the repositories `Moto::start_with_team_repositories`
/// creates: `team/secure` is KMS with a rotating customer key, `team/plain` is
/// AES256, any other does not exist.
fn team_facts() -> FixedFacts {
    let key = KeyFacts {
        arn: "arn:aws:kms:us-east-1:123456789012:key/0b1d2c3e-team-secure".into(),
        manager: KeyManager::Customer,
        state: KeyState::Enabled,
        rotation: Rotation::Enabled,
        deletion_date: None,
    };
    FixedFacts::answering(Ok(RepositoryLookup::NotFound))
        .with(
            repository("team/secure"),
            Ok(RepositoryLookup::Found(RepositoryFacts {
                encryption_type: EncryptionType::Kms,
                kms_key: Some(KeyLookup::Known(key)),
            })),
        )
        .with(
            repository("team/plain"),
            Ok(RepositoryLookup::Found(RepositoryFacts {
                encryption_type: EncryptionType::Aes256,
                kms_key: None,
            })),
        )
        .recording()
}

/// The Warn and DryRun violations the admission reported, as
/// `namespace/name: policy`.
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

/// How the webhook is set up, as `serve`'s flags would.
struct Settings {
    /// EcrEncryptionPolicy documents (YAML, `---`-separated).
    policies: String,
    /// `NS:KEY=VALUE,…` as for `--namespace-labels`.
    namespaces: Vec<String>,
    /// `--dry-run`.
    dry_run: bool,
    /// `--max-body-bytes`.
    max_body_bytes: usize,
    /// `--lookup-timeout`.
    lookup_timeout: Duration,
}

impl Settings {
    fn new(policies: &str) -> Self {
        Self {
            policies: policies.to_string(),
            namespaces: Vec::new(),
            dry_run: false,
            max_body_bytes: ecr_guard::cli::DEFAULT_MAX_BODY_BYTES,
            lookup_timeout: Duration::from_secs(3),
        }
    }

    fn namespace(mut self, spec: &str) -> Self {
        self.namespaces.push(spec.to_string());
        self
    }
}

/// The webhook router with what it was built from.
struct Hook {
    router: Router,
    facts: Arc<FixedFacts>,
    sink: Arc<Recorded>,
    prometheus: prometheus_client::registry::Registry,
}

impl Hook {
    fn start(settings: Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy_file = dir.path().join("policies.yaml");
        std::fs::write(&policy_file, &settings.policies).unwrap();
        let inventory =
            ecr_guard::inventory::files::inventory(&[policy_file], &[], &settings.namespaces)
                .expect("test policies load");
        let facts = Arc::new(team_facts());
        let judge = Judge::new(
            facts.clone(),
            Options {
                dry_run: settings.dry_run,
            },
            settings.lookup_timeout,
        );
        let mut prometheus = prometheus_client::registry::Registry::default();
        let admission_metrics = AdmissionMetrics::default();
        admission_metrics.register(&mut prometheus);
        let webhook_metrics = WebhookMetrics::default();
        webhook_metrics.register(&mut prometheus);
        let sink = Arc::new(Recorded::default());
        let admission =
            Admission::new(Arc::new(inventory), judge, admission_metrics).with_sink(sink.clone());
        let router = webhook_router(
            Arc::new(admission),
            settings.max_body_bytes,
            webhook_metrics,
        );
        Self {
            router,
            facts,
            sink,
            prometheus,
        }
    }

    /// The webhook as most tests use it: [`STRICT`] and namespace demo regulated.
    fn strict() -> Self {
        Self::start(Settings::new(STRICT).namespace("demo:tier=regulated"))
    }

    /// One request through the router: (status, `Allow` header, JSON body).
    async fn send(&self, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        (status, allow, body)
    }

    /// POSTs `body` to `path`: (status, JSON body).
    async fn post_bytes(&self, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    /// POSTs `review` to `/validate` and returns its AdmissionResponse (HTTP 200).
    async fn review(&self, review: &Value) -> Value {
        self.review_at("/validate", review).await
    }

    async fn review_at(&self, path: &str, review: &Value) -> Value {
        let (status, body) = self
            .post_bytes(path, serde_json::to_vec(review).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        body["response"].clone()
    }

    /// The repositories looked up so far, over all reviews.
    fn lookups(&self) -> usize {
        self.facts
            .asked()
            .iter()
            .map(|a| a.repositories.len())
            .sum()
    }

    /// The value of one series of the webhook's metrics; 0 when not exposed yet.
    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.prometheus).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().unwrap())
            .unwrap_or(0.0)
    }
}

// --- verdicts ---------------------------------------------------------------------

#[tokio::test]
async fn every_judged_kind_is_allowed_with_a_compliant_image_and_denied_with_an_aes256_one() {
    let hook = Hook::strict();
    for (group, kind, resource) in JUDGED_KINDS {
        let review = workload_review(group, kind, resource, &good());
        let r = hook.review(&review).await;
        assert_eq!(r["uid"], review["request"]["uid"], "{kind}");
        assert_eq!(r["allowed"], true, "{kind}: {r}");
        assert!(r.get("warnings").is_none(), "{kind}: {r}");

        let review = workload_review(group, kind, resource, &bad());
        let r = hook.review(&review).await;
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
}

#[tokio::test]
async fn pods_as_the_api_server_sends_them_are_judged() {
    let hook = Hook::strict();
    // 0001: a multi-container Pod by kubectl; 0006: a Pod made by the ReplicaSet controller.
    for name in [
        "0001-CREATE-Pod-demo-multi.json",
        "0006-CREATE-Pod-demo-web_568b485c7f_gxtfr.json",
        "0005-CREATE-Deployment-demo-web.json",
    ] {
        let mut review = fixture(name);
        set_images(&mut review, &bad());
        let r = hook.review(&review).await;
        assert_eq!(r["allowed"], false, "{name}");
        assert_eq!(r["uid"], review["request"]["uid"]);
        set_images(&mut review, &good());
        let r = hook.review(&review).await;
        assert_eq!(r["allowed"], true, "{name}: {r}");
    }
}

#[tokio::test]
async fn a_namespace_no_policy_selects_is_not_judged_and_nothing_is_looked_up() {
    let hook = Hook::start(Settings::new(STRICT).namespace("demo:tier=open"));
    let review = workload_review("", "Pod", "pods", &bad());
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(hook.lookups(), 0);
}

#[tokio::test]
async fn a_repository_that_does_not_exist_is_denied_by_default() {
    let hook = Hook::strict();
    let image = format!("{HOST}/team/missing:1");
    let r = hook
        .review(&workload_review("", "Pod", "pods", &image))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains(&image), "{message}");
}

// --- Warn and DryRun ------------------------------------------------------------------

#[tokio::test]
async fn warn_policies_answer_with_short_warnings() {
    let hook = Hook::start(
        Settings::new(
            &STRICT
                .replace("metadata: {name: strict}", "metadata: {name: strict}\n")
                .replace("spec:\n", "spec:\n  mode: Warn\n"),
        )
        .namespace("demo:tier=regulated"),
    );
    let r = hook
        .review(&workload_review("", "Pod", "pods", &bad()))
        .await;
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for w in warnings {
        let w = w.as_str().unwrap();
        assert!(w.chars().count() <= 120, "{w}");
        assert!(w.starts_with("container \"app\""), "{w}");
    }
    // Reported (as an Event in cluster mode), besides the answer.
    assert_eq!(*hook.sink.0.lock().unwrap(), ["demo/x: strict"]);
}

const DRY_RUN_ANNOTATION: &str = "dry-run-violations";

#[tokio::test]
async fn dry_run_policies_admit_and_annotate() {
    let hook = Hook::start(
        Settings::new(&STRICT.replace("spec:\n", "spec:\n  mode: DryRun\n"))
            .namespace("demo:tier=regulated"),
    );
    let r = hook
        .review(&workload_review("", "Pod", "pods", &bad()))
        .await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none(), "{r}");
    let listed: Vec<String> =
        serde_json::from_str(r["auditAnnotations"][DRY_RUN_ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].contains("repository team/plain is encrypted with AES256"),
        "{listed:?}"
    );
    assert_eq!(ecr_guard::admission::DRY_RUN_ANNOTATION, DRY_RUN_ANNOTATION);
}

#[tokio::test]
async fn the_global_dry_run_switch_turns_enforce_into_dry_run() {
    let mut settings = Settings::new(STRICT).namespace("demo:tier=regulated");
    settings.dry_run = true;
    let hook = Hook::start(settings);
    let r = hook
        .review(&workload_review("", "Pod", "pods", &bad()))
        .await;
    assert_eq!(r["allowed"], true);
    assert!(
        r["auditAnnotations"][DRY_RUN_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("AES256")
    );
}

#[tokio::test]
async fn dry_run_requests_are_judged_the_same_without_side_effects() {
    let policies = format!(
        "{STRICT}---\n{}",
        STRICT
            .replace("name: strict", "name: watch")
            .replace("spec:\n", "spec:\n  mode: Warn\n")
    );
    let hook = Hook::start(Settings::new(&policies).namespace("demo:tier=regulated"));
    let sink = &hook.sink;

    // 0003: `kubectl create --dry-run=server`.
    let mut review = fixture("0003-CREATE-Pod-demo-dryrun_pod-dryrun.json");
    assert_eq!(review["request"]["dryRun"], true);
    set_images(&mut review, &bad());
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], false, "judged the same as a real request");
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "no events for dryRun requests"
    );

    review["request"]["dryRun"] = json!(false);
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], false);
    let recorded = sink.0.lock().unwrap().clone();
    // One Warn violation per container (init, a, b); Enforce ones are not events.
    assert_eq!(recorded, ["demo/dryrun-pod: watch"; 3]);
}

// --- what is judged: operations, the UPDATE diff, subresources -------------------------

#[tokio::test]
async fn update_judges_changed_images_only() {
    let hook = Hook::strict();
    let mut review = fixture("0010-UPDATE-Pod-demo-multi.json");
    assert_eq!(review["request"]["operation"], "UPDATE");
    // Unchanged non-compliant images (e.g. a label edit): not this update's doing.
    set_images(&mut review, &bad());
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(hook.lookups(), 0, "nothing changed, nothing looked up");
    // Changing a container's image to a non-compliant one is judged.
    let mut old = review["request"]["oldObject"].clone();
    set_images_value(&mut old, &good());
    review["request"]["oldObject"] = old;
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], false, "{r}");
    // Only the new image was looked up.
    let asked = hook.facts.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].repositories.iter().all(|r| r.name == "team/plain"),
        "{asked:?}"
    );
}

#[tokio::test]
async fn kubectl_debug_ephemeral_containers_are_judged() {
    let hook = Hook::strict();
    // 0012: `kubectl debug` → UPDATE pods/ephemeralcontainers.
    let mut review = fixture("0012-UPDATE-Pod-demo-multi-ephemeralcontainers.json");
    assert_eq!(review["request"]["subResource"], "ephemeralcontainers");
    set_images(&mut review, &good());
    let debugger = &mut review["request"]["object"]["spec"]["ephemeralContainers"][0];
    debugger["image"] = json!(bad());
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("ephemeral container \"debugger\" image"),
        "{r}"
    );

    review["request"]["object"]["spec"]["ephemeralContainers"][0]["image"] = json!(good());
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], true);
}

#[tokio::test]
async fn other_kinds_operations_and_subresources_pass_untouched_without_lookups() {
    let hook = Hook::strict();
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
        let r = hook.review(&review).await;
        assert_eq!(r["allowed"], true, "{name}: {r}");
        assert_eq!(r["uid"], review["request"]["uid"], "{name}");
    }
    assert_eq!(hook.lookups(), 0);
    // Counted as skipped, under static labels.
    for (series, count) in [
        ("kind=\"other\",operation=\"UPDATE\"", 1.0),
        ("kind=\"other\",operation=\"CONNECT\"", 1.0),
        ("kind=\"other\",operation=\"CREATE\"", 1.0),
        ("kind=\"Pod\",operation=\"DELETE\"", 2.0),
        ("kind=\"Pod\",operation=\"UPDATE\"", 1.0),
    ] {
        let series = format!("ecr_guard_admission_requests_total{{{series},decision=\"skipped\"}}");
        assert_eq!(hook.metric(&series), count, "{series}");
    }
}

#[tokio::test]
async fn an_unreadable_pod_spec_is_denied_with_400_not_admitted_unjudged() {
    let hook = Hook::strict();
    let mut review = workload_review("", "Pod", "pods", &good());
    review["request"]["object"]["spec"]["containers"] = json!("nginx");
    let r = hook.review(&review).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 400, "{r}");
    assert_eq!(r["status"]["reason"], "BadRequest", "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("ecr-guard cannot read the images of this object: "),
        "{r}"
    );
    assert_eq!(hook.lookups(), 0);
}

// --- the API server's timeout -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_api_servers_timeout_parameter_bounds_the_lookup_deadline() {
    let mut settings = Settings::new(STRICT).namespace("demo:tier=regulated");
    settings.lookup_timeout = Duration::from_secs(30);
    let hook = Hook::start(settings);
    let review = workload_review("", "Pod", "pods", &good());
    // Time stands still (paused), so each deadline is exact.
    let now = Instant::now();
    for (query, deadline) in [
        ("", now + Duration::from_secs(30)),
        (
            "?timeout=10s",
            now + Duration::from_secs(10) - SAFETY_MARGIN,
        ),
        ("?timeout=1m0s", now + Duration::from_secs(30)),
        // Within the margin: no time left for AWS.
        ("?timeout=1s", now),
        // Not a Go duration: ignored, --lookup-timeout alone applies.
        ("?timeout=ten", now + Duration::from_secs(30)),
    ] {
        hook.review_at(&format!("/validate{query}"), &review).await;
        let asked = hook.facts.asked();
        assert_eq!(asked.last().unwrap().deadline, deadline, "{query:?}");
    }
}

// --- answers that are not verdicts ------------------------------------------------------------

/// The AdmissionReview body of an HTTP error: `response.status` carries the same
/// code, a Kubernetes reason and a message starting with `message`.
fn assert_error_review(
    (got, body): (StatusCode, &Value),
    status: u16,
    reason: &str,
    message: &str,
    what: &str,
) {
    assert_eq!(got.as_u16(), status, "{what}: {body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{what}");
    assert_eq!(body["kind"], "AdmissionReview", "{what}");
    let r = &body["response"];
    assert_eq!(r["allowed"], false, "{what}");
    assert_eq!(r["status"]["code"], status, "{what}: {r}");
    assert_eq!(r["status"]["status"], "Failure", "{what}: {r}");
    assert_eq!(r["status"]["reason"], reason, "{what}: {r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with(message),
        "{what}: {r}"
    );
}

#[tokio::test]
async fn every_error_answer_of_the_webhook_port_is_a_json_admission_review() {
    let mut settings = Settings::new(STRICT);
    settings.max_body_bytes = 64 * 1024;
    let hook = Hook::start(settings);

    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("malformed JSON", b"{\"apiVersion\": ".to_vec(), 400, "BadRequest", "request body is not valid JSON"),
        ("empty body", Vec::new(), 400, "BadRequest", "request body is empty"),
        ("not a review", b"[1,2,3]".to_vec(), 400, "BadRequest", "request body is not an AdmissionReview"),
        (
            "wrong apiVersion",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{},"name":"x"}}"#.to_vec(),
            400,
            "BadRequest",
            "unsupported AdmissionReview version \"admission.k8s.io/v1beta1\"",
        ),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "BadRequest", "AdmissionReview has no request"),
        (
            "oversize",
            vec![b' '; 65 * 1024],
            413,
            "RequestEntityTooLarge",
            "request body of 66560 bytes is larger than the 65536 bytes ecr-guard accepts (--max-body-bytes)",
        ),
    ];
    for (what, body, status, reason, message) in cases {
        let (got, body) = hook.post_bytes("/validate", body).await;
        assert_error_review((got, &body), status, reason, message, what);
    }
    let (got, body) = hook.post_bytes("/mutate", b"{}".to_vec()).await;
    assert_error_review(
        (got, &body),
        404,
        "NotFound",
        "no such path \"/mutate\": ecr-guard answers POST /validate",
        "wrong path",
    );
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let request = Request::builder()
            .method(method)
            .uri("/validate")
            .body(Body::empty())
            .unwrap();
        let (got, allow, body) = hook.send(request).await;
        assert_eq!(allow.as_deref(), Some("POST"), "{method}");
        assert_error_review(
            (got, &body),
            405,
            "MethodNotAllowed",
            &format!("method {method} is not allowed on /validate: use POST"),
            method,
        );
    }
    // Each refusal is counted once, by status and reason.
    for (series, count) in [
        ("code=\"400\",reason=\"not_a_review\"", 5.0),
        ("code=\"413\",reason=\"body_too_large\"", 1.0),
        ("code=\"404\",reason=\"no_such_path\"", 1.0),
        ("code=\"405\",reason=\"method_not_allowed\"", 5.0),
    ] {
        let series = format!("ecr_guard_webhook_refused_requests_total{{{series}}}");
        assert_eq!(hook.metric(&series), count, "{series}");
    }
    // Still serving afterwards.
    let r = hook
        .review(&workload_review("", "Pod", "pods", "nginx"))
        .await;
    assert_eq!(r["allowed"], true);
}

#[tokio::test]
async fn a_body_that_breaks_off_gets_the_json_400() {
    let hook = Hook::strict();
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"{\"apiVersion\": ")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the client went away",
        )),
    ];
    let body = Body::from_stream(futures::stream::iter(chunks));
    let (got, body) = hook.post_bytes("/validate", body).await;
    assert_error_review(
        (got, &body),
        400,
        "BadRequest",
        "failed to read the request body: ",
        "broken body",
    );
    assert!(
        body["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("the client went away"),
        "{body}"
    );
    assert_eq!(
        hook.metric(
            "ecr_guard_webhook_refused_requests_total{code=\"400\",reason=\"body_unreadable\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_body_over_the_limit_without_a_declared_length_gets_the_json_413() {
    let mut settings = Settings::new(STRICT);
    settings.max_body_bytes = 64 * 1024;
    let hook = Hook::start(settings);
    // A stream has no declared length: refused once the limit is passed.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..2)
        .map(|_| Ok(Bytes::from(vec![b' '; 40 * 1024])))
        .collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let (got, body) = hook.post_bytes("/validate", body).await;
    assert_error_review(
        (got, &body),
        413,
        "RequestEntityTooLarge",
        "request body is larger than the 65536 bytes ecr-guard accepts (--max-body-bytes)",
        "streamed oversize",
    );
}

/// Log lines written while a test runs, through a `tracing` subscriber of its own.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(String::from)
            .collect()
    }
}

/// Issue 14, fault 4: a refused request (a body over the limit among them) is
/// logged once, one warning with its status and message, at the levels a
/// deployment shows; verdicts are no refusals.
#[tokio::test]
async fn each_refused_request_is_logged_once_with_its_status_and_message() {
    use tracing::instrument::WithSubscriber;
    let mut settings = Settings::new(STRICT).namespace("demo:tier=regulated");
    settings.max_body_bytes = 64 * 1024;
    let hook = Hook::start(settings);
    let captured = Captured::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );

    let oversize = Body::from(vec![b' '; 65 * 1024]);
    let (got, _) = hook
        .post_bytes("/validate", oversize)
        .with_subscriber(dispatch.clone())
        .await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    let streamed: Vec<Result<Bytes, std::io::Error>> = (0..2)
        .map(|_| Ok(Bytes::from(vec![b' '; 40 * 1024])))
        .collect();
    let (got, _) = hook
        .post_bytes(
            "/validate",
            Body::from_stream(futures::stream::iter(streamed)),
        )
        .with_subscriber(dispatch.clone())
        .await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    let (got, _) = hook
        .post_bytes("/validate", b"[1]".to_vec())
        .with_subscriber(dispatch.clone())
        .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    let (got, _) = hook
        .post_bytes("/mutate", b"{}".to_vec())
        .with_subscriber(dispatch.clone())
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    // Verdicts, allowed and denied, are not refusals.
    for image in [good(), bad()] {
        hook.review(&workload_review("", "Pod", "pods", &image))
            .with_subscriber(dispatch.clone())
            .await;
    }

    let lines = captured.lines();
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("refused a request to the webhook port"))
        .collect();
    assert_eq!(refused.len(), 4, "{lines:#?}");
    for (line, status, message) in [
        (
            refused[0],
            413,
            "request body of 66560 bytes is larger than the 65536 bytes",
        ),
        (
            refused[1],
            413,
            "request body is larger than the 65536 bytes",
        ),
        (refused[2], 400, "request body is not an AdmissionReview"),
        (refused[3], 404, "no such path \"/mutate\""),
    ] {
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains(&format!("status={status}")), "{line}");
        assert!(line.contains(message), "{line}");
    }
    // Once: no other line repeats a refusal's message.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("larger than the 65536 bytes"))
            .count(),
        2,
        "{lines:#?}"
    );
}

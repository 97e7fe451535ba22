//! One AdmissionReview in, one out. A readable review always gets an answer with its
//! uid; only a body that is not a v1 AdmissionReview is refused (as [`BadReview`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, info, warn};

use super::object::{KeepRaw, ReviewedObject};
use super::request::{Request, ReviewView};
use crate::inventory::Inventory;
use crate::judging::Judge;
use crate::metrics::{AdmissionMetrics, KindLabels, RequestLabels, ViolationLabels};
use crate::policy::{ImageUse, Mode, Verdict, Violation};
use crate::workload::{self, WorkloadKind};

/// Audit annotation listing DryRun violations. The API server prefixes it with the
/// webhook's name (`validate.ecrguard.io/dry-run-violations`) and accepts only keys
/// without a `/` of their own.
pub const DRY_RUN_ANNOTATION: &str = "dry-run-violations";

const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body could not be read as an AdmissionReview.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReview {
    #[error("request body is empty; expected an AdmissionReview ({API_VERSION})")]
    Empty,
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("request body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("unsupported AdmissionReview version {0:?}; ecr-guard speaks {API_VERSION}")]
    WrongVersion(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Where violations of Warn and DryRun policies are reported besides logs and
/// metrics (Kubernetes Events in cluster mode). Never called for `dryRun` requests.
pub trait ViolationSink: Send + Sync {
    fn record(&self, context: &RequestContext, violation: &Violation);
}

/// What a violation record says about the request it came from.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub operation: String,
}

/// The answer and what it decided, for callers that log or count.
pub struct AdmissionOutcome {
    pub review: AdmissionReview<DynamicObject>,
    pub verdict: Option<Verdict>,
}

/// The admission service: inventory + judge + reporting.
pub struct Admission {
    inventory: Arc<dyn Inventory>,
    judge: Judge,
    metrics: AdmissionMetrics,
    sink: Option<Arc<dyn ViolationSink>>,
}

impl Admission {
    pub fn new(inventory: Arc<dyn Inventory>, judge: Judge, metrics: AdmissionMetrics) -> Self {
        Self {
            inventory,
            judge,
            metrics,
            sink: None,
        }
    }

    pub fn with_sink(mut self, sink: Arc<dyn ViolationSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn inventory(&self) -> &Arc<dyn Inventory> {
        &self.inventory
    }

    /// Decodes and answers one review body.
    pub async fn review_bytes(&self, body: &[u8]) -> Result<AdmissionOutcome, BadReview> {
        let request = decode(body)?;
        // At debug level only: a span at info level cost ~3% of the server's CPU
        // under load (its fields are formatted for every review), and the few
        // info/warn lines of a review carry the request's identity themselves.
        let span = debug_span!(
            "review",
            uid = %request.uid,
            namespace = request.namespace.as_deref().unwrap_or(""),
            kind = %request.kind.kind,
            operation = ?request.operation,
            decision = tracing::field::Empty,
        );
        Ok(self.review(request).instrument(span).await)
    }

    /// Answers a decoded request.
    pub async fn review(&self, mut request: Request<'_>) -> AdmissionOutcome {
        let started = Instant::now();
        // Static labels: the kind comes from the request, and any string sent to
        // the webhook must not become a metric series of its own.
        let kind = WorkloadKind::from_group_kind(&request.kind.group, &request.kind.kind);
        let kind_label = kind.map_or("other", WorkloadKind::as_str);
        let operation = operation_name(&request.operation);
        let (response, verdict, decision) = match self.image_uses(&mut request, kind) {
            Ok(None) => (allowed(&request.uid), None, "skipped"),
            Err(reason) => {
                // The API server validated the object before us, so an unreadable pod
                // spec is hostile or a bug: deny rather than admit it unjudged.
                warn!(
                    uid = %request.uid,
                    namespace = request.namespace.as_deref().unwrap_or(""),
                    kind = %request.kind.kind,
                    name = %object_name(&request),
                    %reason,
                    "cannot read the pod spec"
                );
                let response = allowed(&request.uid);
                let message = format!("ecr-guard cannot read the images of this object: {reason}");
                (deny(response, message, 400, "BadRequest"), None, "invalid")
            }
            Ok(Some(image_uses)) => {
                let namespace = request.namespace.as_deref().unwrap_or_default();
                let labels = self.inventory.namespace_labels(namespace);
                let verdict = self.decide(&labels, &image_uses).await;
                let response = self.respond(&request, &verdict);
                let decision = if verdict.is_denied() {
                    "denied"
                } else if verdict.in_mode(Mode::Warn).next().is_some() {
                    "warned"
                } else {
                    "allowed"
                };
                (response, Some(verdict), decision)
            }
        };
        tracing::Span::current().record("decision", decision);
        if let Some(verdict) = &verdict {
            self.report(&request, verdict);
        }
        if decision == "denied" {
            info!(
                uid = %request.uid,
                namespace = request.namespace.as_deref().unwrap_or(""),
                workload = %format!("{}/{}", request.kind.kind, object_name(&request)),
                operation = %operation,
                message = %response.result.message,
                "denied"
            );
        } else {
            debug!(decision, "answered");
        }
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                kind: kind_label,
                operation,
                decision,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&KindLabels { kind: kind_label })
            .observe(started.elapsed().as_secs_f64());
        AdmissionOutcome {
            review: response.into_review(),
            verdict,
        }
    }

    async fn decide(&self, labels: &BTreeMap<String, String>, image_uses: &[ImageUse]) -> Verdict {
        let policies = self.inventory.policies();
        self.judge.decide(&policies, labels, image_uses).await
    }

    /// The images this request asks us to judge; `None` when it is none of our
    /// business (`kind`: the judged workload kind, if it is one). Takes the
    /// objects' specs out of the request.
    fn image_uses(
        &self,
        request: &mut Request<'_>,
        kind: Option<WorkloadKind>,
    ) -> Result<Option<Vec<ImageUse>>, String> {
        if !matches!(request.operation, Operation::Create | Operation::Update) {
            return Ok(None);
        }
        let Some(kind) = kind else {
            return Ok(None);
        };
        // pods/ephemeralcontainers carries the whole Pod; other subresources
        // (status, binding, scale…) cannot change images.
        match request.sub_resource.as_deref() {
            None | Some("") => {}
            Some("ephemeralcontainers") if kind == WorkloadKind::Pod => {}
            Some(_) => return Ok(None),
        }
        let Some(object) = &mut request.object else {
            return Err("the request carries no object".to_string());
        };
        let new = std::mem::take(&mut object.spec)
            .image_uses(kind)
            .map_err(|e| e.to_string())?;
        match (&request.operation, &mut request.old_object) {
            (Operation::Update, Some(old)) => {
                // An old object we cannot read means we cannot tell what changed:
                // judge everything.
                let old = std::mem::take(&mut old.spec)
                    .image_uses(kind)
                    .unwrap_or_default();
                Ok(Some(workload::changed(new, &old)))
            }
            _ => Ok(Some(new)),
        }
    }

    fn respond(&self, request: &Request<'_>, verdict: &Verdict) -> AdmissionResponse {
        let mut response = allowed(&request.uid);
        if let Some(message) = verdict.denial_message() {
            response = deny(response, message, 403, "Forbidden");
        }
        let warnings = verdict.warnings();
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        let dry_run: Vec<String> = verdict
            .in_mode(Mode::DryRun)
            .map(Violation::message)
            .collect();
        if !dry_run.is_empty() {
            let value = serde_json::to_string(&dry_run).unwrap_or_default();
            response
                .audit_annotations
                .insert(DRY_RUN_ANNOTATION.to_string(), value);
        }
        response
    }

    /// Logs, counts and (outside dry-run requests) records Warn/DryRun violations.
    fn report(&self, request: &Request<'_>, verdict: &Verdict) {
        if verdict.violations.is_empty() {
            return;
        }
        let context = RequestContext {
            namespace: request.namespace.as_deref().unwrap_or_default().to_string(),
            kind: request.kind.kind.to_string(),
            name: object_name(request),
            operation: operation_name(&request.operation).to_string(),
        };
        for v in &verdict.violations {
            self.metrics
                .violations
                .get_or_create(&ViolationLabels {
                    policy: v.policy.clone(),
                    mode: v.mode.as_str(),
                    reason: v.reason.as_str(),
                })
                .inc();
            if v.mode == Mode::Enforce {
                continue;
            }
            info!(
                uid = %request.uid,
                namespace = %context.namespace,
                policy = %v.policy,
                mode = v.mode.as_str(),
                reason = v.reason.as_str(),
                workload = %format!("{}/{}", context.kind, context.name),
                violation = %v.message(),
                dry_run_request = request.dry_run,
                "policy violation admitted"
            );
            if let (Some(sink), false) = (&self.sink, request.dry_run) {
                sink.record(&context, v);
            }
        }
    }
}

/// An answer that admits the request `uid`.
fn allowed(uid: &str) -> AdmissionResponse {
    // kube's response is `#[non_exhaustive]` and built only from its own request
    // type or as `invalid`; this is the latter made the former's allowed answer
    // (the same apiVersion, kind, empty status).
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Status::default();
    response
}

fn deny(
    response: AdmissionResponse,
    message: String,
    code: u16,
    reason: &str,
) -> AdmissionResponse {
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, reason).with_code(code);
    response
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The object's name, or its generateName prefix for pods not yet named.
fn object_name(request: &Request<'_>) -> String {
    if !request.name.is_empty() {
        return request.name.to_string();
    }
    request
        .object
        .as_ref()
        .and_then(|o| o.metadata.generate_name.clone())
        .map(|g| format!("{g}*"))
        .unwrap_or_default()
}

/// Body → request, with an error that says what is wrong.
pub fn decode(body: &[u8]) -> Result<Request<'_>, BadReview> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadReview::Empty);
    }
    // A body that is not UTF-8 goes to kube's types, which read every string
    // the API server sends and so find the bad one; the view would skip most.
    let Ok(text) = std::str::from_utf8(body) else {
        return decode_with_kube(body);
    };
    match serde_json::from_str::<ReviewView>(text) {
        Ok(review) => {
            check_types(&review.kind, &review.api_version)?;
            review.request.ok_or(BadReview::NoRequest)
        }
        // kube's types and the specs kept as text answer as if the one-pass
        // read had never been tried: kube's error for a body that is not a
        // review, and for an unreadable pod spec the per-kind view's error.
        Err(_) => decode_with_kube(body),
    }
}

fn decode_with_kube(body: &[u8]) -> Result<Request<'static>, BadReview> {
    let review = read_json::<AdmissionReview<ReviewedObject<KeepRaw>>>(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            BadReview::NotJson(e.to_string())
        } else {
            BadReview::NotAReview(e.to_string())
        }
    })?;
    check_types(&review.types.kind, &review.types.api_version)?;
    let request: AdmissionRequest<_> = review.try_into().map_err(|_| BadReview::NoRequest)?;
    Ok(request.into())
}

fn check_types(kind: &str, api_version: &str) -> Result<(), BadReview> {
    if kind != "AdmissionReview" {
        return Err(BadReview::NotAReview(format!("kind is {kind:?}")));
    }
    if api_version != API_VERSION {
        return Err(BadReview::WrongVersion(api_version.to_string()));
    }
    Ok(())
}

/// serde_json checks UTF-8 string by string when it reads bytes, ~9% of a warm
/// review's instructions; checking the whole body first is far cheaper. A body
/// that is not UTF-8 is read as bytes, so that its error is serde_json's as
/// before.
fn read_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::ObjectSpec;
    use serde_json::{Value, json};

    fn pod_review(spec: Value) -> Vec<u8> {
        json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "userInfo": {},
                "object": {"metadata": {"name": "p"}, "spec": spec}
            }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_readable_spec_is_read_in_one_pass() {
        let body = pod_review(json!({"containers": [{"name": "a", "image": "x"}]}));
        let request = decode(&body).expect("decodes");
        let spec = request.object.expect("object").spec;
        assert!(matches!(spec, ObjectSpec::Read(_)), "{spec:?}");
    }

    #[test]
    fn a_spec_the_one_pass_view_cannot_read_is_decoded_again_as_text() {
        // Wrong for the view of every kind, and for the Pod view itself.
        for spec in [
            json!({"template": 5, "containers": [{"name": "a", "image": "x"}]}),
            json!({"containers": "nginx"}),
        ] {
            let body = pod_review(spec.clone());
            let request = decode(&body).expect("decodes");
            assert_eq!(request.uid, "u-1");
            assert_eq!(
                request.object.as_ref().unwrap().metadata.name.as_deref(),
                Some("p")
            );
            let spec = request.object.expect("object").spec;
            assert!(matches!(spec, ObjectSpec::Raw(_)), "{spec:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_a_review_is_refused_after_both_reads() {
        let mut review: Value = serde_json::from_slice(&pod_review(json!({}))).unwrap();
        review["request"]["uid"] = json!(5);
        let err = decode(review.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, BadReview::NotAReview(_)), "{err:?}");
        assert!(matches!(decode(b"{\"kind\": "), Err(BadReview::NotJson(_))));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_where_the_view_would_skip_it() {
        let mut review: Value = serde_json::from_slice(&pod_review(json!({}))).unwrap();
        review["request"]["userInfo"]["username"] = json!("mallory");
        let mut body = review.to_string().into_bytes();
        let at = body.windows(7).position(|w| w == b"mallory").unwrap() + 4;
        body.insert(at, 0xff);
        let err = decode(&body).unwrap_err();
        assert!(matches!(err, BadReview::NotJson(_)), "{err:?}");
    }

    #[test]
    fn request_fields_the_view_does_not_read_are_not_required() {
        let mut review: Value = serde_json::from_slice(&pod_review(json!({}))).unwrap();
        let request = review["request"].as_object_mut().unwrap();
        request.remove("userInfo");
        request.remove("resource");
        let body = review.to_string();
        let request = decode(body.as_bytes()).expect("decodes");
        assert_eq!(request.uid, "u-1");
    }

    #[test]
    fn a_body_that_is_not_utf8_gets_serde_jsons_error() {
        let mut body = pod_review(json!({"containers": [{"name": "a", "image": "x"}]}));
        let at = body.windows(3).position(|w| w == b"\"x\"").unwrap() + 1;
        body[at] = 0xff;
        let err = decode(&body).unwrap_err();
        let BadReview::NotJson(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("invalid unicode code point"), "{message}");
    }
}

/// The exact bytes of each kind of answer, pinned so that how the answer is
/// built can change without what the API server reads changing.
#[cfg(test)]
mod answer_bytes {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::Admission;
    use crate::inventory::{StaticInventory, compile_all};
    use crate::judging::{Judge, NoFacts};
    use crate::metrics::AdmissionMetrics;
    use crate::policy::{EcrEncryptionPolicy, Options};

    /// One policy per mode, each denying images from outside ECR in the
    /// namespace of the same name.
    fn admission() -> Admission {
        let policies: Vec<EcrEncryptionPolicy> = ["Enforce", "Warn", "DryRun"]
            .into_iter()
            .map(|mode| {
                serde_json::from_value(json!({
                    "apiVersion": "ecrguard.io/v1alpha1",
                    "kind": "EcrEncryptionPolicy",
                    "metadata": {"name": mode.to_lowercase()},
                    "spec": {
                        "mode": mode,
                        "namespaceSelector": {"matchLabels": {"tier": mode}},
                        "rules": {"allowedEncryptionTypes": ["KMS"]},
                        "nonEcrImages": "Deny"
                    }
                }))
                .unwrap()
            })
            .collect();
        let namespaces = ["Enforce", "Warn", "DryRun"]
            .into_iter()
            .map(|mode| {
                (
                    mode.to_lowercase(),
                    BTreeMap::from([("tier".to_string(), mode.to_string())]),
                )
            })
            .collect::<HashMap<_, _>>();
        Admission::new(
            Arc::new(StaticInventory::new(compile_all(&policies), namespaces)),
            Judge::new(
                Arc::new(NoFacts::failing("no AWS in this test")),
                Options::default(),
                Duration::from_secs(3),
            ),
            AdmissionMetrics::default(),
        )
    }

    fn pod_review(namespace: &str, spec: Value) -> Vec<u8> {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": "CREATE",
                "userInfo": {},
                "object": {"metadata": {"name": "p"}, "spec": spec}
            }
        })
        .to_string()
        .into_bytes()
    }

    fn answer(body: &[u8]) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(admission().review_bytes(body)).unwrap();
        serde_json::to_string(&outcome.review).unwrap()
    }

    fn nginx() -> Value {
        json!({"containers": [{"name": "web", "image": "nginx:1.27"}]})
    }

    #[test]
    fn every_kind_of_answer_has_the_same_bytes() {
        let cases = [
            ("allowed", pod_review("other", nginx())),
            ("denied", pod_review("enforce", nginx())),
            (
                "invalid",
                pod_review("other", json!({"containers": "nginx"})),
            ),
            ("warned", pod_review("warn", nginx())),
            ("dry-run", pod_review("dryrun", nginx())),
        ];
        let expected = [
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":true,"status":{}}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":false,"status":{"status":"Failure","code":403,"message":"container \"web\" image nginx:1.27: the image is not from a private ECR registry; policy enforce allows only images from private ECR repositories\nhint: copy the image into a private ECR repository (or a pull-through cache), or exempt it in the policy's excludeImages","reason":"Forbidden"}}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":false,"status":{"status":"Failure","code":400,"message":"ecr-guard cannot read the images of this object: failed to read the pod spec of Pod: invalid type: string \"nginx\", expected a sequence at line 1 column 21","reason":"BadRequest"}}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":true,"status":{},"warnings":["container \"web\": the image is not from a private ECR registry; policy warn allows only images from private ECR reposito…"]}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":true,"status":{},"auditAnnotations":{"dry-run-violations":"[\"container \\\"web\\\" image nginx:1.27: the image is not from a private ECR registry; policy dryrun allows only images from private ECR repositories\"]"}}}"#,
        ];
        for ((name, body), expected) in cases.into_iter().zip(expected) {
            assert_eq!(answer(&body), expected, "{name}");
        }
    }
}

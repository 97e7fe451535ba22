//! One AdmissionReview in, one out: decode → decide → respond → observe. A
//! readable review always gets an answer with its uid; only a body that is not a
//! v1 AdmissionReview is refused (as [`BadReview`]).

use std::sync::Arc;

use kube::core::admission::Operation;
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, info, warn};

use super::decode::{BadReview, Review, decode};
use super::respond::ReviewAnswer;
use crate::inventory::Inventory;
use crate::judging::Judge;
use crate::metrics::{AdmissionMetrics, KindLabels, RequestLabels, ViolationLabels};
use crate::policy::{ImageUse, Mode, Verdict};
use crate::workload::{self, WorkloadKind};

/// Where violations of Warn and DryRun policies are reported besides logs and
/// metrics (Kubernetes Events in cluster mode). Never called for `dryRun` requests.
pub trait ViolationSink: Send + Sync {
    fn record(&self, context: &RequestContext, violation: &crate::policy::Violation);
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
    /// The AdmissionReview to send back, as JSON.
    pub review: ReviewAnswer,
    pub verdict: Option<Verdict>,
}

/// The admission service: inventory + judge + reporting.
pub struct Admission {
    inventory: Arc<dyn Inventory>,
    judge: Judge,
    metrics: AdmissionMetrics,
    sink: Option<Arc<dyn ViolationSink>>,
}

/// What became of a review.
enum Decision {
    /// None of ecr-guard's business (kind, operation or subresource).
    Skipped,
    /// The object's images cannot be read: why.
    Invalid(String),
    Judged(Verdict),
}

impl Decision {
    /// The `decision` label of logs and metrics.
    fn label(&self) -> &'static str {
        match self {
            Self::Skipped => "skipped",
            Self::Invalid(_) => "invalid",
            Self::Judged(verdict) if verdict.is_denied() => "denied",
            Self::Judged(verdict) if verdict.in_mode(Mode::Warn).next().is_some() => "warned",
            Self::Judged(_) => "allowed",
        }
    }
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

    /// Decodes and answers one review body (an AdmissionReview, admission.k8s.io/v1).
    pub async fn review(&self, body: &[u8]) -> Result<AdmissionOutcome, BadReview> {
        let mut review = decode(body)?;
        // At debug level only: a span at info level cost ~3% of the server's CPU
        // under load (its fields are formatted for every review), and the few
        // info/warn lines of a review carry the request's identity themselves.
        let span = debug_span!(
            "review",
            uid = %review.uid,
            namespace = review.namespace.as_deref().unwrap_or(""),
            kind = %review.kind.kind,
            operation = ?review.operation,
            decision = tracing::field::Empty,
        );
        Ok(async move {
            let started = Instant::now();
            let decision = self.decide(&mut review).await;
            let answer = respond(&review, &decision);
            self.observe(&review, &decision, &answer, started);
            AdmissionOutcome {
                review: answer,
                verdict: match decision {
                    Decision::Judged(verdict) => Some(verdict),
                    _ => None,
                },
            }
        }
        .instrument(span)
        .await)
    }

    /// Judges the images the review asks about. Takes the objects' images out
    /// of the review.
    async fn decide(&self, review: &mut Review<'_>) -> Decision {
        let image_uses = match image_uses(review) {
            Ok(None) => return Decision::Skipped,
            Ok(Some(image_uses)) => image_uses,
            Err(reason) => {
                // The API server validated the object before us, so an unreadable pod
                // spec is hostile or a bug: deny rather than admit it unjudged.
                warn!(
                    uid = %review.uid,
                    namespace = review.namespace.as_deref().unwrap_or(""),
                    kind = %review.kind.kind,
                    name = %object_name(review),
                    %reason,
                    "cannot read the pod spec"
                );
                return Decision::Invalid(reason);
            }
        };
        let namespace = review.namespace.as_deref().unwrap_or_default();
        let labels = self.inventory.namespace_labels(namespace);
        let policies = self.inventory.policies();
        Decision::Judged(self.judge.decide(&policies, &labels, &image_uses).await)
    }

    /// Logs, counts and (outside dry-run requests) records what was decided.
    fn observe(
        &self,
        review: &Review<'_>,
        decision: &Decision,
        answer: &ReviewAnswer,
        started: Instant,
    ) {
        let label = decision.label();
        tracing::Span::current().record("decision", label);
        if let Decision::Judged(verdict) = decision {
            self.report(review, verdict);
        }
        let operation = operation_name(&review.operation);
        if label == "denied" {
            info!(
                uid = %review.uid,
                namespace = review.namespace.as_deref().unwrap_or(""),
                workload = %format!("{}/{}", review.kind.kind, object_name(review)),
                operation = %operation,
                message = %answer.message(),
                "denied"
            );
        } else {
            debug!(decision = label, "answered");
        }
        // Static labels: the kind comes from the request, and any string sent to
        // the webhook must not become a metric series of its own.
        let kind_label = review.workload.map_or("other", WorkloadKind::as_str);
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                kind: kind_label,
                operation,
                decision: label,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&KindLabels { kind: kind_label })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Logs, counts and (outside dry-run requests) records Warn/DryRun violations.
    fn report(&self, review: &Review<'_>, verdict: &Verdict) {
        if verdict.violations.is_empty() {
            return;
        }
        let context = RequestContext {
            namespace: review.namespace.as_deref().unwrap_or_default().to_string(),
            kind: review.kind.kind.to_string(),
            name: object_name(review),
            operation: operation_name(&review.operation).to_string(),
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
                uid = %review.uid,
                namespace = %context.namespace,
                policy = %v.policy,
                mode = v.mode.as_str(),
                reason = v.reason.as_str(),
                workload = %format!("{}/{}", context.kind, context.name),
                violation = %v.message(),
                dry_run_request = review.dry_run,
                "policy violation admitted"
            );
            if let (Some(sink), false) = (&self.sink, review.dry_run) {
                sink.record(&context, v);
            }
        }
    }
}

/// The images this review asks us to judge; `None` when it is none of our
/// business. Takes the objects' images out of the review.
fn image_uses(review: &mut Review<'_>) -> Result<Option<Vec<ImageUse>>, String> {
    if !matches!(review.operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    let Some(kind) = review.workload else {
        return Ok(None);
    };
    // pods/ephemeralcontainers carries the whole Pod; other subresources
    // (status, binding, scale…) cannot change images.
    match review.sub_resource.as_deref() {
        None | Some("") => {}
        Some("ephemeralcontainers") if kind == WorkloadKind::Pod => {}
        Some(_) => return Ok(None),
    }
    let Some(object) = &mut review.object else {
        return Err("the request carries no object".to_string());
    };
    let new = std::mem::replace(&mut object.images, Ok(Vec::new())).map_err(|e| e.to_string())?;
    match (&review.operation, &mut review.old_object) {
        (Operation::Update, Some(old)) => {
            // An old object we cannot read means we cannot tell what changed:
            // judge everything.
            let old = std::mem::replace(&mut old.images, Ok(Vec::new())).unwrap_or_default();
            Ok(Some(workload::changed(new, &old)))
        }
        _ => Ok(Some(new)),
    }
}

/// The answer to send for `decision`.
fn respond(review: &Review<'_>, decision: &Decision) -> ReviewAnswer {
    match decision {
        Decision::Skipped => ReviewAnswer::allowed(&review.uid),
        Decision::Invalid(reason) => ReviewAnswer::denied(
            &review.uid,
            format!("ecr-guard cannot read the images of this object: {reason}"),
            400,
            "BadRequest",
        ),
        Decision::Judged(verdict) => ReviewAnswer::for_verdict(&review.uid, verdict),
    }
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
fn object_name(review: &Review<'_>) -> String {
    if !review.name.is_empty() {
        return review.name.to_string();
    }
    review
        .object
        .as_ref()
        .and_then(|o| o.generate_name.as_deref())
        .map(|g| format!("{g}*"))
        .unwrap_or_default()
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
    use crate::inventory::compile_all;
    use crate::inventory::files::StaticInventory;
    use crate::judging::{FixedFacts, Judge};
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
                Arc::new(FixedFacts::failing("no AWS in this test")),
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
        let outcome = runtime.block_on(admission().review(body)).unwrap();
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

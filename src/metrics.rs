//! Admission metrics (prometheus-client). Labels stay low-cardinality: kind (the
//! judged workload kinds, `other` for the rest), operation, decision, policy,
//! mode, reason — never images, namespaces or anything else a request names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// A judged workload kind, or `other`.
    pub kind: &'static str,
    /// CREATE | UPDATE | DELETE | CONNECT
    pub operation: &'static str,
    /// allowed | denied | warned | invalid | skipped
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub policy: String,
    pub mode: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The HTTP status answered: 400, 404, 405 or 413.
    pub code: &'static str,
    /// body_too_large | body_unreadable | not_a_review | no_such_path | method_not_allowed
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug)]
pub struct AdmissionMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    pub violations: Family<ViolationLabels, Counter>,
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 1 ms … ~8 s: warm reviews take well under a millisecond, cold ones
                // an AWS round trip, and the budget tops out at the webhook timeout.
                Histogram::new([
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
            }),
            violations: Family::default(),
        }
    }
}

impl AdmissionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ecr_guard_admission_requests",
            "Admission reviews answered, by kind, operation and decision",
            self.requests.clone(),
        );
        registry.register(
            "ecr_guard_admission_duration_seconds",
            "Time to answer an admission review, by kind",
            self.duration.clone(),
        );
        registry.register(
            "ecr_guard_policy_violations",
            "Policy violations found, by policy, effective mode and reason",
            self.violations.clone(),
        );
    }
}

/// Requests of the webhook port answered with an HTTP error instead of an
/// AdmissionReview verdict (each also logged once, at warn).
#[derive(Clone, Debug, Default)]
pub struct WebhookMetrics {
    pub refused: Family<RefusalLabels, Counter>,
}

impl WebhookMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ecr_guard_webhook_refused_requests",
            "Requests to the webhook port answered with an HTTP error, by status code and reason",
            self.refused.clone(),
        );
    }
}

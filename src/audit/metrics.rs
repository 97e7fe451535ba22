//! Audit metrics. Labels stay low-cardinality: result, reason and key state only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// pass | fail | warn | error | skip
    pub result: &'static str,
    /// A `Reason::as_str`, or passed / not_selected / unreadable_pod.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyStateLabels {
    /// Disabled | PendingDeletion
    pub state: String,
}

#[derive(Clone, Debug)]
pub struct AuditMetrics {
    /// Distinct KMS keys behind running Pods' images that break pulls, by state.
    pub unusable_keys: Family<KeyStateLabels, Gauge>,
    /// Whole days (rounded up) until the soonest scheduled deletion of a KMS key
    /// behind running Pods' images, as of the last cycle's start. No labels: the
    /// family holds one unlabelled series, or none when no such key has a known
    /// deletion date (absent, so an alert on `< N` cannot fire on a stale value).
    pub key_deletion_days_left: Family<Vec<(String, String)>, Gauge>,
    /// Seconds per cycle (list, judge, publish).
    pub cycle_duration: Histogram,
    /// Cycles that could not list Pods or publish reports.
    pub cycle_errors: Counter,
    /// Pods judged by the last cycle.
    pub pods: Gauge,
    /// Results of the last cycle, by result and reason.
    pub results: Family<ResultLabels, Gauge>,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self {
            // 0.1 s … ~30 min: a cycle paces its Pods over part of the interval.
            cycle_duration: Histogram::new([
                0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
            cycle_errors: Counter::default(),
            pods: Gauge::default(),
            results: Family::default(),
            unusable_keys: Family::default(),
            key_deletion_days_left: Family::default(),
        }
    }
}

impl AuditMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ecr_guard_audit_cycle_duration_seconds",
            "Duration of one audit cycle",
            self.cycle_duration.clone(),
        );
        registry.register(
            "ecr_guard_audit_cycle_errors",
            "Audit cycles that failed to list Pods or publish reports",
            self.cycle_errors.clone(),
        );
        registry.register(
            "ecr_guard_audit_pods",
            "Pods judged by the last audit cycle",
            self.pods.clone(),
        );
        registry.register(
            "ecr_guard_audit_results",
            "Results of the last audit cycle, by result and reason",
            self.results.clone(),
        );
        registry.register(
            "ecr_guard_audit_unusable_keys",
            "KMS keys behind running Pods' images that are Disabled or PendingDeletion",
            self.unusable_keys.clone(),
        );
        registry.register(
            "ecr_guard_audit_key_deletion_days_left",
            "Days until the soonest scheduled deletion of a KMS key behind running Pods' images",
            self.key_deletion_days_left.clone(),
        );
    }
}

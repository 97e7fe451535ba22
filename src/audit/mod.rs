//! `ecr-guard audit`: re-judges the running Pods with the same policies,
//! namespace labels and evaluation as admission, and publishes the results as
//! PolicyReports (one per namespace).
//!
//! A cycle: one paginated list of running Pods ([`pods`]), each Pod judged
//! ([`crate::judging::Judge::decide_with_facts`]) into results ([`results`]),
//! the results kept under the size limit per namespace ([`aggregate`]), then
//! one list of our reports and a write of each changed one ([`writer`]).

pub mod aggregate;
pub mod crd;
pub mod events;
pub mod key_state;
pub mod local;
pub mod metrics;
pub mod pods;
pub mod report;
pub mod results;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::Client;
use tokio::time::Instant;
use tracing::{info, warn};

pub use events::KeyWarnings;
pub use metrics::AuditMetrics;

use self::pods::AuditedPod;
use self::report::{Outcome, ReportResult, Summary, Timestamp};
use self::writer::Published;
use crate::image::EcrRepository;
use crate::inventory::Inventory;
use crate::judging::Judge;
use crate::policy;

/// Longest pause between two Pods: pacing spreads lookups, it must not make a
/// cycle of a few Pods last long.
const MAX_PACE: Duration = Duration::from_secs(1);

/// What a cycle needs besides the cluster.
pub struct Auditor {
    pub client: Client,
    pub inventory: Arc<dyn Inventory>,
    pub judge: Judge,
    /// Namespaces never judged (the webhook's own and kube-system, as the chart excludes them).
    pub excluded_namespaces: Vec<String>,
    /// The part of a cycle Pods are spread over (zero: judged back to back).
    pub spread: Duration,
    pub metrics: AuditMetrics,
    /// Warning Events for keys that break pulls.
    pub events: KeyWarnings,
}

/// What one cycle found and did.
#[derive(Clone, Debug, Default)]
pub struct CycleSummary {
    pub pods: usize,
    pub namespaces: usize,
    pub results: Summary,
    /// Failing results, one line each: `namespace/pod policy: message`.
    pub failures: Vec<String>,
    /// What went wrong with the cycle itself (listing, publishing).
    pub errors: Vec<String>,
    pub published: Published,
    /// Set when the reports were printed, not written (`--pods-file`): how many.
    pub printed: Option<usize>,
}

impl CycleSummary {
    /// `--once`'s exit code: 2 when the cycle or a lookup failed, 1 when an
    /// enforced policy is violated, else 0.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() || self.results.error > 0 {
            2
        } else if self.results.fail > 0 {
            1
        } else {
            0
        }
    }
}

impl fmt::Display for CycleSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.results;
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        writeln!(
            f,
            "audited {} in {}: {} pass, {} fail, {} warn, {} error, {} skip",
            plural(self.pods, "Pod", "Pods"),
            plural(self.namespaces, "namespace", "namespaces"),
            r.pass,
            r.fail,
            r.warn,
            r.error,
            r.skip
        )?;
        for failure in &self.failures {
            writeln!(f, "  {failure}")?;
        }
        let p = &self.published;
        match self.printed {
            Some(n) => writeln!(
                f,
                "reports: {}, not written (local mode)",
                plural(n, "PolicyReport", "PolicyReports")
            )?,
            None => writeln!(
                f,
                "reports: {} written, {} unchanged, {} deleted",
                p.applied, p.unchanged, p.deleted
            )?,
        }
        for error in &self.errors {
            writeln!(f, "error: {error}")?;
        }
        Ok(())
    }
}

/// What judging a set of Pods found, before anything is published.
pub struct Judged {
    /// Filled but for `published`.
    pub summary: CycleSummary,
    /// The results by namespace, aggregated when over [`report::MAX_RESULTS`].
    pub desired: BTreeMap<String, Vec<ReportResult>>,
    /// Each key that breaks pulls, with a Pod using it.
    pub broken: Vec<(AuditedPod, key_state::BrokenKey)>,
}

/// Judges `pods` with the inventory's policies and namespace labels, spread
/// over `spread`, and records the audit metrics. `now` is the cycle's start:
/// key deletion days are counted from it. Shared by the cluster cycle and
/// `audit --once --pods-file`.
pub async fn judge_pods(
    inventory: &dyn Inventory,
    judge: &Judge,
    metrics: &AuditMetrics,
    spread: Duration,
    pods: Vec<AuditedPod>,
    now: SystemTime,
) -> Judged {
    let mut summary = CycleSummary {
        pods: pods.len(),
        ..CycleSummary::default()
    };
    metrics
        .pods
        .set(i64::try_from(pods.len()).unwrap_or(i64::MAX));
    let pace = if pods.is_empty() {
        Duration::ZERO
    } else {
        (spread / u32::try_from(pods.len()).unwrap_or(u32::MAX)).min(MAX_PACE)
    };
    let mut by_namespace: BTreeMap<String, Vec<ReportResult>> = BTreeMap::new();
    let mut broken = Vec::new();
    for (n, pod) in pods.into_iter().enumerate() {
        if n > 0 && !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let (results, keys) = judge_pod(inventory, judge, &pod, now).await;
        by_namespace
            .entry(pod.namespace.clone())
            .or_default()
            .extend(results);
        broken.extend(keys.into_iter().map(|key| (pod.clone(), key)));
    }
    summary.namespaces = by_namespace.len();
    let all: Vec<&ReportResult> = by_namespace.values().flatten().collect();
    summary.results = Summary::of(all.iter().copied());
    record(metrics, &all, broken.iter().map(|(_, key)| key));
    summary.failures = all
        .iter()
        .filter(|r| matches!(r.result, Outcome::Fail | Outcome::Error))
        .map(|r| describe(r))
        .collect();
    let desired = by_namespace
        .into_iter()
        .map(|(ns, results)| (ns, aggregate::within_limit(results)))
        .collect();
    Judged {
        summary,
        desired,
        broken,
    }
}

/// The Pod's results, and the keys behind its images that break pulls.
async fn judge_pod(
    inventory: &dyn Inventory,
    judge: &Judge,
    pod: &AuditedPod,
    now: SystemTime,
) -> (Vec<ReportResult>, Vec<key_state::BrokenKey>) {
    let policies = inventory.policies();
    let labels = inventory.namespace(&pod.namespace).labels;
    let applicable = policy::applicable(&policies, &labels);
    let uses = pod.image_uses.as_deref().unwrap_or_default();
    let (mut results, mut facts) = if applicable.is_empty() {
        (Vec::new(), HashMap::new())
    } else {
        let (verdict, facts) = judge.decide_with_facts(&policies, &labels, uses).await;
        let results = results::pod_results(pod, &applicable, &verdict, &facts);
        (results, facts)
    };
    // An unusable key breaks pulls whatever the policies say: the repositories
    // no policy needed are looked up too (from the cache, most often).
    let unjudged: BTreeSet<EcrRepository> = uses
        .iter()
        .filter_map(|u| u.ecr_repository())
        .filter(|repo| !facts.contains_key(*repo))
        .cloned()
        .collect();
    facts.extend(judge.look_up(unjudged).await);
    let broken = key_state::broken_keys(pod, &facts, now);
    results.extend(key_state::result(pod, &broken));
    (results, broken)
}

/// The last cycle's gauges: results by result and reason, unusable keys by
/// state, and the days left of the soonest scheduled deletion (absent when no
/// key behind a running Pod has a known deletion date).
fn record<'k>(
    metrics: &AuditMetrics,
    results: &[&ReportResult],
    broken: impl Iterator<Item = &'k key_state::BrokenKey> + Clone,
) {
    let keys: std::collections::BTreeSet<(&str, &str)> = broken
        .clone()
        .map(|key| (key.arn.as_str(), key.state.as_str()))
        .collect();
    metrics.unusable_keys.clear();
    for (_, state) in keys {
        metrics
            .unusable_keys
            .get_or_create(&metrics::KeyStateLabels {
                state: state.to_string(),
            })
            .inc();
    }
    metrics.key_deletion_days_left.clear();
    if let Some(days) = key_state::soonest_deletion(broken) {
        metrics
            .key_deletion_days_left
            .get_or_create(&Vec::new())
            .set(i64::try_from(days).unwrap_or(i64::MAX));
    }
    metrics.results.clear();
    for result in results {
        metrics
            .results
            .get_or_create(&metrics::ResultLabels {
                result: result.result.as_str(),
                reason: result.rule.clone().unwrap_or_default(),
            })
            .inc();
    }
}

impl Auditor {
    /// One cycle: list, judge, publish. Never fails: what went wrong is in the summary.
    pub async fn cycle(&self) -> CycleSummary {
        let started = Instant::now();
        let pods = match pods::list(self.client.clone(), &self.excluded_namespaces).await {
            Ok(pods) => pods,
            Err(e) => {
                self.metrics.cycle_errors.inc();
                return CycleSummary {
                    errors: vec![format!("failed to list Pods: {e}")],
                    ..CycleSummary::default()
                };
            }
        };
        let Judged {
            mut summary,
            desired,
            broken,
        } = judge_pods(
            self.inventory.as_ref(),
            &self.judge,
            &self.metrics,
            self.spread,
            pods,
            SystemTime::now(),
        )
        .await;
        match self.publish(desired).await {
            Ok(published) => summary.published = published,
            Err(e) => {
                summary
                    .errors
                    .push(format!("failed to publish PolicyReports: {e}"));
                self.metrics.cycle_errors.inc();
            }
        }
        let mut owners = std::collections::HashMap::new();
        for (pod, key) in broken {
            let workload = match &pod.owner {
                Some(owner) => self.events.workload(owner, &mut owners).await,
                None => pod.reference(),
            };
            self.events.warn(&workload, &key).await;
        }
        self.metrics
            .cycle_duration
            .observe(started.elapsed().as_secs_f64());
        summary
    }

    async fn publish(
        &self,
        desired: BTreeMap<String, Vec<ReportResult>>,
    ) -> Result<Published, kube::Error> {
        let previous = writer::existing(self.client.clone()).await?;
        writer::publish(self.client.clone(), &previous, desired, now()).await
    }

    /// Cycles forever, one every `interval` (measured start to start).
    pub async fn run(self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let summary = self.cycle().await;
            let r = summary.results;
            info!(
                pods = summary.pods,
                pass = r.pass,
                fail = r.fail,
                warn = r.warn,
                error = r.error,
                skip = r.skip,
                written = summary.published.applied,
                deleted = summary.published.deleted,
                "audit cycle done"
            );
            for error in &summary.errors {
                warn!(%error, "audit cycle failed");
            }
        }
    }
}

/// `namespace/pod policy: first line of the message`.
fn describe(result: &ReportResult) -> String {
    let pod = result
        .resources
        .first()
        .map(|r| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_default();
    let message = result
        .message
        .as_deref()
        .and_then(|m| m.lines().next())
        .unwrap_or("");
    format!(
        "{} {pod} {}: {message}",
        result.result.as_str(),
        result.policy
    )
}

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

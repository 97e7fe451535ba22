//! PolicyReport (`wgpolicyk8s.io/v1alpha2`) as the audit writes it: one per
//! namespace, named [`REPORT_NAME`], labelled [`MANAGED_BY`].
//!
//! Minimal serde types instead of the `kcr_wgpolicyk8s_io` crate: that crate
//! depends on kube 3 (we use kube 5), so it would compile a second kube and
//! k8s-openapi, and it is regenerated daily with no API stability. The fields
//! here are the v1alpha2 schema's, only those we write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
pub const KIND: &str = "PolicyReport";
/// Name of the one report per namespace ecr-guard owns.
pub const REPORT_NAME: &str = "ecr-guard";
/// Label on every report ecr-guard owns: how the audit finds (and deletes) them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ecr-guard");
/// Value of every result's `source`.
pub const SOURCE: &str = "ecr-guard";
/// Most results in one report: past it, Pods of one workload are aggregated,
/// and what is still over is split into parts named `ecr-guard-2`, `ecr-guard-3`, ….
/// Keeps a report far below etcd's 1.5 MiB object limit.
pub const MAX_RESULTS: usize = 1000;

/// The name of a namespace's `index`th report (0-based): `ecr-guard`, then
/// `ecr-guard-2`, `ecr-guard-3`, ….
pub fn part_name(index: usize) -> String {
    if index == 0 {
        REPORT_NAME.to_string()
    } else {
        format!("{REPORT_NAME}-{}", index + 1)
    }
}

/// Whether `name` is one of ours: [`REPORT_NAME`] or a later part's.
pub fn is_part_name(name: &str) -> bool {
    name == REPORT_NAME
        || name
            .strip_prefix(REPORT_NAME)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A namespace's reports: its results (sorted, timestamps kept from `previous`
/// as [`ReportBody::new`] does) cut into parts of at most [`MAX_RESULTS`], each
/// with its own summary, by name. One part for up to [`MAX_RESULTS`] results.
pub fn parts(
    results: Vec<ReportResult>,
    previous: Option<&ReportBody>,
    now: Timestamp,
) -> Vec<(String, ReportBody)> {
    let all = ReportBody::new(results, previous, now);
    all.results
        .chunks(MAX_RESULTS)
        .enumerate()
        .map(|(index, chunk)| {
            (
                part_name(index),
                ReportBody {
                    summary: Summary::of(chunk),
                    results: chunk.to_vec(),
                },
            )
        })
        .collect()
}

/// The outcome of one (Pod, policy) pair, as the schema spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Skip => "skip",
        }
    }

    /// How bad: the worst outcome of an aggregated result wins.
    pub fn rank(self) -> u8 {
        match self {
            Self::Skip => 0,
            Self::Pass => 1,
            Self::Warn => 2,
            Self::Error => 3,
            Self::Fail => 4,
        }
    }
}

/// `timestamp` of a result: when its outcome was first seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    #[serde(default)]
    pub nanos: i32,
}

/// One entry of `results`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    pub source: String,
    pub policy: String,
    /// The reason (`key_unusable`, …), or `passed`/`not_selected` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub result: Outcome,
    /// `high` for Enforce, `medium` for Warn, `low` for DryRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Pod(s), then the owning workload.
    #[serde(default)]
    pub resources: Vec<ObjectReference>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub timestamp: Timestamp,
}

impl ReportResult {
    /// Equal but for the timestamp: a result whose outcome did not change keeps
    /// its first timestamp, so an unchanged report is not rewritten.
    pub fn same_finding(&self, other: &Self) -> bool {
        let Self {
            source,
            policy,
            rule,
            result,
            severity,
            category,
            message,
            resources,
            properties,
            timestamp: _,
        } = self;
        *source == other.source
            && *policy == other.policy
            && *rule == other.rule
            && *result == other.result
            && *severity == other.severity
            && *category == other.category
            && *message == other.message
            && *resources == other.resources
            && *properties == other.properties
    }

    /// What identifies a result across cycles: policy and resources.
    fn identity(&self) -> Identity {
        (
            self.policy.clone(),
            self.resources
                .iter()
                .map(|r| (r.kind.clone(), r.name.clone()))
                .collect(),
        )
    }
}

/// A result's policy, then the kind and name of each of its resources.
type Identity = (String, Vec<(Option<String>, Option<String>)>);

/// `summary`: results counted by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub pass: u64,
    #[serde(default)]
    pub fail: u64,
    #[serde(default)]
    pub warn: u64,
    #[serde(default)]
    pub error: u64,
    #[serde(default)]
    pub skip: u64,
}

impl Summary {
    pub fn of<'r>(results: impl IntoIterator<Item = &'r ReportResult>) -> Self {
        let mut summary = Self::default();
        for result in results {
            *match result.result {
                Outcome::Pass => &mut summary.pass,
                Outcome::Fail => &mut summary.fail,
                Outcome::Warn => &mut summary.warn,
                Outcome::Error => &mut summary.error,
                Outcome::Skip => &mut summary.skip,
            } += 1;
        }
        summary
    }
}

/// The parts of a PolicyReport we read back and write (`summary`, `results`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportBody {
    #[serde(default)]
    pub summary: Summary,
    #[serde(default)]
    pub results: Vec<ReportResult>,
}

impl ReportBody {
    /// A body of these results (sorted, so that the order never makes a change),
    /// each keeping the timestamp it had in `previous` when its finding is the same,
    /// else taking `now`.
    pub fn new(
        mut results: Vec<ReportResult>,
        previous: Option<&ReportBody>,
        now: Timestamp,
    ) -> Self {
        results.sort_by_key(ReportResult::identity);
        // By identity: a report of 1,000 results is matched in one pass, not 1,000².
        let old: std::collections::HashMap<Identity, &ReportResult> = previous
            .map(|p| p.results.iter().map(|r| (r.identity(), r)).collect())
            .unwrap_or_default();
        for result in &mut results {
            let kept = old
                .get(&result.identity())
                .filter(|old| old.same_finding(result));
            result.timestamp = kept.map_or(now, |old| old.timestamp);
        }
        Self {
            summary: Summary::of(&results),
            results,
        }
    }

    /// The whole object for a server-side apply into `namespace` as `name`.
    pub fn to_object(&self, namespace: &str, name: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {MANAGED_BY.0: MANAGED_BY.1},
            },
            "summary": self.summary,
            "results": self.results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(policy: &str, pod: &str, outcome: Outcome) -> ReportResult {
        ReportResult {
            source: SOURCE.into(),
            policy: policy.into(),
            rule: Some("passed".into()),
            result: outcome,
            severity: Some("high".into()),
            category: Some("ECR encryption".into()),
            message: None,
            resources: vec![ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                namespace: Some("payments".into()),
                ..ObjectReference::default()
            }],
            properties: BTreeMap::new(),
            timestamp: Timestamp::default(),
        }
    }

    #[test]
    fn summary_counts_every_outcome() {
        let body = ReportBody::new(
            vec![
                result("a", "p1", Outcome::Pass),
                result("a", "p2", Outcome::Fail),
                result("b", "p1", Outcome::Warn),
                result("b", "p2", Outcome::Fail),
            ],
            None,
            Timestamp {
                seconds: 5,
                nanos: 0,
            },
        );
        assert_eq!(
            body.summary,
            Summary {
                pass: 1,
                fail: 2,
                warn: 1,
                error: 0,
                skip: 0
            }
        );
    }

    #[test]
    fn unchanged_results_keep_their_timestamp_and_changed_ones_take_now() {
        let first = ReportBody::new(
            vec![
                result("a", "p1", Outcome::Pass),
                result("a", "p2", Outcome::Pass),
            ],
            None,
            Timestamp {
                seconds: 1,
                nanos: 0,
            },
        );
        let again = ReportBody::new(
            vec![
                result("a", "p2", Outcome::Pass),
                result("a", "p1", Outcome::Pass),
            ],
            Some(&first),
            Timestamp {
                seconds: 2,
                nanos: 0,
            },
        );
        assert_eq!(again, first, "same findings in another order: no change");
        let changed = ReportBody::new(
            vec![
                result("a", "p1", Outcome::Pass),
                result("a", "p2", Outcome::Fail),
            ],
            Some(&first),
            Timestamp {
                seconds: 3,
                nanos: 0,
            },
        );
        assert_eq!(changed.results[0].timestamp.seconds, 1);
        assert_eq!(changed.results[1].timestamp.seconds, 3);
    }

    #[test]
    fn over_the_limit_results_are_split_into_named_parts() {
        let results: Vec<_> = (0..MAX_RESULTS * 2 + 1)
            .map(|n| result("a", &format!("p{n:05}"), Outcome::Pass))
            .collect();
        let parts = parts(results, None, Timestamp::default());
        let names: Vec<&str> = parts.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["ecr-guard", "ecr-guard-2", "ecr-guard-3"]);
        assert_eq!(parts[0].1.results.len(), MAX_RESULTS);
        assert_eq!(parts[0].1.summary.pass, MAX_RESULTS as u64);
        assert_eq!(parts[2].1.results.len(), 1);
        assert!(names.iter().all(|n| is_part_name(n)));
        assert!(
            !is_part_name("ecr-guard-x") && !is_part_name("ecr-guard-") && !is_part_name("other")
        );
    }

    #[test]
    fn the_object_has_the_schema_s_shape() {
        let body = ReportBody::new(
            vec![result("a", "p1", Outcome::Pass)],
            None,
            Timestamp {
                seconds: 7,
                nanos: 0,
            },
        );
        let object = body.to_object("payments", REPORT_NAME);
        assert_eq!(object["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "ecr-guard"
        );
        assert_eq!(
            object["summary"],
            serde_json::json!({"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0})
        );
        assert_eq!(object["results"][0]["result"], "pass");
        assert_eq!(
            object["results"][0]["timestamp"],
            serde_json::json!({"seconds": 7, "nanos": 0})
        );
        assert_eq!(object["results"][0]["resources"][0]["kind"], "Pod");
        let back: ReportBody = serde_json::from_value(object).unwrap();
        assert_eq!(back, body);
    }
}

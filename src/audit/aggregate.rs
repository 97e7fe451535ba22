//! Keeping a namespace's results few: past [`MAX_RESULTS`], the Pods of one
//! workload with the same finding share one result naming the workload. What is
//! still over the limit is split across several reports ([`super::report::parts`]).

use std::collections::BTreeMap;

use super::report::{MAX_RESULTS, ReportResult};

/// Policy, workload kind, workload name, outcome, rule: Pods sharing these share a result.
type GroupKey = (String, String, String, String, String);

/// `results` as they are when few enough; else one result per (workload,
/// policy, outcome, rule), its `resources` the workload alone and its
/// `properties` gaining `pods` (how many). Pods with no owner stay one by one.
pub fn within_limit(results: Vec<ReportResult>) -> Vec<ReportResult> {
    if results.len() <= MAX_RESULTS {
        return results;
    }
    let mut kept = Vec::new();
    let mut groups: BTreeMap<GroupKey, (ReportResult, u64)> = BTreeMap::new();
    for result in results {
        // resources = [Pod, owner?]
        let Some(owner) = result.resources.get(1).cloned() else {
            kept.push(result);
            continue;
        };
        let key = (
            result.policy.clone(),
            owner.kind.clone().unwrap_or_default(),
            owner.name.clone().unwrap_or_default(),
            result.result.as_str().to_string(),
            result.rule.clone().unwrap_or_default(),
        );
        groups
            .entry(key)
            .and_modify(|(_, n)| *n += 1)
            .or_insert_with(|| {
                let mut first = result.clone();
                first.resources = vec![owner];
                (first, 1)
            });
    }
    kept.extend(groups.into_values().map(|(mut result, pods)| {
        result.properties.insert("pods".into(), pods.to_string());
        result
    }));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::report::{Outcome, SOURCE, Timestamp};
    use k8s_openapi::api::core::v1::ObjectReference;

    fn result(pod: usize, owner: Option<&str>) -> ReportResult {
        let reference = |kind: &str, name: String| ObjectReference {
            kind: Some(kind.into()),
            name: Some(name),
            ..ObjectReference::default()
        };
        let mut resources = vec![reference("Pod", format!("pod-{pod}"))];
        resources.extend(owner.map(|o| reference("ReplicaSet", o.into())));
        ReportResult {
            source: SOURCE.into(),
            policy: "p".into(),
            rule: Some("passed".into()),
            result: Outcome::Pass,
            severity: None,
            category: None,
            message: None,
            resources,
            properties: Default::default(),
            timestamp: Timestamp::default(),
        }
    }

    #[test]
    fn small_reports_list_every_pod() {
        let results: Vec<_> = (0..MAX_RESULTS).map(|i| result(i, Some("web"))).collect();
        assert_eq!(within_limit(results.clone()), results);
    }

    #[test]
    fn big_reports_aggregate_pods_of_one_workload() {
        let mut results: Vec<_> = (0..1500).map(|i| result(i, Some("web"))).collect();
        results.push(result(9999, None));
        let kept = within_limit(results);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].resources[0].name.as_deref(), Some("pod-9999"));
        assert_eq!(kept[1].resources.len(), 1);
        assert_eq!(kept[1].resources[0].name.as_deref(), Some("web"));
        assert_eq!(kept[1].properties["pods"], "1500");
    }
}

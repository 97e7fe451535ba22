//! One Pod's verdict → its report results: one per (Pod, policy applying in its
//! namespace). Pure: no I/O, so the shape is tested here.

use std::collections::{BTreeMap, HashMap};

use super::pods::AuditedPod;
use super::report::{Outcome, ReportResult, SOURCE, Timestamp};
use crate::image::EcrRepository;
use crate::policy::facts::{KeyLookup, Lookup, RepositoryLookup};
use crate::policy::{ImageUse, Mode, Policy, Reason, Verdict, Violation};

/// `category` of every result.
pub const CATEGORY: &str = "ECR encryption";
/// `rule` of a passing result.
pub const RULE_PASSED: &str = "passed";
/// `rule` of a policy that applies in the namespace but selects none of the Pod's images.
pub const RULE_NOT_SELECTED: &str = "not_selected";
/// `rule` of a Pod whose spec could not be read.
pub const RULE_UNREADABLE: &str = "unreadable_pod";

/// `severity` by the policy's mode (after `--dry-run`).
pub fn severity(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "high",
        Mode::Warn => "medium",
        Mode::DryRun => "low",
    }
}

/// The outcome of one violation: a lookup that failed is an error (nothing
/// was learnt), otherwise fail for Enforce, warn for Warn and DryRun.
pub fn outcome(violation: &Violation) -> Outcome {
    if violation.reason == Reason::LookupFailed {
        return Outcome::Error;
    }
    match violation.mode {
        Mode::Enforce => Outcome::Fail,
        Mode::Warn | Mode::DryRun => Outcome::Warn,
    }
}

/// The results of one Pod. `applicable` are the policies applying in its
/// namespace; `verdict` and `facts` what the judge answered for its images.
pub fn pod_results(
    pod: &AuditedPod,
    applicable: &[&Policy],
    verdict: &Verdict,
    facts: &HashMap<EcrRepository, Lookup>,
) -> Vec<ReportResult> {
    let mut resources = vec![pod.reference()];
    resources.extend(pod.owner.clone());
    let image_uses = match &pod.image_uses {
        Ok(uses) => uses.as_slice(),
        Err(problem) => {
            return applicable
                .iter()
                .map(|policy| ReportResult {
                    rule: Some(RULE_UNREADABLE.into()),
                    result: Outcome::Error,
                    message: Some(format!("the Pod's spec could not be read: {problem}")),
                    ..base(policy, resources.clone())
                })
                .collect();
        }
    };
    applicable
        .iter()
        .map(|policy| {
            let violations: Vec<&Violation> = verdict
                .violations
                .iter()
                .filter(|v| v.policy == policy.name)
                .collect();
            let selected: Vec<&ImageUse> = image_uses
                .iter()
                .filter(|u| match &*u.image {
                    Ok(image) => policy.selects_image(&image.name),
                    Err(_) => true,
                })
                .collect();
            let properties = properties(&selected, facts);
            let Some(worst) = violations.iter().max_by_key(|v| outcome(v).rank()) else {
                let rule = if selected.is_empty() {
                    RULE_NOT_SELECTED
                } else {
                    RULE_PASSED
                };
                let result = if selected.is_empty() {
                    Outcome::Skip
                } else {
                    Outcome::Pass
                };
                return ReportResult {
                    rule: Some(rule.into()),
                    result,
                    properties,
                    ..base(policy, resources.clone())
                };
            };
            let message: Vec<String> = violations.iter().map(|v| v.message()).collect();
            ReportResult {
                rule: Some(worst.reason.as_str().into()),
                result: outcome(worst),
                severity: Some(severity(worst.mode).into()),
                message: Some(message.join("\n")),
                properties,
                ..base(policy, resources.clone())
            }
        })
        .collect()
}

fn base(
    policy: &Policy,
    resources: Vec<k8s_openapi::api::core::v1::ObjectReference>,
) -> ReportResult {
    ReportResult {
        source: SOURCE.into(),
        policy: policy.name.clone(),
        rule: None,
        result: Outcome::Pass,
        severity: Some(severity(policy.mode).into()),
        category: Some(CATEGORY.into()),
        message: None,
        resources,
        properties: BTreeMap::new(),
        timestamp: Timestamp::default(),
    }
}

/// `repository`, `encryptionType`, `kmsKey` and `keyState` of the selected
/// images' ECR repositories (comma-separated when there are several).
fn properties(
    selected: &[&ImageUse],
    facts: &HashMap<EcrRepository, Lookup>,
) -> BTreeMap<String, String> {
    let mut columns: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut seen = Vec::new();
    for repo in selected.iter().filter_map(|u| u.ecr_repository()) {
        if seen.contains(&repo) {
            continue;
        }
        seen.push(repo);
        columns
            .entry("repository")
            .or_default()
            .push(repo.to_string());
        let Some(Ok(RepositoryLookup::Found(found))) = facts.get(repo) else {
            continue;
        };
        columns
            .entry("encryptionType")
            .or_default()
            .push(found.encryption_type.to_string());
        match &found.kms_key {
            Some(KeyLookup::Known(key)) => {
                columns.entry("kmsKey").or_default().push(key.arn.clone());
                columns
                    .entry("keyState")
                    .or_default()
                    .push(key.state.to_string());
            }
            Some(KeyLookup::Unknown { arn, .. }) => {
                columns.entry("kmsKey").or_default().push(arn.clone());
                columns
                    .entry("keyState")
                    .or_default()
                    .push("unknown".into());
            }
            None => {}
        }
    }
    columns
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.join(", ")))
        .collect()
}

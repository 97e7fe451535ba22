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

/// `repository`, `account`, `region`, `encryptionType`, `kmsKey` and `keyState` of the selected
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
        columns
            .entry("account")
            .or_default()
            .push(repo.account.clone());
        columns
            .entry("region")
            .or_default()
            .push(repo.region.clone());
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::judging::{FixedFacts, Judge};
    use crate::policy::facts::{
        EncryptionType, KeyFacts, KeyManager, KeyState, RepositoryFacts, Rotation,
    };
    use crate::policy::{EcrEncryptionPolicySpec, Options, Slot};

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
    const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1";

    fn policy(name: &str, yaml: &str) -> Policy {
        let spec: EcrEncryptionPolicySpec = serde_saphyr::from_str(yaml).unwrap();
        Policy::compile(name, &spec)
    }

    fn pod(images: &[&str]) -> AuditedPod {
        AuditedPod {
            namespace: "payments".into(),
            name: "api-7d9f-abcde".into(),
            uid: Some("uid-1".into()),
            owner: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("ReplicaSet".into()),
                name: Some("api-7d9f".into()),
                namespace: Some("payments".into()),
                uid: Some("uid-rs".into()),
                ..Default::default()
            }),
            image_uses: Ok(images
                .iter()
                .enumerate()
                .map(|(n, i)| ImageUse::new(Slot::Container, format!("c{n}"), *i))
                .collect()),
        }
    }

    fn kms(state: KeyState) -> Lookup {
        Ok(RepositoryLookup::Found(RepositoryFacts {
            encryption_type: EncryptionType::Kms,
            kms_key: Some(KeyLookup::Known(KeyFacts {
                arn: KEY.into(),
                manager: KeyManager::Customer,
                state,
                rotation: Rotation::Enabled,
                deletion_date: None,
            })),
        }))
    }

    async fn results(policies: &[Policy], pod: &AuditedPod, lookup: Lookup) -> Vec<ReportResult> {
        let judge = Judge::new(
            Arc::new(FixedFacts::answering(lookup)),
            Options::default(),
            Duration::from_secs(1),
        );
        let labels = crate::inventory::name_only_labels(&pod.namespace);
        let applicable = crate::policy::applicable(policies, &labels);
        let uses = pod.image_uses.clone().unwrap();
        let (verdict, facts) = judge.decide_with_facts(policies, &labels, &uses).await;
        pod_results(pod, &applicable, &verdict, &facts)
    }

    #[tokio::test]
    async fn a_usable_customer_key_passes_with_the_repository_s_facts() {
        let policies = [policy("cmk", "rules: {requireCustomerManagedKey: true}")];
        let got = results(&policies, &pod(&[IMAGE]), kms(KeyState::Enabled)).await;
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(
            (r.result, r.rule.as_deref()),
            (Outcome::Pass, Some(RULE_PASSED))
        );
        assert_eq!(r.source, "ecr-guard");
        assert_eq!(r.severity.as_deref(), Some("high"));
        assert_eq!(r.category.as_deref(), Some(CATEGORY));
        assert_eq!(r.resources[0].kind.as_deref(), Some("Pod"));
        assert_eq!(r.resources[1].kind.as_deref(), Some("ReplicaSet"));
        assert_eq!(
            r.properties,
            BTreeMap::from([
                ("account".to_string(), "123456789012".to_string()),
                ("region".to_string(), "us-east-1".to_string()),
                ("encryptionType".to_string(), "KMS".to_string()),
                ("keyState".to_string(), "Enabled".to_string()),
                ("kmsKey".to_string(), KEY.to_string()),
                ("repository".to_string(), "payments/api".to_string()),
            ])
        );
    }

    #[tokio::test]
    async fn a_disabled_key_fails_under_enforce_and_warns_under_warn() {
        let policies = [
            policy("enforced", "rules: {requireUsableKey: true}"),
            policy("warned", "mode: Warn\nrules: {requireUsableKey: true}"),
        ];
        let got = results(&policies, &pod(&[IMAGE]), kms(KeyState::Disabled)).await;
        let by_policy: BTreeMap<&str, &ReportResult> =
            got.iter().map(|r| (r.policy.as_str(), r)).collect();
        let enforced = by_policy["enforced"];
        assert_eq!(enforced.result, Outcome::Fail);
        assert_eq!(enforced.rule.as_deref(), Some("key_unusable"));
        let message = enforced.message.as_deref().unwrap();
        assert!(message.contains("Disabled"), "{message}");
        assert_eq!(enforced.properties["keyState"], "Disabled");
        let warned = by_policy["warned"];
        assert_eq!(warned.result, Outcome::Warn);
        assert_eq!(warned.severity.as_deref(), Some("medium"));
    }

    #[tokio::test]
    async fn a_policy_selecting_none_of_the_images_is_skipped_and_a_failed_lookup_is_an_error() {
        let policies = [
            policy(
                "other-images",
                "images: ['*/other/*']\nrules: {requireUsableKey: true}",
            ),
            policy("all", "rules: {requireUsableKey: true}"),
        ];
        let got = results(
            &policies,
            &pod(&[IMAGE]),
            Err(crate::policy::facts::LookupFailure::Timeout),
        )
        .await;
        let by_policy: BTreeMap<&str, &ReportResult> =
            got.iter().map(|r| (r.policy.as_str(), r)).collect();
        assert_eq!(by_policy["other-images"].result, Outcome::Skip);
        assert_eq!(
            by_policy["other-images"].rule.as_deref(),
            Some(RULE_NOT_SELECTED)
        );
        assert_eq!(by_policy["all"].result, Outcome::Error);
        assert_eq!(by_policy["all"].rule.as_deref(), Some("lookup_failed"));
    }
}

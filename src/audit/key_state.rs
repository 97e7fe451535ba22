//! Early warning for keys that break pulls: a running Pod whose image's
//! repository is encrypted with a Disabled or PendingDeletion KMS key gets a
//! failing result whatever its policies' rules, since its next image pull
//! (a restart, a new node) will fail.
//!
//! Only keys of repositories some applicable policy needed facts for are seen.
//! The deletion date (DescribeKey's `DeletionDate`) is not among the facts yet,
//! so the message cannot say when.

use std::collections::{BTreeSet, HashMap};

use super::pods::AuditedPod;
use super::report::{Outcome, ReportResult, SOURCE, Timestamp};
use super::results::CATEGORY;
use crate::image::EcrRepository;
use crate::policy::facts::{KeyLookup, KeyState, Lookup, RepositoryLookup};

/// `policy` of a key-state result: not a user's policy, always on.
pub const KEY_STATE_POLICY: &str = "ecr-guard-kms-key-state";

/// A key that breaks pulls, as found in one Pod's facts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokenKey {
    pub arn: String,
    /// `Disabled` or `PendingDeletion`.
    pub state: String,
    pub repository: String,
}

/// The Disabled and PendingDeletion keys behind the Pod's images.
pub fn broken_keys(pod: &AuditedPod, facts: &HashMap<EcrRepository, Lookup>) -> Vec<BrokenKey> {
    let Ok(uses) = &pod.image_uses else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    for repo in uses.iter().filter_map(|u| u.ecr_repository()) {
        let Some(Ok(RepositoryLookup::Found(facts))) = facts.get(repo) else {
            continue;
        };
        let Some(KeyLookup::Known(key)) = &facts.kms_key else {
            continue;
        };
        if matches!(key.state, KeyState::Disabled | KeyState::PendingDeletion) {
            found.insert(BrokenKey {
                arn: key.arn.clone(),
                state: key.state.to_string(),
                repository: repo.to_string(),
            });
        }
    }
    found.into_iter().collect()
}

/// What to tell the user about one key.
pub fn message(key: &BrokenKey) -> String {
    if key.state == "PendingDeletion" {
        format!(
            "KMS key {} is scheduled for deletion: Pods using repository {} will fail to pull after that; \
             cancel with aws kms cancel-key-deletion --key-id {}",
            key.arn, key.repository, key.arn
        )
    } else {
        format!(
            "KMS key {} is disabled: Pods using repository {} fail to pull now; \
             enable it with aws kms enable-key --key-id {}",
            key.arn, key.repository, key.arn
        )
    }
}

/// One failing result for the Pod naming every broken key, or none.
pub fn result(pod: &AuditedPod, keys: &[BrokenKey]) -> Option<ReportResult> {
    let first = keys.first()?;
    let mut resources = vec![pod.reference()];
    resources.extend(pod.owner.clone());
    let messages: Vec<String> = keys.iter().map(message).collect();
    Some(ReportResult {
        source: SOURCE.into(),
        policy: KEY_STATE_POLICY.into(),
        rule: Some(if first.state == "PendingDeletion" {
            "key_pending_deletion".into()
        } else {
            "key_disabled".into()
        }),
        result: Outcome::Fail,
        severity: Some("critical".into()),
        category: Some(CATEGORY.into()),
        message: Some(messages.join("\n")),
        resources,
        properties: [
            ("kmsKey".to_string(), first.arn.clone()),
            ("keyState".to_string(), first.state.clone()),
            ("repository".to_string(), first.repository.clone()),
        ]
        .into(),
        timestamp: Timestamp::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::facts::{EncryptionType, KeyFacts, KeyManager, RepositoryFacts, Rotation};
    use crate::policy::{ImageUse, Slot};

    #[test]
    fn disabled_and_pending_deletion_keys_fail_and_say_how_to_recover() {
        let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1";
        let pod = AuditedPod {
            namespace: "payments".into(),
            name: "api".into(),
            uid: None,
            owner: None,
            image_uses: Ok(vec![ImageUse::new(Slot::Container, "api", image)]),
        };
        let repo = pod.image_uses.as_ref().unwrap()[0]
            .ecr_repository()
            .unwrap()
            .clone();
        let facts_with = |state| {
            HashMap::from([(
                repo.clone(),
                Ok(RepositoryLookup::Found(RepositoryFacts {
                    encryption_type: EncryptionType::Kms,
                    kms_key: Some(KeyLookup::Known(KeyFacts {
                        arn: "arn:aws:kms:us-east-1:123456789012:key/k".into(),
                        manager: KeyManager::Customer,
                        state,
                        rotation: Rotation::Enabled,
                    })),
                })),
            )])
        };
        assert!(broken_keys(&pod, &facts_with(KeyState::Enabled)).is_empty());
        assert!(result(&pod, &[]).is_none());

        let keys = broken_keys(&pod, &facts_with(KeyState::PendingDeletion));
        let r = result(&pod, &keys).unwrap();
        assert_eq!(r.result, Outcome::Fail);
        assert_eq!(r.rule.as_deref(), Some("key_pending_deletion"));
        let message = r.message.unwrap();
        assert!(message.contains("scheduled for deletion"), "{message}");
        assert!(
            message.contains(
                "aws kms cancel-key-deletion --key-id arn:aws:kms:us-east-1:123456789012:key/k"
            ),
            "{message}"
        );

        let keys = broken_keys(&pod, &facts_with(KeyState::Disabled));
        let r = result(&pod, &keys).unwrap();
        assert_eq!(r.rule.as_deref(), Some("key_disabled"));
        assert!(r.message.unwrap().contains("fail to pull now"));
    }
}

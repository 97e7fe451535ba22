//! Early warning for keys that break pulls: a running Pod whose image's
//! repository is encrypted with a Disabled or PendingDeletion KMS key gets a
//! failing result whatever its policies' rules, since its next image pull
//! (a restart, a new node) will fail.
//!
//! Only keys of repositories some applicable policy needed facts for are seen.
//! A PendingDeletion key's date is DescribeKey's `DeletionDate`; when KMS did
//! not report it the message says the date is unknown.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::pods::AuditedPod;
use super::report::{Outcome, ReportResult, SOURCE, Timestamp};
use super::results::CATEGORY;
use crate::image::EcrRepository;
use crate::policy::facts::{
    KeyArn, KeyLookup, KeyState, Lookup, RepositoryLookup, days_until, utc_day,
};

/// `policy` of a key-state result: not a user's policy, always on.
pub const KEY_STATE_POLICY: &str = "ecr-guard-kms-key-state";

/// A key that breaks pulls, as found in one Pod's facts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokenKey {
    pub arn: String,
    /// `Disabled` or `PendingDeletion`.
    pub state: String,
    pub repository: String,
    /// When KMS deletes it (PendingDeletion keys whose date KMS reported).
    pub deletion_date: Option<SystemTime>,
    /// Whole days from the cycle's start to `deletion_date`, rounded up.
    pub days_left: Option<u64>,
}

impl BrokenKey {
    fn region(&self) -> &str {
        KeyArn::parse(&self.arn).map_or("<the key's region>", |arn| arn.region())
    }
}

/// The Disabled and PendingDeletion keys behind the Pod's images; `now` is the
/// cycle's start, from which days left are counted.
pub fn broken_keys(
    pod: &AuditedPod,
    facts: &HashMap<EcrRepository, Lookup>,
    now: SystemTime,
) -> Vec<BrokenKey> {
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
            let deletion_date = match key.state {
                KeyState::PendingDeletion => key.deletion_date,
                _ => None,
            };
            found.insert(BrokenKey {
                arn: key.arn.clone(),
                state: key.state.to_string(),
                repository: repo.to_string(),
                deletion_date,
                days_left: deletion_date.map(|date| days_until(date, now)),
            });
        }
    }
    found.into_iter().collect()
}

/// What to tell the user about one key. KMS refuses every use of a key that is
/// pending deletion, so pulls already fail; after the date they cannot be
/// recovered. Cancelling leaves the key Disabled, hence the second command.
pub fn message(key: &BrokenKey) -> String {
    let (arn, region, repo) = (&key.arn, key.region(), &key.repository);
    if key.state == "PendingDeletion" {
        let when = match (key.deletion_date, key.days_left) {
            (Some(date), Some(days)) => format!(
                "on {} ({days} day{})",
                utc_day(date),
                if days == 1 { "" } else { "s" }
            ),
            _ => "on a date KMS did not report".to_string(),
        };
        format!(
            "KMS key {arn} is scheduled for deletion {when}: Pods using repository {repo} \
             will fail to pull after that (and fail now: KMS refuses a key pending deletion); \
             cancel with aws kms cancel-key-deletion --key-id {arn} --region {region}, \
             then aws kms enable-key --key-id {arn} --region {region}"
        )
    } else {
        format!(
            "KMS key {arn} is disabled: Pods using repository {repo} fail to pull now; \
             enable it with aws kms enable-key --key-id {arn} --region {region}"
        )
    }
}

/// `keyDeletionDate` of a result: RFC 3339 in UTC, or `unknown`.
pub fn deletion_property(key: &BrokenKey) -> String {
    key.deletion_date
        .and_then(crate::policy::facts::rfc3339_utc)
        .unwrap_or_else(|| "unknown".into())
}

/// One failing result for the Pod naming every broken key, or none.
pub fn result(pod: &AuditedPod, keys: &[BrokenKey]) -> Option<ReportResult> {
    let first = keys.first()?;
    let mut resources = vec![pod.reference()];
    resources.extend(pod.owner.clone());
    let messages: Vec<String> = keys.iter().map(message).collect();
    let mut properties: std::collections::BTreeMap<String, String> = [
        ("kmsKey".to_string(), first.arn.clone()),
        ("keyState".to_string(), first.state.clone()),
        ("repository".to_string(), first.repository.clone()),
    ]
    .into();
    if first.state == "PendingDeletion" {
        properties.insert("keyDeletionDate".into(), deletion_property(first));
    }
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
        properties,
        timestamp: Timestamp::default(),
    })
}

/// Days left of the soonest scheduled deletion among these keys (those with a
/// known date), for `ecr_guard_audit_key_deletion_days_left`.
pub fn soonest_deletion<'k>(keys: impl IntoIterator<Item = &'k BrokenKey>) -> Option<u64> {
    keys.into_iter().filter_map(|k| k.days_left).min()
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
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let facts_with = |state, deletion_date| {
            HashMap::from([(
                repo.clone(),
                Ok(RepositoryLookup::Found(RepositoryFacts {
                    encryption_type: EncryptionType::Kms,
                    kms_key: Some(KeyLookup::Known(KeyFacts {
                        arn: "arn:aws:kms:us-east-1:123456789012:key/k".into(),
                        manager: KeyManager::Customer,
                        state,
                        rotation: Rotation::Enabled,
                        deletion_date,
                    })),
                })),
            )])
        };
        assert!(broken_keys(&pod, &facts_with(KeyState::Enabled, None), now).is_empty());
        assert!(result(&pod, &[]).is_none());

        // 2026-11-18T11:06:40Z + 14 days and one hour: 15 days left, rounded up.
        let date = now + std::time::Duration::from_secs(14 * 86_400 + 3_600);
        let keys = broken_keys(
            &pod,
            &facts_with(KeyState::PendingDeletion, Some(date)),
            now,
        );
        assert_eq!(soonest_deletion(&keys), Some(15));
        let r = result(&pod, &keys).unwrap();
        assert_eq!(r.result, Outcome::Fail);
        assert_eq!(r.rule.as_deref(), Some("key_pending_deletion"));
        assert_eq!(r.properties["keyDeletionDate"], "2026-12-02T12:06:40Z");
        let arn = "arn:aws:kms:us-east-1:123456789012:key/k";
        assert_eq!(
            r.message.unwrap(),
            format!(
                "KMS key {arn} is scheduled for deletion on 2026-12-02 (15 days): Pods using \
                 repository payments/api will fail to pull after that (and fail now: KMS refuses \
                 a key pending deletion); cancel with aws kms cancel-key-deletion --key-id {arn} \
                 --region us-east-1, then aws kms enable-key --key-id {arn} --region us-east-1"
            )
        );

        // No date from KMS: unknown, never a default.
        let keys = broken_keys(&pod, &facts_with(KeyState::PendingDeletion, None), now);
        assert_eq!(soonest_deletion(&keys), None);
        let r = result(&pod, &keys).unwrap();
        assert_eq!(r.properties["keyDeletionDate"], "unknown");
        let message = r.message.unwrap();
        assert!(
            message.contains("scheduled for deletion on a date KMS did not report:"),
            "{message}"
        );

        let keys = broken_keys(&pod, &facts_with(KeyState::Disabled, Some(date)), now);
        let r = result(&pod, &keys).unwrap();
        assert_eq!(r.rule.as_deref(), Some("key_disabled"));
        assert!(!r.properties.contains_key("keyDeletionDate"));
        assert_eq!(
            r.message.unwrap(),
            format!(
                "KMS key {arn} is disabled: Pods using repository payments/api fail to pull now; \
                 enable it with aws kms enable-key --key-id {arn} --region us-east-1"
            )
        );
    }
}

//! The rule checks: the rules of one valid policy against the facts of one
//! existing repository and its key. Each check returns the rule it finds broken,
//! if any; nothing here knows which image use or mode it is judging for.

use std::collections::BTreeSet;

use super::compile::Checks;
use super::hint::{Hint, key_region};
use super::image_use::ImageUse;
use super::verdict::{Finding, Reason, Verdict};
use crate::image::EcrRepository;
use crate::policy::facts::{
    EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, Lookup, PlannedRepository,
    RepositoryFacts, RepositoryLookup, Rotation, Unlearnt,
};

/// One broken rule: why (a metric label), in words, and how to fix it.
pub(super) type Failure = (Reason, Finding, Option<Hint>);

/// Every rule of one policy against the facts of one existing repository.
pub(super) fn check_rules(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    facts: &RepositoryFacts,
) -> Vec<Failure> {
    let ty = facts.encryption_type;
    let mut out: Vec<Failure> = check_type(policy, c, repo, ty).into_iter().collect();
    match &facts.kms_key {
        None => out.extend(check_keyless(policy, c, repo, ty)),
        Some(key) => {
            out.extend(check_key_allowed(policy, c, repo, key.arn()));
            match key {
                KeyLookup::Known(key) => out.extend(check_key(policy, c, repo, key)),
                KeyLookup::Unknown { arn, reason, cause } => {
                    out.extend(check_unknown_key(policy, c, repo, arn, reason, *cause));
                }
            }
        }
    }
    out
}

/// `allowedEncryptionTypes`.
fn check_type(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    ty: EncryptionType,
) -> Option<Failure> {
    if c.allowed_types.contains(&ty) {
        return None;
    }
    let allowed: Vec<&str> = c.allowed_types.iter().map(|t| t.as_str()).collect();
    Some((
        Reason::EncryptionType,
        Finding {
            problem: format!("repository {} is encrypted with {ty}", repo.name),
            requirement: format!("policy {policy} allows only {}", allowed.join(", ")),
        },
        Some(recreate(c, repo)),
    ))
}

/// AES256: no key, so only the customer-managed-key rule can fail (the other key
/// rules make a policy invalid when AES256 is all it allows).
fn check_keyless(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    ty: EncryptionType,
) -> Option<Failure> {
    if !(c.require_customer_managed_key && c.allowed_types.contains(&ty)) {
        return None;
    }
    Some((
        Reason::CustomerManagedKeyRequired,
        Finding {
            problem: format!(
                "repository {} is encrypted with {ty} (no KMS key)",
                repo.name
            ),
            requirement: format!("policy {policy} requires a customer-managed KMS key"),
        },
        Some(recreate(c, repo)),
    ))
}

/// `allowedKmsKeys`: judged on the ARN ECR reported, whatever KMS said of the key.
fn check_key_allowed(policy: &str, c: &Checks, repo: &EcrRepository, arn: &str) -> Option<Failure> {
    if c.allowed_kms_keys.is_empty() || c.allowed_kms_keys.iter().any(|p| p.is_match(arn)) {
        return None;
    }
    let allowed: Vec<&str> = c.allowed_kms_keys.iter().map(|p| p.as_str()).collect();
    Some((
        Reason::KeyNotAllowed,
        Finding {
            problem: format!("repository {} is encrypted with KMS key {arn}", repo.name),
            requirement: format!(
                "policy {policy} allows only keys matching {}",
                allowed.join(", ")
            ),
        },
        Some(recreate(c, repo)),
    ))
}

/// A key KMS would not describe: a failure only for a policy that needs its facts.
fn check_unknown_key(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    arn: &str,
    reason: &str,
    cause: Unlearnt,
) -> Option<Failure> {
    let needs_facts =
        c.require_customer_managed_key || c.require_key_rotation || c.require_usable_key;
    if !needs_facts {
        return None;
    }
    Some((
        Reason::KeyUnknown,
        Finding {
            problem: format!(
                "repository {} is encrypted with KMS key {arn}, which ecr-guard cannot describe ({reason})",
                repo.name
            ),
            requirement: format!("policy {policy} requires {}", key_requirements(c)),
        },
        Some(Hint::for_unknown_key(cause, arn, repo)),
    ))
}

/// The rules about a key KMS described: who manages it, rotation, state.
fn check_key(policy: &str, c: &Checks, repo: &EcrRepository, key: &KeyFacts) -> Vec<Failure> {
    [
        check_manager(policy, c, repo, key),
        check_rotation(policy, c, key),
        check_usable(policy, c, repo, key),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `requireCustomerManagedKey`.
fn check_manager(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    key: &KeyFacts,
) -> Option<Failure> {
    if !(c.require_customer_managed_key && key.manager == KeyManager::Aws) {
        return None;
    }
    Some((
        Reason::CustomerManagedKeyRequired,
        Finding {
            problem: format!(
                "repository {} is encrypted with the AWS-managed key {}",
                repo.name, key.arn
            ),
            requirement: format!("policy {policy} requires a customer-managed KMS key"),
        },
        Some(recreate(c, repo)),
    ))
}

/// `requireKeyRotation`. Not learnt is not "disabled": its own reason, and the
/// hint is what would let ecr-guard learn it.
fn check_rotation(policy: &str, c: &Checks, key: &KeyFacts) -> Option<Failure> {
    if !c.require_key_rotation {
        return None;
    }
    let arn = &key.arn;
    let (reason, problem, hint) = match &key.rotation {
        Rotation::Enabled | Rotation::AwsManaged => return None,
        Rotation::Disabled => (
            Reason::RotationDisabled,
            format!("KMS key {arn} has automatic rotation disabled"),
            Hint::EnableRotation {
                arn: arn.clone(),
                region: key_region(arn),
            },
        ),
        Rotation::Unknown(why, cause) => (
            Reason::RotationUnknown,
            format!("the rotation status of KMS key {arn} is unknown ({why})"),
            Hint::for_unknown_rotation(*cause, arn, key_region(arn)),
        ),
    };
    let requirement = format!("policy {policy} requires key rotation");
    Some((
        reason,
        Finding {
            problem,
            requirement,
        },
        Some(hint),
    ))
}

/// `requireUsableKey`. An unreported state is not known to be unusable: its own
/// reason, and the hint asks KMS.
fn check_usable(policy: &str, c: &Checks, repo: &EcrRepository, key: &KeyFacts) -> Option<Failure> {
    if !c.require_usable_key || key.state.is_usable() {
        return None;
    }
    let arn = &key.arn;
    let (reason, problem, hint) = if key.state == KeyState::Unreported {
        (
            Reason::KeyStateUnknown,
            format!(
                "KMS did not report the state of key {arn} of repository {}",
                repo.name
            ),
            Hint::AskKms {
                command: "describe-key",
                arn: arn.clone(),
                region: key_region(arn),
            },
        )
    } else {
        // The deletion date when KMS reported one: how long until it is final.
        let when = match (&key.state, key.deletion_day()) {
            (KeyState::PendingDeletion, Some(day)) => format!(" (to be deleted on {day})"),
            _ => String::new(),
        };
        (
            Reason::KeyUnusable,
            format!(
                "KMS key {arn} of repository {} is {}{when}, so pulls from it fail",
                repo.name, key.state
            ),
            Hint::for_key_state(&key.state, arn, key_region(arn)),
        )
    };
    let requirement = format!("policy {policy} requires a usable (Enabled) key");
    Some((
        reason,
        Finding {
            problem,
            requirement,
        },
        Some(hint),
    ))
}

/// What a policy needs to know of a key, in words.
fn key_requirements(c: &Checks) -> String {
    let mut parts = Vec::new();
    if c.require_customer_managed_key {
        parts.push("a customer-managed key");
    }
    if c.require_key_rotation {
        parts.push("key rotation");
    }
    if c.require_usable_key {
        parts.push("a usable (Enabled) key");
    }
    parts.join(", ")
}

/// The fix for a repository encrypted the wrong way: a new one. Built only for a
/// failure: most repositories pass, and a hint clones the repository.
fn recreate(c: &Checks, repo: &EcrRepository) -> Hint {
    Hint::RecreateRepository {
        repo: repo.clone(),
        encryption_type: preferred_type(&c.allowed_types),
    }
}

/// The type a recreated repository should get: KMS when allowed (cheapest that
/// satisfies key rules), else whatever the policy allows first.
pub(super) fn preferred_type(allowed: &[EncryptionType]) -> EncryptionType {
    [
        EncryptionType::Kms,
        EncryptionType::KmsDsse,
        EncryptionType::Aes256,
    ]
    .into_iter()
    .find(|t| allowed.contains(t))
    .unwrap_or(EncryptionType::Kms)
}

/// A Disabled or PendingDeletion key breaks pulls whatever the policies say: worth a
/// note even where no rule asks for a usable key (and none already flagged it).
pub(super) fn notice_unusable_keys(
    image_uses: &[ImageUse],
    lookups: &[Option<&Lookup>],
    verdict: &mut Verdict,
) {
    let flagged: BTreeSet<&str> = verdict
        .violations
        .iter()
        .filter(|v| v.reason == Reason::KeyUnusable)
        .filter_map(|v| v.image_use.as_ref().map(|(d, _)| d.as_str()))
        .collect();
    for (image_use, lookup) in image_uses.iter().zip(lookups) {
        let (Some(repo), Some(key)) = (image_use.ecr_repository(), described_key(*lookup)) else {
            continue;
        };
        // An unreported state is not known to be unusable: no note.
        if matches!(key.state, KeyState::Enabled | KeyState::Unreported)
            || flagged.contains(image_use.describe().as_str())
        {
            continue;
        }
        let note = format!(
            "{}: KMS key of repository {} is {}; pulls will fail",
            image_use.short(),
            repo.name,
            key.state
        );
        if !verdict.notes.contains(&note) {
            verdict.notes.push(note);
        }
    }
}

/// The key KMS described for a repository that exists, if any.
fn described_key(lookup: Option<&Lookup>) -> Option<&KeyFacts> {
    match lookup {
        Some(Ok(RepositoryLookup::Found(facts)))
        | Some(Ok(RepositoryLookup::ToBeCreated(PlannedRepository { facts, .. }))) => {
            match &facts.kms_key {
                Some(KeyLookup::Known(key)) => Some(key),
                _ => None,
            }
        }
        _ => None,
    }
}

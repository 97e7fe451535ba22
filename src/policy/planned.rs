//! The rules against a repository that does not exist yet but that a
//! pull-through cache rule will create on the first pull: judged by the
//! encryption its repository creation template gives it. The rule checks are
//! [`check_rules`]'s; this module says what is judged and points the fixes at
//! the template instead of at the repository.

use super::compile::Checks;
use super::hint::Hint;
use super::rules::{Failure, check_rules, preferred_type};
use super::verdict::{Finding, Reason};
use crate::image::EcrRepository;
use crate::policy::facts::{EncryptionType, KeyLookup, PlannedRepository};

/// Every rule of one policy against the repository `plan` says will be created.
pub(super) fn check_planned(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    plan: &PlannedRepository,
) -> Vec<Failure> {
    let failures = check_rules(policy, c, repo, &plan.facts);
    if failures.is_empty() {
        return failures;
    }
    let context = describe(repo, plan);
    failures
        .into_iter()
        .map(|(reason, finding, hint)| {
            let problem = match reason {
                // The context already says the type and the key.
                Reason::EncryptionType
                | Reason::KeyNotAllowed
                | Reason::CustomerManagedKeyRequired => context.clone(),
                _ => format!("{context}; {}", finding.problem),
            };
            let finding = Finding {
                problem,
                requirement: finding.requirement,
            };
            (reason, finding, hint.map(|h| to_template(h, c, repo, plan)))
        })
        .collect()
}

/// `repository R does not exist yet; pull-through cache rule P will create it
/// with template T (KMS, customer-managed key arn:…)`.
pub(super) fn describe(repo: &EcrRepository, plan: &PlannedRepository) -> String {
    let template = match &plan.template {
        Some(prefix) => format!("template {prefix}"),
        None => "ECR's default settings (no repository creation template applies)".to_string(),
    };
    format!(
        "repository {} does not exist yet; pull-through cache rule {} will create it with {template} ({})",
        repo.name,
        plan.rule,
        encryption(plan)
    )
}

/// `AES256`, `KMS, customer-managed key arn:…`, `KMS_DSSE, key arn:…`.
fn encryption(plan: &PlannedRepository) -> String {
    let ty = plan.facts.encryption_type;
    match &plan.facts.kms_key {
        None => ty.to_string(),
        Some(KeyLookup::Known(key)) => format!("{ty}, {} key {}", key.manager, key.arn),
        Some(KeyLookup::Unknown { arn, .. }) => format!("{ty}, key {arn}"),
    }
}

/// A repository's encryption is fixed when it is created: for one that does not
/// exist yet, the fix is the template, not a new repository.
fn to_template(hint: Hint, c: &Checks, repo: &EcrRepository, plan: &PlannedRepository) -> Hint {
    let encryption_type = match hint {
        Hint::RecreateRepository { .. } => preferred_type(&c.allowed_types),
        Hint::KeyNotFound { .. } => match plan.facts.encryption_type {
            EncryptionType::Aes256 => preferred_type(&c.allowed_types),
            ty => ty,
        },
        other => return other,
    };
    Hint::UpdateTemplate {
        account: repo.account.clone(),
        region: repo.region.clone(),
        template: plan.template.clone(),
        rule: plan.rule.clone(),
        encryption_type,
    }
}

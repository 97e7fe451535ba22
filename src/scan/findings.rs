//! Common mistakes found whatever the policies say (report.rs's
//! [`FindingCode`]s), each with a sentence naming the key or template and,
//! where there is one, the command that fixes it.

use super::encryption::KeyAnswer;
use super::report::{Finding, FindingCode, PolicyVerdict};
use crate::policy::Reason;
use crate::policy::facts::{EncryptionType, KeyArn, KeyLookup, KeyManager, KeyState, Rotation};

/// The findings of a repository (or of the repository a pull-through cache
/// rule would create): its encryption type against the verdicts, then its key.
pub fn findings(
    encryption_type: EncryptionType,
    key: KeyAnswer<'_>,
    verdicts: &[PolicyVerdict],
) -> Vec<Finding> {
    let mut out = Vec::new();
    if encryption_type == EncryptionType::Aes256 {
        let requiring: Vec<&str> = verdicts
            .iter()
            .filter(|v| {
                v.reasons
                    .iter()
                    .any(|r| r == Reason::EncryptionType.as_str())
            })
            .map(|v| v.policy.as_str())
            .collect();
        if !requiring.is_empty() {
            out.push(finding(
                FindingCode::Aes256WhereKmsRequired,
                format!(
                    "encrypted with AES256 where {} KMS: ECR cannot change a repository's \
                     encryption, so create a KMS-encrypted repository and push the images there",
                    match requiring.as_slice() {
                        [one] => format!("policy {one} requires"),
                        many => format!("policies {} require", many.join(", ")),
                    }
                ),
            ));
        }
    }
    match key {
        KeyAnswer::None => {}
        KeyAnswer::Failed { arn } => out.push(finding(
            FindingCode::KeyNotDescribed,
            format!("key {arn} could not be looked up (see the errors)"),
        )),
        KeyAnswer::Described(KeyLookup::Unknown { arn, reason, .. }) => out.push(finding(
            FindingCode::KeyNotDescribed,
            format!("key {arn} could not be described: {reason}"),
        )),
        KeyAnswer::Described(KeyLookup::Known(facts)) => {
            let arn = &facts.arn;
            let region = KeyArn::parse(arn)
                .map(|a| format!(" --region {}", a.region()))
                .unwrap_or_default();
            match &facts.state {
                KeyState::Enabled | KeyState::Unreported => {}
                KeyState::Disabled => out.push(finding(
                    FindingCode::KeyDisabled,
                    format!(
                        "key {arn} is Disabled: pulls from this repository fail now; \
                         `aws kms enable-key --key-id {arn}{region}`"
                    ),
                )),
                KeyState::PendingDeletion => out.push(finding(
                    FindingCode::KeyPendingDeletion,
                    format!(
                        "key {arn} is scheduled for deletion on {}: pulls fail now (KMS refuses a \
                         key pending deletion) and the images cannot be decrypted after that; \
                         `aws kms cancel-key-deletion --key-id {arn}{region}`, then \
                         `aws kms enable-key --key-id {arn}{region}`",
                        facts
                            .deletion_day()
                            .unwrap_or_else(|| "a date KMS did not report".into())
                    ),
                )),
                KeyState::Other(state) => out.push(finding(
                    FindingCode::KeyUnusable,
                    format!("key {arn} is {state}: it cannot decrypt the images"),
                )),
            }
            match (&facts.manager, &facts.rotation) {
                (KeyManager::Customer, Rotation::Disabled) => out.push(finding(
                    FindingCode::KeyRotationDisabled,
                    format!(
                        "customer-managed key {arn} does not rotate its key material; \
                         `aws kms enable-key-rotation --key-id {arn}`"
                    ),
                )),
                (_, Rotation::Unknown(reason, _)) => out.push(finding(
                    FindingCode::KeyRotationUnknown,
                    format!("whether key {arn} rotates is not known: {reason}"),
                )),
                _ => {}
            }
        }
    }
    out
}

/// The finding of a pull-through cache rule whose template would create a
/// repository some judged policy refuses.
pub fn template_non_compliant(
    prefix: &str,
    template: Option<&str>,
    verdicts: &[PolicyVerdict],
) -> Option<Finding> {
    let refusing: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.allowed)
        .map(|v| v.policy.as_str())
        .collect();
    if refusing.is_empty() {
        return None;
    }
    let by = match template {
        Some(t) => format!("repository creation template {t}"),
        None => {
            "ECR's default settings (no repository creation template applies: AES256)".to_owned()
        }
    };
    let policies = match refusing.as_slice() {
        [one] => format!("policy {one} refuses"),
        many => format!("policies {} refuse", many.join(", ")),
    };
    Some(finding(
        FindingCode::PullThroughTemplateNonCompliant,
        format!(
            "repositories created under {prefix}/ by its pull-through cache rule get {by}, \
             which {policies}; add or fix a template applied for PULL_THROUGH_CACHE"
        ),
    ))
}

/// The finding of a repository whose encryption type this version does not
/// know: it is not judged.
pub fn encryption_type_unknown(reported: &str) -> Finding {
    finding(
        FindingCode::EncryptionTypeUnknown,
        format!(
            "{}: the repository is not judged (every policy's verdict is lookup_failed); \
             upgrade ecr-guard",
            super::collect::unknown_type(reported)
        ),
    )
}

fn finding(code: FindingCode, message: String) -> Finding {
    Finding { code, message }
}

//! How to fix a problem: one remediation per distinct problem, written as the
//! command or permission that would fix it.

use std::fmt;

use crate::image::EcrRepository;
use crate::policy::facts::{
    EncryptionType, KeyArn, KeyState, LookupFailure, PullThroughCause, PullThroughFailure, Unlearnt,
};

/// How to fix a problem. Equal hints are shown once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    RecreateRepository {
        repo: EcrRepository,
        encryption_type: EncryptionType,
    },
    /// `region` is the key's, from its ARN; `None` when the ARN does not say.
    EnableRotation {
        arn: String,
        region: Option<String>,
    },
    EnableKey {
        arn: String,
        region: Option<String>,
    },
    CancelKeyDeletion {
        arn: String,
        region: Option<String>,
    },
    KeyStateOther {
        arn: String,
        state: String,
    },
    /// DescribeKey was denied.
    GrantDescribeKey {
        arn: String,
    },
    /// GetKeyRotationStatus was denied.
    GrantRotationStatus {
        arn: String,
    },
    /// KMS has no such key.
    KeyNotFound {
        arn: String,
    },
    /// ECR did not name the key by ARN.
    KeyNotNamed {
        repo: EcrRepository,
    },
    /// KMS refused for another reason, or left the value out: the `aws kms`
    /// command that shows what it answers.
    AskKms {
        command: &'static str,
        arn: String,
        region: Option<String>,
    },
    /// AWS answered with something this version cannot read.
    UpgradeEcrGuard,
    PushImage {
        repo: EcrRepository,
    },
    MoveToEcr,
    /// DescribeRepositories was denied.
    GrantDescribeRepositories {
        repo: EcrRepository,
    },
    /// No AWS credentials were found, or AWS refused them.
    SetCredentials,
    /// STS refused to let ecr-guard assume `role`.
    AllowAssumeRole {
        role: String,
        external_id: bool,
    },
    /// A pull-through cache repository would be created encrypted the wrong
    /// way: change (or create) the repository creation template.
    UpdateTemplate {
        account: String,
        region: String,
        /// The template that applies; `None`: none does (ECR's default).
        template: Option<String>,
        /// The pull-through cache rule's prefix, for a new template.
        rule: String,
        encryption_type: EncryptionType,
    },
    /// `ecr:DescribePullThroughCacheRules` or
    /// `ecr:DescribeRepositoryCreationTemplates` was denied.
    GrantPullThrough {
        permission: &'static str,
        account: String,
        region: String,
    },
    /// Another account's creation templates need credentials of that account;
    /// `own` is ecr-guard's account when known.
    RoleForAccount {
        account: String,
        own: Option<String>,
    },
    RetryLookup,
    FixImageReference,
    FixPolicy {
        policy: String,
    },
}

impl Hint {
    /// What would let ecr-guard describe a key it could not.
    pub(super) fn for_unknown_key(cause: Unlearnt, arn: &str, repo: &EcrRepository) -> Hint {
        let arn = arn.to_owned();
        match cause {
            Unlearnt::Denied => Hint::GrantDescribeKey { arn },
            Unlearnt::NotFound => Hint::KeyNotFound { arn },
            Unlearnt::NotNamed => Hint::KeyNotNamed { repo: repo.clone() },
            Unlearnt::Rejected => Hint::AskKms {
                command: "describe-key",
                region: key_region(&arn),
                arn,
            },
            Unlearnt::Unreported => Hint::UpgradeEcrGuard,
        }
    }

    /// What would let ecr-guard learn whether a key rotates.
    pub(super) fn for_unknown_rotation(cause: Unlearnt, arn: &str, region: Option<String>) -> Hint {
        let arn = arn.to_owned();
        match cause {
            Unlearnt::Denied => Hint::GrantRotationStatus { arn },
            Unlearnt::NotFound => Hint::KeyNotFound { arn },
            Unlearnt::Unreported => Hint::UpgradeEcrGuard,
            Unlearnt::Rejected | Unlearnt::NotNamed => Hint::AskKms {
                command: "get-key-rotation-status",
                arn,
                region,
            },
        }
    }

    /// What would let a failed repository lookup succeed.
    pub(super) fn for_lookup_failure(failure: &LookupFailure, repo: &EcrRepository) -> Hint {
        match failure {
            LookupFailure::PullThrough(failure) => Hint::for_pull_through(failure, repo),
            LookupFailure::AccessDenied(_) => {
                Hint::GrantDescribeRepositories { repo: repo.clone() }
            }
            LookupFailure::Credentials(_) => Hint::SetCredentials,
            LookupFailure::AssumeRole {
                role,
                refused: true,
                external_id,
                ..
            } => Hint::AllowAssumeRole {
                role: role.clone(),
                external_id: *external_id,
            },
            LookupFailure::AssumeRole { refused: false, .. } => Hint::RetryLookup,
            LookupFailure::Unrecognised(_) => Hint::UpgradeEcrGuard,
            LookupFailure::Timeout | LookupFailure::Throttled | LookupFailure::Aws(_) => {
                Hint::RetryLookup
            }
        }
    }

    /// What would let ecr-guard read a registry's pull-through cache rules or
    /// creation templates.
    fn for_pull_through(failure: &PullThroughFailure, repo: &EcrRepository) -> Hint {
        match &failure.cause {
            PullThroughCause::Call(LookupFailure::AccessDenied(_)) => Hint::GrantPullThrough {
                permission: failure.permission,
                account: failure.account.clone(),
                region: failure.region.clone(),
            },
            PullThroughCause::Call(other) => Hint::for_lookup_failure(other, repo),
            PullThroughCause::OtherAccount { own } => Hint::RoleForAccount {
                account: failure.account.clone(),
                own: own.clone(),
            },
        }
    }

    pub(super) fn for_key_state(state: &KeyState, arn: &str, region: Option<String>) -> Hint {
        let arn = arn.to_string();
        match state {
            KeyState::Disabled => Hint::EnableKey { arn, region },
            KeyState::PendingDeletion => Hint::CancelKeyDeletion { arn, region },
            other => Hint::KeyStateOther {
                arn,
                state: other.to_string(),
            },
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hint::RecreateRepository {
                repo,
                encryption_type,
            } => recreate_repository(f, repo, *encryption_type),
            Hint::EnableRotation { arn, region } => {
                let region = region_of(region);
                write!(
                    f,
                    "turn on rotation: `aws kms enable-key-rotation --key-id {arn} --region {region}`"
                )
            }
            Hint::EnableKey { arn, region } => {
                let region = region_of(region);
                write!(
                    f,
                    "re-enable the key: `aws kms enable-key --key-id {arn} --region {region}`"
                )
            }
            Hint::CancelKeyDeletion { arn, region } => {
                cancel_key_deletion(f, arn, region_of(region))
            }
            Hint::KeyStateOther { arn, state } => {
                write!(
                    f,
                    "KMS key {arn} is {state}: it must be Enabled before images can be pulled"
                )
            }
            Hint::GrantDescribeKey { arn } => write!(f, "{GRANT_DESCRIBE_KEY} {arn}"),
            Hint::GrantRotationStatus { arn } => grant_rotation_status(f, arn),
            Hint::KeyNotFound { arn } => key_not_found(f, arn),
            Hint::KeyNotNamed { repo } => key_not_named(f, repo),
            Hint::AskKms {
                command,
                arn,
                region,
            } => ask_kms(f, command, arn, region_of(region)),
            Hint::UpgradeEcrGuard => f.write_str(UPGRADE_ECR_GUARD),
            Hint::GrantDescribeRepositories { repo } => grant_describe_repositories(f, repo),
            Hint::SetCredentials => f.write_str(SET_CREDENTIALS),
            Hint::AllowAssumeRole { role, external_id } => allow_assume_role(f, role, *external_id),
            Hint::UpdateTemplate {
                account,
                region,
                template,
                rule,
                encryption_type,
            } => update_template(
                f,
                account,
                region,
                template.as_deref(),
                rule,
                *encryption_type,
            ),
            Hint::GrantPullThrough {
                permission,
                account,
                region,
            } => write!(
                f,
                "allow ecr-guard's IAM role {permission} in account {account}, region {region} \
                 (for another account with a role to assume there: the reader role; it reads the \
                 pull-through cache rules and repository creation templates that decide how a \
                 pull-through cache repository is created)"
            ),
            Hint::RoleForAccount { account, own } => role_for_account(f, account, own.as_deref()),
            Hint::PushImage { repo } => push_image(f, repo),
            Hint::MoveToEcr => f.write_str(MOVE_TO_ECR),
            Hint::RetryLookup => f.write_str(RETRY_LOOKUP),
            Hint::FixImageReference => f.write_str("fix the image reference"),
            Hint::FixPolicy { policy } => {
                write!(
                    f,
                    "fix the policy (`kubectl get eep {policy} -o yaml` shows its Ready condition)"
                )
            }
        }
    }
}

// The longer hints, one function (or text) each, in the order of `Hint`.

fn recreate_repository(
    f: &mut fmt::Formatter<'_>,
    repo: &EcrRepository,
    encryption_type: EncryptionType,
) -> fmt::Result {
    let config = match encryption_type {
        EncryptionType::Aes256 => "encryptionType=AES256".to_string(),
        t => format!("encryptionType={t},kmsKey=<customer-managed key ARN>"),
    };
    write!(
        f,
        "a repository's encryption cannot be changed: recreate {} (account {}, region {}) \
         with `aws ecr create-repository --repository-name {} --encryption-configuration {config}` \
         and push the image again",
        repo.name, repo.account, repo.region, repo.name
    )
}

fn update_template(
    f: &mut fmt::Formatter<'_>,
    account: &str,
    region: &str,
    template: Option<&str>,
    rule: &str,
    encryption_type: EncryptionType,
) -> fmt::Result {
    let config = match encryption_type {
        EncryptionType::Aes256 => "encryptionType=AES256".to_string(),
        t => format!("encryptionType={t},kmsKey=<customer-managed key ARN>"),
    };
    match template {
        Some(prefix) => write!(
            f,
            "change the repository creation template that will create it (account {account}): \
             `aws ecr update-repository-creation-template --prefix {prefix} \
             --encryption-configuration {config} --region {region}`"
        ),
        None => write!(
            f,
            "give the pull-through cache rule a repository creation template (account {account}): \
             `aws ecr create-repository-creation-template --prefix {rule} --applied-for PULL_THROUGH_CACHE \
             --encryption-configuration {config} --region {region}`"
        ),
    }
}

fn role_for_account(f: &mut fmt::Formatter<'_>, account: &str, own: Option<&str>) -> fmt::Result {
    write!(
        f,
        "give ecr-guard a role in account {account} to assume (`--assume-role {account}=ROLE_ARN` \
         or `--assume-role-template`) that allows ecr:DescribePullThroughCacheRules and \
         ecr:DescribeRepositoryCreationTemplates"
    )?;
    if let Some(own) = own {
        write!(f, " (its own credentials are of account {own})")?;
    }
    f.write_str(", or push the image to the repository so that it exists")
}

fn cancel_key_deletion(f: &mut fmt::Formatter<'_>, arn: &str, region: &str) -> fmt::Result {
    write!(
        f,
        "stop the deletion: `aws kms cancel-key-deletion --key-id {arn} --region {region}`, \
         then `aws kms enable-key --key-id {arn} --region {region}`"
    )
}

/// Followed by the key's ARN.
const GRANT_DESCRIBE_KEY: &str =
    "allow ecr-guard's IAM role kms:DescribeKey and kms:GetKeyRotationStatus in the key policy of";

fn grant_rotation_status(f: &mut fmt::Formatter<'_>, arn: &str) -> fmt::Result {
    write!(
        f,
        "allow ecr-guard's IAM role kms:GetKeyRotationStatus in the key policy of {arn} \
         (it may describe the key but not read its rotation status)"
    )
}

fn key_not_found(f: &mut fmt::Formatter<'_>, arn: &str) -> fmt::Result {
    write!(
        f,
        "KMS has no key {arn}: if it was deleted, the repository's images can no longer be pulled; \
         recreate the repository with an existing key and push the images again"
    )
}

fn key_not_named(f: &mut fmt::Formatter<'_>, repo: &EcrRepository) -> fmt::Result {
    write!(
        f,
        "ECR did not name the repository's KMS key by ARN, and ecr-guard describes keys by ARN only; \
         `aws ecr describe-repositories --repository-names {} --registry-id {} --region {}` shows what ECR reports",
        repo.name, repo.account, repo.region
    )
}

fn ask_kms(f: &mut fmt::Formatter<'_>, command: &str, arn: &str, region: &str) -> fmt::Result {
    write!(
        f,
        "KMS did not tell (see the reason above): `aws kms {command} --key-id {arn} --region {region}` shows what it answers"
    )
}

const UPGRADE_ECR_GUARD: &str = "this version of ecr-guard does not know a value AWS answered with (see above): upgrade ecr-guard";

fn grant_describe_repositories(f: &mut fmt::Formatter<'_>, repo: &EcrRepository) -> fmt::Result {
    write!(
        f,
        "allow ecr-guard's IAM role ecr:DescribeRepositories on repository {} in account {}, region {} \
         (its IAM policy; for another account, also the repository policy, or --assume-role)",
        repo.name, repo.account, repo.region
    )
}

const SET_CREDENTIALS: &str = "give ecr-guard AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
     (shared config and credentials files), or IRSA (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN), \
     or EKS Pod Identity / container credentials, or an EC2 instance role (IMDS)";

fn push_image(f: &mut fmt::Formatter<'_>, repo: &EcrRepository) -> fmt::Result {
    write!(
        f,
        "push the image to {} in account {}, region {}, or fix the image reference \
         (no pull-through cache rule of the registry covers the name either)",
        repo.name, repo.account, repo.region
    )
}

const MOVE_TO_ECR: &str = "copy the image into a private ECR repository (or a pull-through cache), \
     or exempt it in the policy's excludeImages";

const RETRY_LOOKUP: &str = "retry; if it persists, check ecr-guard's AWS permissions \
     (ecr:DescribeRepositories, ecr:DescribePullThroughCacheRules, ecr:DescribeRepositoryCreationTemplates, \
     kms:DescribeKey, kms:GetKeyRotationStatus) and its logs";

/// `--region` for a hint: the key's region, or a placeholder that says what
/// to put there when the key's ARN did not tell.
fn allow_assume_role(f: &mut fmt::Formatter<'_>, role: &str, external_id: bool) -> fmt::Result {
    write!(
        f,
        "let ecr-guard assume {role}: the role must exist, its trust policy must allow \
         sts:AssumeRole to ecr-guard's own role as principal"
    )?;
    if external_id {
        f.write_str(" with the condition sts:ExternalId equal to --assume-role-external-id")?;
    }
    write!(
        f,
        ", and ecr-guard's own role needs sts:AssumeRole on {role} (README: central registry accounts)"
    )
}

fn region_of(region: &Option<String>) -> &str {
    region.as_deref().unwrap_or("<the key's region>")
}

/// The region of a key (or alias) ARN, for a hint's `--region`: KMS keys are
/// regional and the ARN is where KMS said the key lives. `None` when the ARN does
/// not say: never the repository's region by default.
pub(super) fn key_region(arn: &str) -> Option<String> {
    KeyArn::parse(arn).ok().map(|key| key.region().to_owned())
}

#[cfg(test)]
mod tests {
    use super::key_region;

    #[test]
    fn a_hint_region_comes_from_the_key_or_alias_arn_or_not_at_all() {
        assert_eq!(
            key_region("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/abc").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(
            key_region("arn:aws:kms:eu-west-1:111122223333:alias/aws/ecr").as_deref(),
            Some("eu-west-1")
        );
        for none in ["arn:aws:kms::123456789012:key/1111", "alias/aws/ecr", ""] {
            assert_eq!(key_region(none), None, "{none}");
        }
    }
}

//! The outcome of evaluation and how it reads. Denial text is UI: one line per
//! violation naming container, image, repository, what it has, what is required
//! and the policy; then one remediation hint per distinct problem.

use std::fmt;

use super::crd::Mode;
use crate::image::EcrRepository;
use crate::policy::facts::{EncryptionType, KeyArn, KeyArnKind, KeyState, LookupFailure, Unlearnt};

/// Longest warning we aim for; kubectl prints each on its own line.
const WARNING_WIDTH: usize = 120;

/// Why an image failed a policy. Low-cardinality: used as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    EncryptionType,
    CustomerManagedKeyRequired,
    KeyNotAllowed,
    /// GetKeyRotationStatus answered that rotation is off.
    RotationDisabled,
    /// Whether the key rotates was not learnt (GetKeyRotationStatus refused or
    /// unanswerable): never read as "disabled".
    RotationUnknown,
    KeyUnusable,
    /// KMS described the key without its state: never read as "unusable".
    KeyStateUnknown,
    /// The key could not be described at all.
    KeyUnknown,
    RepositoryNotFound,
    NonEcrImage,
    LookupFailed,
    InvalidImage,
    InvalidPolicy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EncryptionType => "encryption_type",
            Self::CustomerManagedKeyRequired => "customer_managed_key_required",
            Self::KeyNotAllowed => "key_not_allowed",
            Self::RotationDisabled => "rotation_disabled",
            Self::RotationUnknown => "rotation_unknown",
            Self::KeyUnusable => "key_unusable",
            Self::KeyStateUnknown => "key_state_unknown",
            Self::KeyUnknown => "key_unknown",
            Self::RepositoryNotFound => "repository_not_found",
            Self::NonEcrImage => "non_ecr_image",
            Self::LookupFailed => "lookup_failed",
            Self::InvalidImage => "invalid_image",
            Self::InvalidPolicy => "invalid_policy",
        }
    }
}

/// What is wrong and what the policy wants, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// e.g. `repository payments/api is encrypted with AES256`.
    pub problem: String,
    /// e.g. `policy regulated-require-cmk allows only KMS, KMS_DSSE`.
    pub requirement: String,
}

/// One image failing one policy (or one invalid policy, with no image use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub policy: String,
    /// After the global dry-run switch.
    pub mode: Mode,
    pub reason: Reason,
    /// (`container "api" image …`, `container "api"`), or `None` for an invalid policy.
    pub image_use: Option<(String, String)>,
    pub finding: Finding,
    pub hint: Option<Hint>,
}

impl Violation {
    /// The full line: `container "api" image IMG: PROBLEM; REQUIREMENT`.
    pub fn message(&self) -> String {
        match &self.image_use {
            Some((long, _)) => format!(
                "{long}: {}; {}",
                self.finding.problem, self.finding.requirement
            ),
            None => format!("{}; {}", self.finding.problem, self.finding.requirement),
        }
    }

    /// A line for a kubectl warning: without the image, key ARNs shortened to
    /// `key/ID`, cut to ~120 characters. The full text is in the log line.
    pub fn warning(&self) -> String {
        let text = match &self.image_use {
            Some((_, short)) => format!(
                "{short}: {}; {}",
                self.finding.problem, self.finding.requirement
            ),
            None => format!("{}; {}", self.finding.problem, self.finding.requirement),
        };
        truncate(shorten_key_arns(&text), WARNING_WIDTH)
    }
}

/// `arn:aws:kms:us-east-1:123456789012:key/1a2b3c4d-…` → `1a2b3c4d…`: enough to
/// recognise the key in a 120-character warning; the full ARN is in the log line.
/// Alias ARNs and other words are kept as they are.
fn shorten_key_arns(text: &str) -> String {
    // Written into one String: a String per word cost a warned review ~25
    // allocations per warning.
    let mut out = String::with_capacity(text.len());
    for (n, word) in text.split(' ').enumerate() {
        if n > 0 {
            out.push(' ');
        }
        match leading_key_arn(word) {
            Some((key, tail)) => {
                let id = key.id();
                match id.char_indices().nth(8) {
                    Some((cut, _)) => {
                        out.push_str(&id[..cut]);
                        out.push('…');
                    }
                    None => out.push_str(id),
                }
                out.push_str(tail);
            }
            None => out.push_str(word),
        }
    }
    out
}

/// A word that is a key ARN followed by punctuation (`…key/ID,` or `…key/ID;`):
/// the ARN and the punctuation. Key ids are letters, digits and `-`.
fn leading_key_arn(word: &str) -> Option<(KeyArn<'_>, &str)> {
    if !word.starts_with("arn:") {
        return None; // the common case, without parsing
    }
    let end = word.rfind(|c: char| c.is_ascii_alphanumeric() || c == '-')? + 1;
    let (arn, tail) = word.split_at(end);
    let key = KeyArn::parse(arn).ok()?;
    (key.kind() == KeyArnKind::Key).then_some((key, tail))
}

/// The region of a key (or alias) ARN, for a hint's `--region`; `None` when the
/// ARN does not say, so that the hint never guesses.
pub(super) fn key_region(arn: &str) -> Option<String> {
    KeyArn::parse(arn).ok().map(|key| key.region().to_owned())
}

/// At most `width` characters in all, the last one `…` when cut.
fn truncate(text: String, width: usize) -> String {
    if text.chars().count() <= width {
        return text;
    }
    crate::ellipsize(&text, width - 1)
}

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
            LookupFailure::AccessDenied(_) => {
                Hint::GrantDescribeRepositories { repo: repo.clone() }
            }
            LookupFailure::Credentials(_) => Hint::SetCredentials,
            LookupFailure::Unrecognised(_) => Hint::UpgradeEcrGuard,
            LookupFailure::Timeout | LookupFailure::Throttled | LookupFailure::Aws(_) => {
                Hint::RetryLookup
            }
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
            Hint::RecreateRepository { repo, encryption_type } => {
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
            Hint::EnableRotation { arn, region } => {
                let region = region_of(region);
                write!(f, "turn on rotation: `aws kms enable-key-rotation --key-id {arn} --region {region}`")
            }
            Hint::EnableKey { arn, region } => {
                let region = region_of(region);
                write!(f, "re-enable the key: `aws kms enable-key --key-id {arn} --region {region}`")
            }
            Hint::CancelKeyDeletion { arn, region } => {
                let region = region_of(region);
                write!(
                    f,
                    "stop the deletion: `aws kms cancel-key-deletion --key-id {arn} --region {region}`, \
                     then `aws kms enable-key --key-id {arn} --region {region}`"
                )
            }
            Hint::KeyStateOther { arn, state } => {
                write!(f, "KMS key {arn} is {state}: it must be Enabled before images can be pulled")
            }
            Hint::GrantDescribeKey { arn } => write!(
                f,
                "allow ecr-guard's IAM role kms:DescribeKey and kms:GetKeyRotationStatus in the key policy of {arn}"
            ),
            Hint::GrantRotationStatus { arn } => write!(
                f,
                "allow ecr-guard's IAM role kms:GetKeyRotationStatus in the key policy of {arn} \
                 (it may describe the key but not read its rotation status)"
            ),
            Hint::KeyNotFound { arn } => write!(
                f,
                "KMS has no key {arn}: if it was deleted, the repository's images can no longer be pulled; \
                 recreate the repository with an existing key and push the images again"
            ),
            Hint::KeyNotNamed { repo } => write!(
                f,
                "ECR did not name the repository's KMS key by ARN, and ecr-guard describes keys by ARN only; \
                 `aws ecr describe-repositories --repository-names {} --registry-id {} --region {}` shows what ECR reports",
                repo.name, repo.account, repo.region
            ),
            Hint::AskKms { command, arn, region } => write!(
                f,
                "KMS did not tell (see the reason above): `aws kms {command} --key-id {arn} --region {}` shows what it answers",
                region_of(region)
            ),
            Hint::UpgradeEcrGuard => f.write_str(
                "this version of ecr-guard does not know a value AWS answered with (see above): upgrade ecr-guard",
            ),
            Hint::GrantDescribeRepositories { repo } => write!(
                f,
                "allow ecr-guard's IAM role ecr:DescribeRepositories on repository {} in account {}, region {} \
                 (its IAM policy; for another account, also the repository policy, or --assume-role)",
                repo.name, repo.account, repo.region
            ),
            Hint::SetCredentials => f.write_str(
                "give ecr-guard AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
                 (shared config and credentials files), or IRSA (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN), \
                 or EKS Pod Identity / container credentials, or an EC2 instance role (IMDS)",
            ),
            Hint::PushImage { repo } => write!(
                f,
                "push the image to {} in account {}, region {}, or fix the image reference \
                 (a pull-through cache repository exists only after its first pull)",
                repo.name, repo.account, repo.region
            ),
            Hint::MoveToEcr => f.write_str(
                "copy the image into a private ECR repository (or a pull-through cache), \
                 or exempt it in the policy's excludeImages",
            ),
            Hint::RetryLookup => f.write_str(
                "retry; if it persists, check ecr-guard's AWS permissions \
                 (ecr:DescribeRepositories, kms:DescribeKey, kms:GetKeyRotationStatus) and its logs",
            ),
            Hint::FixImageReference => f.write_str("fix the image reference"),
            Hint::FixPolicy { policy } => {
                write!(f, "fix the policy (`kubectl get eep {policy} -o yaml` shows its Ready condition)")
            }
        }
    }
}

/// `--region` for a hint: the key's region, or a placeholder that says what
/// to put there when the key's ARN did not tell.
fn region_of(region: &Option<String>) -> &str {
    region.as_deref().unwrap_or("<the key's region>")
}

/// Everything evaluation found for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    /// Things worth telling the user that no policy denies (unusable keys, images
    /// admitted unverified by `onLookupFailure: Allow`). Sent as warnings.
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn in_mode(&self, mode: Mode) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.mode == mode)
    }

    pub fn is_denied(&self) -> bool {
        self.in_mode(Mode::Enforce).next().is_some()
    }

    /// The denial text for the user, or `None` when nothing enforced failed.
    pub fn denial_message(&self) -> Option<String> {
        let enforced: Vec<&Violation> = self.in_mode(Mode::Enforce).collect();
        if enforced.is_empty() {
            return None;
        }
        let mut lines: Vec<String> = enforced
            .iter()
            .take(MAX_LISTED)
            .map(|v| v.message())
            .collect();
        if enforced.len() > MAX_LISTED {
            lines.push(more(enforced.len() - MAX_LISTED));
        }
        lines.extend(hints(enforced.iter().copied()).map(|h| format!("hint: {h}")));
        Some(lines.join("\n"))
    }

    /// Warn violations and notes, each ≤120 characters where possible.
    pub fn warnings(&self) -> Vec<String> {
        let all = self.in_mode(Mode::Warn).map(|v| v.warning()).chain(
            self.notes
                .iter()
                .map(|n| truncate(shorten_key_arns(n), WARNING_WIDTH)),
        );
        let mut warnings: Vec<String> = all.collect();
        if warnings.len() > MAX_LISTED {
            let hidden = warnings.len() - MAX_LISTED;
            warnings.truncate(MAX_LISTED);
            warnings.push(more(hidden));
        }
        warnings
    }
}

/// How many violations a denial message or the warnings list one by one: a
/// workload with thousands of containers must not make a message of megabytes.
/// Metrics still count every violation.
const MAX_LISTED: usize = 10;

fn more(hidden: usize) -> String {
    format!("… and {hidden} more like these")
}

/// Distinct hints of these violations, in first-seen order.
pub fn hints<'v>(
    violations: impl Iterator<Item = &'v Violation>,
) -> impl Iterator<Item = &'v Hint> {
    let mut seen: Vec<&Hint> = Vec::new();
    for hint in violations.filter_map(|v| v.hint.as_ref()) {
        if !seen.contains(&hint) {
            seen.push(hint);
        }
    }
    seen.into_iter()
}

#[cfg(test)]
mod tests {
    use super::{key_region, shorten_key_arns};

    #[test]
    fn key_arns_are_shortened_to_their_first_eight_characters() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
        assert_eq!(
            shorten_key_arns(&format!("with KMS key {arn}; policy p, and {arn},  twice")),
            "with KMS key 1a2b3c4d…; policy p, and 1a2b3c4d…,  twice"
        );
        // An id of eight characters or fewer is kept whole; other ARNs as they are.
        assert_eq!(
            shorten_key_arns("arn:aws:kms:r:1:key/abc; arn:aws:kms:r:1:alias/x"),
            "abc; arn:aws:kms:r:1:alias/x"
        );
    }

    #[test]
    fn key_arns_of_other_partitions_are_shortened_and_malformed_ones_kept() {
        assert_eq!(
            shorten_key_arns("key arn:aws-cn:kms:cn-north-1:1:key/mrk-1234abcd5678, twice"),
            "key mrk-1234…, twice"
        );
        for kept in [
            "arn:aws:s3:r:1:key/1234567890",
            "arn:aws:kms::1:key/1234567890",
        ] {
            assert_eq!(shorten_key_arns(kept), kept);
        }
    }

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

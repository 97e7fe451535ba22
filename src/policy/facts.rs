//! What ECR and KMS told us about a repository: plain data, no I/O.
//!
//! These types are the contract between `registry` (which fetches and caches them)
//! and `policy` (which judges them). They carry only what the rules need.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an ECR repository is encrypted at rest. Fixed when the repository is created.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum EncryptionType {
    /// Amazon S3-managed keys (SSE-S3): no KMS key, no audit trail.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS: the AWS-managed key `aws/ecr`, or a customer-managed key.
    #[serde(rename = "KMS")]
    Kms,
    /// Dual-layer server-side encryption with a KMS key (DSSE-KMS).
    #[serde(rename = "KMS_DSSE")]
    KmsDsse,
}

impl EncryptionType {
    pub const ALL: [EncryptionType; 3] = [Self::Aes256, Self::Kms, Self::KmsDsse];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes256 => "AES256",
            Self::Kms => "KMS",
            Self::KmsDsse => "KMS_DSSE",
        }
    }

    /// Parses the value ECR returns; `None` for a value this version does not know.
    pub fn from_aws(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EncryptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of `DescribeRepositories` for one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryLookup {
    Found(RepositoryFacts),
    /// `RepositoryNotFoundException` (or an empty answer for that registry id).
    NotFound,
}

/// How one existing repository is encrypted, with the facts about its KMS key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryFacts {
    pub encryption_type: EncryptionType,
    /// `None` for AES256. For KMS/KMS_DSSE the key ECR reported, and what KMS said of it.
    pub kms_key: Option<KeyLookup>,
}

/// What KMS said about the key a repository is encrypted with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLookup {
    Known(KeyFacts),
    /// The key could not be described (access denied by its key policy, not
    /// found, not named by ARN, an answer this version cannot read): we know
    /// its ARN (or ECR's label for it) but nothing else. Never treated as a pass.
    Unknown {
        arn: String,
        /// Why, in words: what AWS said, for the user.
        reason: String,
        /// Why, as a kind: decides the remediation hint.
        cause: Unlearnt,
    },
}

/// Why a fact was not learnt although AWS answered. Each cause has its own
/// remediation, so that the hint says what would let ecr-guard learn it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unlearnt {
    /// `AccessDeniedException`: neither IAM nor the key policy lets ecr-guard's
    /// role make the call.
    Denied,
    /// `NotFoundException`: KMS has no such key (deleted, or never existed).
    NotFound,
    /// Another definite refusal (a 4xx answer such as
    /// `UnsupportedOperationException`), with AWS's code in the reason.
    Rejected,
    /// ECR did not name the key by a KMS key ARN, and ecr-guard asks KMS about
    /// key ARNs only (describing the alias `alias/aws/ecr` would create the key).
    NotNamed,
    /// AWS answered without the value, or with one this version of ecr-guard
    /// does not know.
    Unreported,
}

impl KeyLookup {
    pub fn arn(&self) -> &str {
        match self {
            Self::Known(k) => &k.arn,
            Self::Unknown { arn, .. } => arn,
        }
    }
}

/// `DescribeKey` + `GetKeyRotationStatus` for one key ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    pub arn: String,
    pub manager: KeyManager,
    pub state: KeyState,
    pub rotation: Rotation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyManager {
    Aws,
    Customer,
}

impl fmt::Display for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Aws => "AWS-managed",
            Self::Customer => "customer-managed",
        })
    }
}

/// KMS `KeyState`. Only `Enabled` keys can decrypt, so anything else breaks pulls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    /// Any other state KMS reports (PendingImport, Unavailable, Creating, …), verbatim.
    Other(String),
    /// KMS's answer had no `KeyState`: the state is not known, which is not the
    /// same as unusable.
    Unreported,
}

impl KeyState {
    pub fn from_aws(s: &str) -> Self {
        match s {
            "Enabled" => Self::Enabled,
            "Disabled" => Self::Disabled,
            "PendingDeletion" => Self::PendingDeletion,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Enabled)
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enabled => f.write_str("Enabled"),
            Self::Disabled => f.write_str("Disabled"),
            Self::PendingDeletion => f.write_str("PendingDeletion"),
            Self::Other(s) => f.write_str(s),
            Self::Unreported => f.write_str("of unreported state"),
        }
    }
}

/// Automatic rotation of the key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    Enabled,
    Disabled,
    /// AWS-managed keys rotate every year and cannot be asked.
    AwsManaged,
    /// `GetKeyRotationStatus` did not say (denied by the key policy, an
    /// unsupported key spec…): the reason in words, and its kind.
    Unknown(String, Unlearnt),
}

/// Why AWS could not tell us what we asked, in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupFailure {
    /// The lookup deadline passed (including SDK retries).
    Timeout,
    /// ECR or KMS throttled us and retries did not get through before the deadline.
    Throttled,
    /// The webhook's role may not call the API (`AccessDeniedException`).
    AccessDenied(String),
    /// No AWS credentials were found, or AWS did not accept them
    /// (`UnrecognizedClientException`, `ExpiredTokenException`, …): with the
    /// message that says which.
    Credentials(String),
    /// AWS answered with something this version of ecr-guard cannot read (an
    /// encryption type it does not know, DescribeKey without key metadata).
    Unrecognised(String),
    /// Any other AWS or network error, with its message.
    Aws(String),
}

impl LookupFailure {
    /// Short, stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Throttled => "throttled",
            Self::AccessDenied(_) => "access_denied",
            Self::Credentials(_) => "credentials",
            Self::Unrecognised(_) => "unrecognised_answer",
            Self::Aws(_) => "aws_error",
        }
    }
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("AWS did not answer before the lookup deadline"),
            Self::Throttled => f.write_str("AWS throttled the lookup"),
            Self::AccessDenied(m) => write!(f, "access denied: {m}"),
            Self::Credentials(m) => f.write_str(m),
            Self::Unrecognised(m) => write!(f, "unrecognised answer from AWS: {m}"),
            Self::Aws(m) => write!(f, "AWS error: {m}"),
        }
    }
}

/// The outcome of looking up one repository, as evaluation sees it.
pub type Lookup = Result<RepositoryLookup, LookupFailure>;

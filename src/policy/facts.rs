//! What ECR and KMS told us about a repository: plain data, no I/O.
//!
//! These types are the contract between `registry` (which fetches and caches them)
//! and `policy` (which judges them). They carry only what the rules need.

use std::fmt;
use std::time::SystemTime;

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
    /// `RepositoryNotFoundException` (or an empty answer for that registry id),
    /// and no pull-through cache rule of the registry covers the name.
    NotFound,
    /// The repository does not exist, but a pull-through cache rule covers its
    /// name: ECR creates it on the first pull, with the settings of a repository
    /// creation template. The facts are those of the repository it will create.
    ToBeCreated(PlannedRepository),
}

/// A repository a pull-through cache rule will create on the first pull, as its
/// repository creation template (or ECR's default) says it will be encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRepository {
    /// The rule's `ecrRepositoryPrefix` (e.g. `docker-hub`).
    pub rule: String,
    /// The rule's `upstreamRegistryUrl` (e.g. `registry-1.docker.io`).
    pub upstream: String,
    /// The `prefix` of the template that applies (`ROOT` included); `None` when
    /// none does and ECR's default (AES256) applies.
    pub template: Option<String>,
    /// The encryption the template gives, with its key described by KMS exactly
    /// as an existing repository's key is.
    pub facts: RepositoryFacts,
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
    /// DescribeKey's `KeyMetadata.DeletionDate`: when KMS deletes a
    /// `PendingDeletion` key. `None` when KMS did not report one (or one this
    /// version cannot read): for a `PendingDeletion` key that means the date is
    /// unknown, never "now" or any other default.
    pub deletion_date: Option<SystemTime>,
}

impl KeyFacts {
    /// The deletion date as a UTC calendar day (`2026-12-14`), when known.
    pub fn deletion_day(&self) -> Option<String> {
        self.deletion_date.map(utc_day)
    }
}

/// `2026-12-14`: the UTC calendar day of `time`.
pub fn utc_day(time: SystemTime) -> String {
    match k8s_openapi::jiff::Timestamp::try_from(time) {
        Ok(ts) => ts.strftime("%Y-%m-%d").to_string(),
        // Outside jiff's range (years -9999..=9999): no real KMS date is.
        Err(_) => "an unrepresentable date".to_string(),
    }
}

/// `2026-12-14T09:30:00Z`: `time` in RFC 3339, UTC, whole seconds; `None`
/// outside jiff's range (years -9999..=9999), which no real KMS date is.
pub fn rfc3339_utc(time: SystemTime) -> Option<String> {
    let ts = k8s_openapi::jiff::Timestamp::try_from(time).ok()?;
    Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Whole days from `now` until `date`, rounded up (a key deleted in 14 days and
/// one hour has 15 days left), 0 once the date has passed.
pub fn days_until(date: SystemTime, now: SystemTime) -> u64 {
    match date.duration_since(now) {
        Ok(left) => left.as_secs().div_ceil(86_400),
        Err(_) => 0,
    }
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
    /// The role configured for the repository's or key's account could not be
    /// assumed (`sts:AssumeRole` denied, the role missing, STS throttling…).
    AssumeRole {
        /// The role's ARN.
        role: String,
        /// What STS said, or why it could not be asked.
        reason: String,
        /// STS refused (denied, no such role): the trust policy or ecr-guard's
        /// own permissions must change; otherwise a retry may succeed.
        refused: bool,
        /// Whether an external id was sent (`--assume-role-external-id`).
        external_id: bool,
    },
    /// The repository does not exist, and what ECR would create on its first
    /// pull could not be learnt: the registry's pull-through cache rules or
    /// repository creation templates could not be read.
    PullThrough(Box<PullThroughFailure>),
}

/// Why the pull-through cache rules or creation templates of a registry could
/// not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullThroughFailure {
    /// The IAM action that failed: `ecr:DescribePullThroughCacheRules` or
    /// `ecr:DescribeRepositoryCreationTemplates`.
    pub permission: &'static str,
    /// The registry (account) and region whose rules or templates were needed.
    pub account: String,
    pub region: String,
    pub cause: PullThroughCause,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullThroughCause {
    /// The call failed (access denied, throttled, timeout, …).
    Call(LookupFailure),
    /// `DescribeRepositoryCreationTemplates` takes no registry id: it reads the
    /// caller's own registry only. The templates of another account need
    /// credentials of that account; `own` is the registry ECR said it read
    /// (ecr-guard's account), `None` when it did not say.
    OtherAccount { own: Option<String> },
}

impl fmt::Display for PullThroughFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            permission,
            account,
            region,
            cause,
        } = self;
        match cause {
            PullThroughCause::Call(failure) => write!(
                f,
                "{permission} in account {account}, region {region} failed: {failure}"
            ),
            PullThroughCause::OtherAccount { own: Some(own) } => write!(
                f,
                "the repository creation templates of account {account} cannot be read with \
                 ecr-guard's credentials of account {own} ({permission} reads the caller's own \
                 registry only): a role in account {account} is needed (`--assume-role`, \
                 `--assume-role-template`)"
            ),
            PullThroughCause::OtherAccount { own: None } => write!(
                f,
                "ECR did not say whose repository creation templates it answered {permission} with \
                 (it reads the caller's own registry only), so those of account {account} are unknown"
            ),
        }
    }
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
            Self::AssumeRole { .. } => "assume_role",
            Self::PullThrough(failure) => match &failure.cause {
                PullThroughCause::Call(failure) => failure.kind(),
                PullThroughCause::OtherAccount { .. } => "access_denied",
            },
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
            Self::AssumeRole { role, reason, .. } => {
                write!(f, "could not assume role {role}: {reason}")
            }
            Self::PullThrough(failure) => write!(
                f,
                "it does not exist yet, and what a pull-through cache rule would create could not be learnt: {failure}"
            ),
        }
    }
}

/// The outcome of looking up one repository, as evaluation sees it.
pub type Lookup = Result<RepositoryLookup, LookupFailure>;

/// A KMS key ARN or alias ARN, parsed once:
/// `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID` or
/// `arn:PARTITION:kms:REGION:ACCOUNT:alias/ALIAS_NAME`.
///
/// The format is the one of "Key identifiers (KeyId)" in the AWS KMS Developer
/// Guide (<https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id>).
/// Every field must be present and non-empty; any partition is accepted (`aws`,
/// `aws-cn`, `aws-us-gov`, …) and the id is taken as written (KMS is the
/// authority on which ids exist). Borrows the text it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyArn<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    kind: KeyArnKind,
    id: &'a str,
}

/// What a KMS ARN names: a key (`key/ID`) or an alias (`alias/NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyArnKind {
    Key,
    Alias,
}

impl KeyArnKind {
    /// The resource type as written in the ARN: `key` or `alias`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Alias => "alias",
        }
    }
}

/// Why a text is not a KMS key or alias ARN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyArnError {
    /// Fewer than six `:`-separated fields, or not starting with `arn`.
    NotAnArn,
    /// An ARN of another service than `kms`.
    NotKms,
    /// The named field (`partition`, `region`, `account`, `id`) is empty.
    Empty(&'static str),
    /// The resource is neither `key/…` nor `alias/…`.
    NotKeyOrAlias,
}

impl fmt::Display for KeyArnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnArn => f.write_str("not an ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/ID)"),
            Self::NotKms => f.write_str("not a KMS ARN"),
            Self::Empty(field) => write!(f, "the ARN's {field} is empty"),
            Self::NotKeyOrAlias => f.write_str("the ARN names neither key/ID nor alias/NAME"),
        }
    }
}

impl std::error::Error for KeyArnError {}

impl<'a> KeyArn<'a> {
    /// Parses a key or alias ARN; an error says which part is wrong.
    pub fn parse(text: &'a str) -> Result<Self, KeyArnError> {
        let mut parts = text.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(KeyArnError::NotAnArn);
        };
        if service != "kms" {
            return Err(KeyArnError::NotKms);
        }
        let (kind, id) = if let Some(id) = resource.strip_prefix("key/") {
            (KeyArnKind::Key, id)
        } else if let Some(name) = resource.strip_prefix("alias/") {
            (KeyArnKind::Alias, name)
        } else {
            return Err(KeyArnError::NotKeyOrAlias);
        };
        let fields = [
            ("partition", partition),
            ("region", region),
            ("account", account),
            ("id", id),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, value)| value.is_empty()) {
            return Err(KeyArnError::Empty(field));
        }
        Ok(Self {
            partition,
            region,
            account,
            kind,
            id,
        })
    }

    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub fn partition(&self) -> &'a str {
        self.partition
    }

    /// The region the key lives in: KMS keys are regional.
    pub fn region(&self) -> &'a str {
        self.region
    }

    /// The AWS account that owns the key (12 digits from AWS; not checked here).
    pub fn account(&self) -> &'a str {
        self.account
    }

    pub fn kind(&self) -> KeyArnKind {
        self.kind
    }

    /// The key id (`1234abcd-…`, `mrk-…`) or the alias name (`aws/ecr`), without
    /// its `key/` or `alias/` prefix.
    pub fn id(&self) -> &'a str {
        self.id
    }
}

impl fmt::Display for KeyArn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:{}/{}",
            self.partition,
            self.region,
            self.account,
            self.kind.as_str(),
            self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyArn, KeyArnError, KeyArnKind};

    #[test]
    fn a_key_arn_parses_into_its_fields_and_back() {
        let text = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let arn = KeyArn::parse(text).unwrap();
        assert_eq!(arn.partition(), "aws");
        assert_eq!(arn.region(), "us-east-2");
        assert_eq!(arn.account(), "111122223333");
        assert_eq!(arn.kind(), KeyArnKind::Key);
        assert_eq!(arn.id(), "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(arn.to_string(), text);
    }

    #[test]
    fn an_alias_arn_keeps_the_slashes_of_its_name() {
        let text = "arn:aws:kms:us-east-1:111122223333:alias/aws/ecr";
        let arn = KeyArn::parse(text).unwrap();
        assert_eq!(arn.kind(), KeyArnKind::Alias);
        assert_eq!(arn.id(), "aws/ecr");
        assert_eq!(arn.region(), "us-east-1");
        assert_eq!(arn.to_string(), text);
    }

    #[rstest::rstest]
    #[case(
        "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234",
        "aws-cn",
        "cn-north-1"
    )]
    #[case(
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/abc",
        "aws-us-gov",
        "us-gov-west-1"
    )]
    fn other_partitions_parse(#[case] text: &str, #[case] partition: &str, #[case] region: &str) {
        let arn = KeyArn::parse(text).unwrap();
        assert_eq!((arn.partition(), arn.region()), (partition, region));
        assert_eq!(arn.to_string(), text);
    }

    #[rstest::rstest]
    #[case("", KeyArnError::NotAnArn)]
    #[case("1234abcd-12ab-34cd-56ef-1234567890ab", KeyArnError::NotAnArn)]
    #[case("alias/aws/ecr", KeyArnError::NotAnArn)]
    #[case("arn:aws:kms:us-east-1:key/abc", KeyArnError::NotAnArn)]
    #[case("urn:aws:kms:us-east-1:111122223333:key/abc", KeyArnError::NotAnArn)]
    #[case("arn:aws:s3:us-east-1:111122223333:key/abc", KeyArnError::NotKms)]
    #[case("arn:aws:kms::111122223333:key/abc", KeyArnError::Empty("region"))]
    #[case(":aws:kms:us-east-1:111122223333:key/abc", KeyArnError::NotAnArn)]
    #[case(
        "arn::kms:us-east-1:111122223333:key/abc",
        KeyArnError::Empty("partition")
    )]
    #[case("arn:aws:kms:us-east-1::key/abc", KeyArnError::Empty("account"))]
    #[case("arn:aws:kms:us-east-1:111122223333:key/", KeyArnError::Empty("id"))]
    #[case("arn:aws:kms:us-east-1:111122223333:alias/", KeyArnError::Empty("id"))]
    #[case(
        "arn:aws:kms:us-east-1:111122223333:grant/abc",
        KeyArnError::NotKeyOrAlias
    )]
    fn malformed_arns_are_refused_with_what_is_wrong(
        #[case] text: &str,
        #[case] error: KeyArnError,
    ) {
        assert_eq!(KeyArn::parse(text), Err(error), "{text}");
        assert!(!error.to_string().is_empty());
    }
}

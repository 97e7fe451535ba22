//! What `ecr-guard scan` found: plain data, the shape of `--output json`.
//!
//! Every renderer (table, JSON, CSV, markdown, HTML) reads this and nothing
//! else, so the formats cannot disagree. Field names are camelCase as in the
//! JSON; a fact ecr-guard could not learn is `Unknown` (with the reason in a
//! finding), never a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole scan: `{"repositories":[…],"pullThroughRules":[…],"summary":{…},"cost":{…},"errors":[…]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    /// Sorted by account, region, name.
    pub repositories: Vec<ScannedRepository>,
    /// Pull-through cache rules of the scanned registries, judged as the
    /// repositories their creation templates would create (sorted by account,
    /// region, prefix). Empty when no registry has a rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_through_rules: Vec<ScannedPullThroughRule>,
    pub summary: Summary,
    pub cost: Cost,
    /// Registries (or parts of them) that could not be read, and repositories
    /// that could not be judged (an encryption type this version does not
    /// know: reported, every verdict `lookup_failed`); `scan` exits 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ScanError>,
}

/// One ECR registry: an account in a region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryId {
    /// 12-digit AWS account id.
    pub account: String,
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
}

/// How a repository (or a planned one) is encrypted, as ECR
/// (`DescribeRepositories` `encryptionConfiguration`) and KMS (`DescribeKey`,
/// `GetKeyRotationStatus`) report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// `AES256`, `KMS` or `KMS_DSSE`, as ECR spells it; a type this version
    /// does not know verbatim (its key fields `None`, and a finding
    /// `encryption-type-unknown`).
    pub encryption_type: String,
    /// The key's ARN as ECR reported it; `None` for AES256. For a KMS
    /// repository whose key ECR did not name, the AWS-managed `aws/ecr` label.
    pub kms_key: Option<String>,
    /// `None` for AES256.
    pub key_manager: Option<KeyManagerValue>,
    /// KMS `KeyState` verbatim (`Enabled`, `Disabled`, `PendingDeletion`, …),
    /// or `Unknown`; `None` for AES256.
    pub key_state: Option<String>,
    /// KMS `DeletionDate` of a key in `PendingDeletion`, RFC 3339 (UTC);
    /// `None` otherwise or when KMS did not say.
    pub key_deletion_date: Option<String>,
    /// `None` for AES256.
    pub key_rotation: Option<KeyRotationValue>,
}

/// KMS `KeyManager`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyManagerValue {
    /// `AWS`: an AWS-managed key (`aws/ecr`); no monthly charge.
    Aws,
    /// `CUSTOMER`: a customer-managed key; charged per month.
    Customer,
    /// The key could not be described.
    Unknown,
}

/// Automatic rotation of the key material (`GetKeyRotationStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRotationValue {
    Enabled,
    Disabled,
    /// AWS-managed keys rotate every year; KMS is not asked.
    AwsManaged,
    /// KMS did not say (denied, unsupported key spec, key not described).
    Unknown,
}

/// One repository of a scanned registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScannedRepository {
    pub account: String,
    pub region: String,
    /// Repository name, e.g. `team/app`.
    pub name: String,
    #[serde(flatten)]
    pub encryption: Encryption,
    /// Common mistakes found whatever the policies say (see [`FindingCode`]).
    pub findings: Vec<Finding>,
    /// One per policy judged, in policy name order.
    pub verdicts: Vec<PolicyVerdict>,
}

/// A pull-through cache rule and what the repositories it creates would be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScannedPullThroughRule {
    pub account: String,
    pub region: String,
    /// The rule's `ecrRepositoryPrefix`, e.g. `docker-hub`.
    pub prefix: String,
    /// The rule's `upstreamRegistryUrl`.
    pub upstream: String,
    /// The creation template that applies (`ROOT` included); `None` when ECR's
    /// default (AES256) applies.
    pub template: Option<String>,
    #[serde(flatten)]
    pub encryption: Encryption,
    pub findings: Vec<Finding>,
    pub verdicts: Vec<PolicyVerdict>,
}

/// A mistake worth fixing, whatever the policies say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub code: FindingCode,
    /// One sentence for a person, naming the key or template concerned and,
    /// where there is one, the command that fixes it.
    pub message: String,
}

/// The kinds of finding, serialised in kebab-case (`aes256-where-kms-required`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    /// AES256 where a judged policy allows only KMS encryption types.
    Aes256WhereKmsRequired,
    /// A customer-managed key with automatic rotation off.
    KeyRotationDisabled,
    /// A key in `Disabled` state: pulls fail now.
    KeyDisabled,
    /// A key in `PendingDeletion`: pulls fail after its deletion date.
    KeyPendingDeletion,
    /// A key in another state that cannot decrypt (e.g. `PendingImport`).
    KeyUnusable,
    /// `DescribeKey` was refused or failed (often a key of another account
    /// whose key policy does not let ecr-guard's role describe it).
    KeyNotDescribed,
    /// `GetKeyRotationStatus` did not say.
    KeyRotationUnknown,
    /// ECR reported an encryption type this version does not know: the
    /// repository is not judged (every verdict `lookup_failed`).
    EncryptionTypeUnknown,
    /// A pull-through cache prefix whose creation template would create a
    /// repository a judged policy refuses.
    PullThroughTemplateNonCompliant,
}

/// One policy's judgement of one repository, as for an image of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVerdict {
    pub policy: String,
    /// `Enforce`, `Warn` or `DryRun`.
    pub mode: String,
    /// Whether the policy's rules pass (whatever the mode).
    pub allowed: bool,
    /// The violation reasons, as the metric labels spell them
    /// (`encryption_type`, `rotation_disabled`, …; `policy::Reason::as_str`); empty when allowed.
    pub reasons: Vec<String>,
    /// The same violations in words, as a denial says them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}

/// Counts over the scanned repositories (pull-through rules not included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub repositories: usize,
    /// Always the three keys `AES256`, `KMS`, `KMS_DSSE` (0 when none), plus
    /// any type this version does not know, verbatim.
    pub by_encryption_type: BTreeMap<String, usize>,
    /// Repositories at least one judged policy does not allow (any mode).
    pub violations: usize,
    /// Repositories an `Enforce` policy does not allow: what makes `scan` exit 1.
    pub enforced_violations: usize,
    /// Repositories with at least one finding.
    pub with_findings: usize,
    /// Repositories per verdict, for the chart: `allowed` (every policy
    /// allows, or none applies), `denied` (an Enforce policy refuses), `warned`
    /// (only Warn policies refuse), `dryRun` (only DryRun policies refuse).
    pub by_verdict: BTreeMap<String, usize>,
    /// Registries scanned (account × region), including those that failed.
    pub registries: usize,
}

/// What the encryption costs per month, from AWS's published KMS prices
/// (<https://aws.amazon.com/kms/pricing/>); each price is a `scan` flag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// Distinct customer-managed keys used by the scanned repositories (each
    /// counted once, however many repositories share it).
    pub customer_managed_keys: usize,
    /// `customerManagedKeys` × the key price, USD per month.
    pub key_monthly_usd: f64,
    /// KMS requests per month × the request price, USD per month.
    pub requests_monthly_usd: f64,
    /// `keyMonthlyUsd` + `requestsMonthlyUsd`.
    pub monthly_usd: f64,
    /// What bringing every repository that fails a policy to compliance would
    /// add per month: one new customer-managed key per account and region that
    /// has such a repository, USD per month.
    pub to_comply_monthly_usd: f64,
    /// The inputs, so a reader sees what the figures assume.
    pub prices: Prices,
    /// Assumptions said in words (e.g. "KMS request volume not given: 0 requests a month").
    pub assumptions: Vec<String>,
}

/// The price inputs of [`Cost`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    /// `--kms-key-monthly-usd` (default 1.00).
    pub kms_key_monthly_usd: f64,
    /// `--kms-request-usd-per-10k` (default 0.03).
    pub kms_request_usd_per_10k: f64,
    /// `--kms-requests-per-month` (default 0).
    pub kms_requests_per_month: u64,
}

/// A registry, or one API of it, that could not be read; or one repository
/// that could not be judged (`api` `DescribeRepositories`, the message naming it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanError {
    pub account: String,
    pub region: String,
    /// What could not be read, e.g. `DescribeRepositories`.
    pub api: String,
    /// What AWS said, and what to grant or fix.
    pub message: String,
}

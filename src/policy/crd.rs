//! The `EcrEncryptionPolicy` custom resource. These types are the source of truth:
//! the CRD YAML in the chart and in manifests/ is generated from them (`ecr-guard crd`).
//!
//! `///` comments on fields are user documentation (`kubectl explain eep.spec`);
//! notes for maintainers use `//`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::facts::EncryptionType;

/// The desired policy: where it applies (`namespaceSelector`, `images`), what the
/// ECR repository's encryption must satisfy (`rules`), and what a failure does (`mode`).
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "ecrguard.io",
    version = "v1alpha1",
    kind = "EcrEncryptionPolicy",
    plural = "ecrencryptionpolicies",
    shortname = "eep",
    // The kind's description (`kubectl explain eep`), and the rustdoc of the generated
    // `EcrEncryptionPolicy` struct; without it kube-derive writes derive boilerplate.
    doc = "A cluster-wide policy on which container images may run, judged by how the \
           private Amazon ECR repository each image comes from is encrypted at rest \
           (AES256, KMS or KMS_DSSE; customer-managed, rotating, usable keys). The ecr-guard admission \
           webhook checks the images of every Pod and workload created or updated in the \
           namespaces the policy selects, and denies the request, warns, or records the \
           violation (spec.mode) when a repository fails the rules. Status tells whether the \
           policy is valid and in force.",
    status = "EcrEncryptionPolicyStatus",
    // Raw JSON columns: the structured form trips clippy's duplicated_attributes.
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EcrEncryptionPolicySpec {
    /// What a failure does. Enforce denies the request; Warn admits it with a warning
    /// shown by kubectl; DryRun admits it and records the violation (metric, log,
    /// audit annotation, Event on this policy). Default Enforce.
    #[serde(default)]
    pub mode: Mode,

    /// Namespaces this policy applies to, by their labels. Omitted: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Globs on the normalised image name without tag or digest (host lower-case,
    /// no `:443`, Docker Hub spelled out as `docker.io/library/nginx`). `*` matches
    /// any characters including `/`. Default `["*"]`: every image.
    #[serde(default = "all_images")]
    pub images: Vec<String>,

    /// Globs, as in `images`, for images this policy does not judge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_images: Vec<String>,

    /// What the repository's encryption must satisfy.
    #[serde(default)]
    pub rules: Rules,

    /// Images not in a private ECR registry (Docker Hub, ECR Public, any other
    /// registry): Allow (default) or Deny.
    #[serde(default)]
    pub non_ecr_images: NonEcrImages,

    /// When AWS cannot answer in time (timeout, throttling, access denied, errors):
    /// Deny (default) or Allow the image.
    #[serde(default)]
    pub on_lookup_failure: OnLookupFailure,
}

fn all_images() -> Vec<String> {
    vec!["*".to_string()]
}

/// What the repository's encryption must satisfy. Every rule set here must hold.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rules {
    /// Encryption types the repository may have: AES256, KMS, KMS_DSSE. Default: all three.
    #[serde(default = "all_encryption_types")]
    pub allowed_encryption_types: Vec<EncryptionType>,

    /// The repository's KMS key must be customer-managed (KeyManager CUSTOMER), not
    /// the AWS-managed `aws/ecr` key. AES256 repositories have no key and fail this.
    #[serde(default)]
    pub require_customer_managed_key: bool,

    /// Globs on the KMS key ARN, e.g. `arn:aws:kms:*:123456789012:key/*`. Empty: any key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_kms_keys: Vec<String>,

    /// The KMS key must have automatic rotation enabled (AWS-managed keys always rotate).
    #[serde(default)]
    pub require_key_rotation: bool,

    /// The KMS key must be usable: Enabled, not Disabled or PendingDeletion (pulls from
    /// the repository fail otherwise). A key the webhook cannot describe fails this.
    /// Default true.
    #[serde(default = "yes")]
    pub require_usable_key: bool,
}

fn all_encryption_types() -> Vec<EncryptionType> {
    EncryptionType::ALL.to_vec()
}

fn yes() -> bool {
    true
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            allowed_encryption_types: all_encryption_types(),
            require_customer_managed_key: false,
            allowed_kms_keys: Vec::new(),
            require_key_rotation: false,
            require_usable_key: true,
        }
    }
}

/// What a policy failure does to the request.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Deserialize,
    Serialize,
    JsonSchema,
)]
pub enum Mode {
    /// Deny the request.
    #[default]
    Enforce,
    /// Admit it with a warning.
    Warn,
    /// Admit it and record what would have been denied.
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "Enforce",
            Self::Warn => "Warn",
            Self::DryRun => "DryRun",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether images outside private ECR registries are acceptable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum NonEcrImages {
    #[default]
    Allow,
    Deny,
}

/// What to do with an image whose repository AWS could not describe in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum OnLookupFailure {
    #[default]
    Deny,
    Allow,
}

/// Observed state, written by ecr-guard.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcrEncryptionPolicyStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: True (reason Accepted) when the policy is valid and in force; False
    /// (reason Invalid) with every problem and its field path in the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CRD as YAML (`ecr-guard crd`), as committed in the chart and manifests/.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    use kube::CustomResourceExt;
    let crd = EcrEncryptionPolicy::crd();
    // Through serde_json::Value so maps come out in a stable (sorted) order.
    let value = serde_json::to_value(&crd).unwrap_or_default();
    serde_saphyr::to_string(&value)
}

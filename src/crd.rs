//! `ecr-guard crd`: the CustomResourceDefinition, generated from the Rust types.

use kube::CustomResourceExt;

use crate::policy::EcrEncryptionPolicy;

/// The CRD as YAML, as committed in the chart and manifests/.
pub fn yaml() -> Result<String, serde_saphyr::SerializeError> {
    let crd = EcrEncryptionPolicy::crd();
    // Through serde_json::Value so maps come out in a stable (sorted) order.
    let value = serde_json::to_value(&crd).unwrap_or_default();
    serde_saphyr::to_string(&value)
}

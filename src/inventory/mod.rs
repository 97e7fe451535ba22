//! What admission and `check` decide by: the policies in force and namespace
//! labels, read through one trait so neither knows the source — files and flags
//! ([`files`]) or the cluster's reflectors ([`cluster`]). Both compile policies
//! through [`compile_all`], so a policy means the same, and sorts the same,
//! whichever source holds it.

pub mod cluster;
pub mod files;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::policy::{
    EcrEncryptionPolicy, EcrEncryptionPolicySpec, FieldError, Mode, NonEcrImages, OnLookupFailure,
    Policy, Rules,
};

/// The label every namespace carries with its own name (set by the API server
/// since Kubernetes 1.22); local mode adds it too so selectors behave the same.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What an inventory knows of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Its labels, [`NAME_LABEL`] always among them.
    pub labels: BTreeMap<String, String>,
    /// Whether the source described this namespace. `false`: nothing is known of
    /// it but its name, so `labels` holds only [`NAME_LABEL`] — which may not be
    /// how the cluster labels it, so a verdict in it deserves a warning.
    pub known: bool,
}

/// A read-only view of policies and namespaces. Reads must not block or do I/O.
pub trait Inventory: Send + Sync {
    /// The compiled policies now in force (valid and invalid), sorted by name.
    fn policies(&self) -> Arc<[Policy]>;
    /// A namespace's labels and whether the source knows it at all.
    fn namespace(&self, namespace: &str) -> NamespaceInfo;
    /// The labels admission judges a namespace by: [`Inventory::namespace`]'s
    /// labels. An implementation may note a namespace it does not know here (see
    /// [`files::StaticInventory`]); [`Inventory::namespace`] never does.
    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespace(namespace).labels
    }
    /// Where namespaces come from, for messages about one that is not known:
    /// `--namespace-labels or --namespaces-file`, or `the cluster`.
    fn namespace_source(&self) -> &'static str;
    /// Whether the inventory has synced and admission may trust it.
    fn is_ready(&self) -> bool {
        true
    }
}

/// One policy object as a source holds it: [`files`] holds
/// [`EcrEncryptionPolicy`]s decoded as they load, [`cluster`] holds what the API
/// server sent, undecoded.
pub trait PolicyObject {
    /// Its `metadata.name`; empty if it has none.
    fn name(&self) -> &str;
    /// Its `spec`.
    fn spec(&self) -> HeldSpec<'_>;
}

/// A policy object's `spec`, decoded or not.
#[derive(Clone, Copy, Debug)]
pub enum HeldSpec<'a> {
    /// Already decoded: a file that does not decode is a load error instead.
    Decoded(&'a EcrEncryptionPolicySpec),
    /// JSON as the API server stores it (`None`: the object has no `spec`). It
    /// may come from a newer CRD than this version decodes.
    Json(Option<&'a Value>),
}

impl PolicyObject for EcrEncryptionPolicy {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn spec(&self) -> HeldSpec<'_> {
        HeldSpec::Decoded(&self.spec)
    }
}

/// Compiles one policy object. Never fails: an invalid spec becomes an invalid
/// policy that fails closed. A JSON spec this version cannot decode (an enum
/// value from a newer CRD, say) or that is missing becomes an invalid policy with
/// one problem at `spec`, keeping whatever of its mode and namespace selector can
/// be read, so it still applies only where it was meant to.
pub fn compile(object: &(impl PolicyObject + ?Sized)) -> Policy {
    let name = object.name();
    let json = match object.spec() {
        HeldSpec::Decoded(spec) => return Policy::compile(name, spec),
        HeldSpec::Json(json) => json.cloned().unwrap_or(Value::Null),
    };
    match serde_json::from_value::<EcrEncryptionPolicySpec>(json.clone()) {
        Ok(spec) => Policy::compile(name, &spec),
        Err(error) => undecodable(name, &json, &error),
    }
}

/// The fail-closed stand-in for a JSON spec that does not decode.
fn undecodable(name: &str, json: &Value, error: &serde_json::Error) -> Policy {
    let mode = json
        .get("mode")
        .and_then(|m| serde_json::from_value::<Mode>(m.clone()).ok())
        .unwrap_or_default();
    let selector = json
        .get("namespaceSelector")
        .and_then(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok());
    let fallback = EcrEncryptionPolicySpec {
        mode,
        namespace_selector: selector,
        images: vec!["*".to_string()],
        exclude_images: Vec::new(),
        rules: Rules::default(),
        non_ecr_images: NonEcrImages::default(),
        on_lookup_failure: OnLookupFailure::default(),
    };
    let message = if json.is_null() {
        "is missing".to_string()
    } else {
        format!("cannot be read by this version of ecr-guard: {error}")
    };
    Policy::compile(name, &fallback).with_problems(vec![FieldError {
        path: "spec".to_string(),
        message,
    }])
}

/// Compiles policy objects into what [`Inventory::policies`] returns: sorted by
/// name, so verdicts and messages list policies in one order whichever source
/// holds them. Names are unique in both (a file defining one twice does not
/// load; the API server keys objects by name), so nothing is dropped here.
pub fn compile_all<'a, O: PolicyObject + ?Sized + 'a>(
    objects: impl IntoIterator<Item = &'a O>,
) -> Arc<[Policy]> {
    let mut policies: Vec<Policy> = objects.into_iter().map(compile).collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    policies.into()
}

/// Labels for a namespace we know only by name.
pub fn name_only_labels(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), namespace.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;
    use serde_json::json;

    fn object(name: &str, spec: Option<Value>) -> Value {
        let mut object = json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "metadata": {"name": name},
        });
        if let Some(spec) = spec {
            object["spec"] = spec;
        }
        object
    }

    /// What a policy compiles to, as text (`Policy` has no `PartialEq`).
    fn shown(policies: &[Policy]) -> Vec<String> {
        policies.iter().map(|p| format!("{p:?}")).collect()
    }

    /// Files hold decoded objects and the cluster JSON: the same objects compile
    /// to the same policies, in name order, from either.
    #[test]
    fn both_sources_compile_alike_sorted_by_name() {
        let specs = [
            ("warn", json!({"mode": "Warn", "nonEcrImages": "Deny"})),
            ("bad-glob", json!({"images": ["docker.io/[library"]})),
            ("all", json!({})),
        ];
        let objects: Vec<Value> = specs
            .iter()
            .map(|(name, spec)| object(name, Some(spec.clone())))
            .collect();
        let decoded: Vec<EcrEncryptionPolicy> = objects
            .iter()
            .map(|o| serde_json::from_value(o.clone()).unwrap())
            .collect();
        let held: Vec<DynamicObject> = objects
            .iter()
            .map(|o| serde_json::from_value(o.clone()).unwrap())
            .collect();
        let from_files = compile_all(&decoded);
        let from_cluster = compile_all(&held);
        let names: Vec<&str> = from_files.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["all", "bad-glob", "warn"]);
        assert_eq!(shown(&from_files), shown(&from_cluster));
        assert!(!from_files[1].is_valid());
    }

    /// A JSON spec that is missing or does not decode fails closed with one
    /// problem at `spec`, keeping the mode and selector it can read.
    #[test]
    fn a_spec_that_is_missing_or_unreadable_fails_closed() {
        let missing: DynamicObject = serde_json::from_value(object("gone", None)).unwrap();
        let policy = compile(&missing);
        assert!(!policy.is_valid());
        assert_eq!(policy.problems()[0].path, "spec");
        assert_eq!(policy.problems()[0].message, "is missing");

        let newer: DynamicObject = serde_json::from_value(object(
            "newer",
            Some(json!({"mode": "DryRun", "rules": {"allowedEncryptionTypes": ["QUANTUM"]}})),
        ))
        .unwrap();
        let policy = compile(&newer);
        assert_eq!((policy.name.as_str(), policy.mode), ("newer", Mode::DryRun));
        assert_eq!(policy.problems().len(), 1);
        assert!(
            policy.problems()[0]
                .message
                .starts_with("cannot be read by this version of ecr-guard: "),
            "{:?}",
            policy.problems()
        );
    }
}

//! What admission reads to decide: the policies in force and namespace labels.
//! Two sources fill it: local files (`--policy-file`, `--namespace-labels`,
//! `--namespaces-file`) or the cluster's reflectors (`cluster`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::policy::{EcrEncryptionPolicy, Policy};

/// The label every namespace carries with its own name (set by the API server
/// since Kubernetes 1.22); local mode adds it too so selectors behave the same.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A read-only view of policies and namespaces. Reads must not block or do I/O.
pub trait Inventory: Send + Sync {
    /// The compiled policies now in force (valid and invalid), sorted by name.
    fn policies(&self) -> Arc<[Policy]>;
    /// The labels of a namespace; a namespace not (yet) known has only its name label.
    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String>;
    /// Whether the inventory has synced and admission may trust it.
    fn is_ready(&self) -> bool {
        true
    }
}

/// Compiles policy objects, sorted by name so verdicts are deterministic.
pub fn compile_all<'a>(
    objects: impl IntoIterator<Item = &'a EcrEncryptionPolicy>,
) -> Arc<[Policy]> {
    let mut policies: Vec<Policy> = objects
        .into_iter()
        .map(|o| Policy::compile(o.metadata.name.as_deref().unwrap_or_default(), &o.spec))
        .collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    policies.into()
}

/// Labels for a namespace we know only by name.
pub fn name_only_labels(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), namespace.to_string())])
}

/// A fixed inventory: policies and namespaces given at start-up.
#[derive(Clone, Debug)]
pub struct StaticInventory {
    policies: Arc<[Policy]>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
}

impl StaticInventory {
    pub fn new(
        policies: Arc<[Policy]>,
        namespaces: HashMap<String, BTreeMap<String, String>>,
    ) -> Self {
        Self {
            policies,
            namespaces,
        }
    }
}

impl Inventory for StaticInventory {
    fn policies(&self) -> Arc<[Policy]> {
        self.policies.clone()
    }

    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self.namespaces.get(namespace).cloned().unwrap_or_default();
        labels.insert(NAME_LABEL.to_string(), namespace.to_string());
        labels
    }
}

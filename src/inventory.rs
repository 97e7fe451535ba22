//! What admission reads to decide: the policies in force and namespace labels.
//! Two sources fill it: local files (`--policy-file`, `--namespace-labels`,
//! `--namespaces-file`) or the cluster's reflectors (`cluster`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::policy::{EcrEncryptionPolicy, Policy};

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
    /// [`StaticInventory`]); [`Inventory::namespace`] never does.
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

/// How many distinct unknown namespaces [`StaticInventory`] logs one by one; past
/// this it says once that it stops, so a caller inventing namespaces cannot grow
/// the set (or the log) without bound.
const MAX_LOGGED_UNKNOWN_NAMESPACES: usize = 1024;

/// A fixed inventory: policies and namespaces given at start-up.
#[derive(Clone, Debug)]
pub struct StaticInventory {
    policies: Arc<[Policy]>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Unknown namespaces already logged by `namespace_labels`.
    logged_unknown: Arc<Mutex<UnknownLog>>,
}

#[derive(Debug, Default)]
struct UnknownLog {
    seen: HashSet<String>,
    /// The limit was reached (and said so): nothing more is logged.
    full: bool,
}

impl StaticInventory {
    pub fn new(
        policies: Arc<[Policy]>,
        namespaces: HashMap<String, BTreeMap<String, String>>,
    ) -> Self {
        Self {
            policies,
            namespaces,
            logged_unknown: Arc::default(),
        }
    }

    /// Logs (at warn) the first review in a namespace the files do not describe,
    /// once per namespace: in local `serve` mode that namespace is judged by its
    /// name label alone, which is worth knowing but not worth a line per review.
    fn note_unknown(&self, namespace: &str) {
        // A poisoned lock only means another thread panicked while logging; the
        // set is still usable.
        let mut logged = self
            .logged_unknown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.full || logged.seen.contains(namespace) {
            return;
        }
        if logged.seen.len() == MAX_LOGGED_UNKNOWN_NAMESPACES {
            logged.full = true;
            warn!(
                limit = MAX_LOGGED_UNKNOWN_NAMESPACES,
                "more namespaces not described by --namespace-labels or --namespaces-file; no longer logging each"
            );
            return;
        }
        logged.seen.insert(namespace.to_string());
        warn!(
            namespace,
            "namespace not described by --namespace-labels or --namespaces-file: judged by its {NAME_LABEL} label alone (logged once per namespace)"
        );
    }
}

impl Inventory for StaticInventory {
    fn policies(&self) -> Arc<[Policy]> {
        self.policies.clone()
    }

    fn namespace(&self, namespace: &str) -> NamespaceInfo {
        let known = self.namespaces.get(namespace);
        let mut labels = known.cloned().unwrap_or_default();
        labels.insert(NAME_LABEL.to_string(), namespace.to_string());
        NamespaceInfo {
            labels,
            known: known.is_some(),
        }
    }

    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let info = self.namespace(namespace);
        if !info.known {
            self.note_unknown(namespace);
        }
        info.labels
    }

    fn namespace_source(&self) -> &'static str {
        "--namespace-labels or --namespaces-file"
    }
}

//! What admission reads to decide: the policies in force and namespace labels.
//! Two sources fill it: local files (`--policy-file`, `--namespace-labels`,
//! `--namespaces-file`) or the cluster's reflectors (`cluster`).

pub mod cluster;
pub mod files;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Everything logged while `f` runs, as text lines.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn payments() -> StaticInventory {
        StaticInventory::new(
            Arc::from(Vec::new()),
            HashMap::from([(
                "payments".to_string(),
                BTreeMap::from([("compliance".to_string(), "regulated".to_string())]),
            )]),
        )
    }

    #[test]
    fn a_namespace_is_known_only_when_described() {
        let inv = payments();
        let known = inv.namespace("payments");
        assert!(known.known);
        assert_eq!(known.labels["compliance"], "regulated");
        assert_eq!(known.labels[NAME_LABEL], "payments");
        let unknown = inv.namespace("paymnets");
        assert!(!unknown.known);
        assert_eq!(unknown.labels, name_only_labels("paymnets"));
    }

    /// Local `serve`: admission's read of an unknown namespace is logged once per
    /// namespace, not per review; a known one never; the labels (so the verdict)
    /// are what they were.
    #[test]
    fn unknown_namespaces_are_logged_once_each_and_the_labels_are_unchanged() {
        let inv = payments();
        let lines = logged(|| {
            for _ in 0..3 {
                assert_eq!(inv.namespace_labels("payments")["compliance"], "regulated");
                assert_eq!(
                    inv.namespace_labels("paymnets"),
                    name_only_labels("paymnets")
                );
                assert_eq!(inv.namespace_labels("shop"), name_only_labels("shop"));
                // `namespace` (what `check` reads, and reports itself) logs nothing.
                assert!(!inv.namespace("dev").known);
            }
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains("namespace=\"paymnets\""), "{}", lines[0]);
        assert!(
            lines[0].contains("not described by --namespace-labels or --namespaces-file"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("namespace=\"shop\""), "{}", lines[1]);
        // A clone (as handed to each server task) shares what was logged.
        assert!(logged(|| drop(inv.clone().namespace_labels("shop"))).is_empty());
    }

    /// Through admission, as local `serve` runs it: a review in a namespace the
    /// files do not describe is logged (once), and its verdict is unchanged — the
    /// policy selecting `compliance=regulated` does not apply there.
    #[test]
    fn admission_logs_a_review_in_an_unknown_namespace_once_and_judges_it_as_before() {
        use crate::admission::Admission;
        use crate::judging::{Judge, NoFacts};
        use crate::metrics::AdmissionMetrics;
        use crate::policy::{EcrEncryptionPolicySpec, NonEcrImages, Options};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

        let spec = EcrEncryptionPolicySpec {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "compliance".to_string(),
                    "regulated".to_string(),
                )])),
                ..LabelSelector::default()
            }),
            non_ecr_images: NonEcrImages::Deny,
            ..serde_json::from_value(serde_json::json!({})).unwrap()
        };
        let mut inv = payments();
        inv.policies = Arc::from(vec![Policy::compile("no-hub", &spec)]);
        let admission = Admission::new(
            Arc::new(inv),
            Judge::new(
                Arc::new(NoFacts::failing("no AWS in this test")),
                Options::default(),
                std::time::Duration::from_secs(1),
            ),
            AdmissionMetrics::default(),
        );
        let review = |namespace: &str| {
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": namespace,
                    "operation": "CREATE",
                    "userInfo": {"username": "alice"},
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": "web", "namespace": namespace},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                    },
                },
            }))
            .unwrap()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut allowed = Vec::new();
        let lines = logged(|| {
            for namespace in ["payments", "paymnets", "paymnets", "paymnets"] {
                let outcome = runtime
                    .block_on(admission.review_bytes(&review(namespace)))
                    .unwrap();
                allowed.push(outcome.review.response.unwrap().allowed);
            }
        });
        assert_eq!(allowed, [false, true, true, true]);
        let unknown: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("not described by --namespace-labels"))
            .collect();
        assert_eq!(unknown.len(), 1, "{lines:#?}");
        assert!(
            unknown[0].contains("namespace=\"paymnets\""),
            "{}",
            unknown[0]
        );
    }

    #[test]
    fn logging_unknown_namespaces_stops_at_a_bound() {
        let inv = payments();
        let lines = logged(|| {
            for i in 0..MAX_LOGGED_UNKNOWN_NAMESPACES + 10 {
                inv.namespace_labels(&format!("ns-{i}"));
            }
        });
        assert_eq!(lines.len(), MAX_LOGGED_UNKNOWN_NAMESPACES + 1);
        assert!(
            lines[MAX_LOGGED_UNKNOWN_NAMESPACES].contains("no longer logging each"),
            "{}",
            lines[MAX_LOGGED_UNKNOWN_NAMESPACES]
        );
        let logged_set = inv.logged_unknown.lock().unwrap();
        assert_eq!(logged_set.seen.len(), MAX_LOGGED_UNKNOWN_NAMESPACES);
    }
}

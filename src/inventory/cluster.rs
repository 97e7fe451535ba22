//! Cluster mode's source, the reflector-backed [`Inventory`]: stores of policies and
//! namespace metadata, filled by watcher events, plus a compiled snapshot of the
//! policies swapped in whenever the policy store changes, so a review never
//! compiles anything. The list/watch calls that feed it live in [`crate::cluster`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::Event;
use tokio::sync::Notify;
use tracing::info;

use super::{
    HeldSpec, Inventory, NAME_LABEL, NamespaceInfo, PolicyObject, compile_all, name_only_labels,
};
use crate::policy::{EcrEncryptionPolicy, Policy};

/// The API resource policies are read as: untyped, so one object this version
/// cannot decode becomes an invalid policy instead of breaking the whole watch.
pub fn policy_resource() -> ApiResource {
    ApiResource::erase::<EcrEncryptionPolicy>(&())
}

/// Policies and namespaces as the cluster last told us.
pub struct ClusterInventory {
    policies: Store<DynamicObject>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    compiled: ArcSwap<Arc<[Policy]>>,
    policies_synced: AtomicBool,
    namespaces_synced: AtomicBool,
    changed: Notify,
}

/// The only writer of the policy store: apply each watcher event here.
pub struct PolicyFeed {
    writer: Writer<DynamicObject>,
    inventory: Arc<ClusterInventory>,
}

/// The only writer of the namespace store.
pub struct NamespaceFeed {
    writer: Writer<PartialObjectMeta<Namespace>>,
    inventory: Arc<ClusterInventory>,
}

impl ClusterInventory {
    /// An empty, not yet ready inventory and the two feeds that fill it.
    pub fn new() -> (Arc<Self>, PolicyFeed, NamespaceFeed) {
        let policy_writer = Writer::new(policy_resource());
        let namespace_writer = Writer::default();
        let inventory = Arc::new(Self {
            policies: policy_writer.as_reader(),
            namespaces: namespace_writer.as_reader(),
            compiled: ArcSwap::from_pointee(Arc::from(Vec::new())),
            policies_synced: AtomicBool::new(false),
            namespaces_synced: AtomicBool::new(false),
            changed: Notify::new(),
        });
        let policies = PolicyFeed {
            writer: policy_writer,
            inventory: inventory.clone(),
        };
        let namespaces = NamespaceFeed {
            writer: namespace_writer,
            inventory: inventory.clone(),
        };
        (inventory, policies, namespaces)
    }

    /// Every policy object in the store.
    pub fn policy_objects(&self) -> Vec<Arc<DynamicObject>> {
        self.policies.state()
    }

    /// One policy object by name.
    pub fn policy_object(&self, name: &str) -> Option<Arc<DynamicObject>> {
        self.policies
            .get(&ObjectRef::new_with(name, policy_resource()))
    }

    /// Signalled after every change of the policy store.
    pub fn policies_changed(&self) -> &Notify {
        &self.changed
    }

    fn recompile(&self) {
        let objects = self.policies.state();
        self.compiled
            .store(Arc::new(compile_all(objects.iter().map(Arc::as_ref))));
    }
}

impl Inventory for ClusterInventory {
    fn policies(&self) -> Arc<[Policy]> {
        Arc::clone(&self.compiled.load())
    }

    /// Known: the namespace store holds it (for `check`, it was in the cluster's
    /// list; for `serve`, the watch has delivered it).
    fn namespace(&self, namespace: &str) -> NamespaceInfo {
        let Some(ns) = self.namespaces.get(&ObjectRef::new(namespace)) else {
            return NamespaceInfo {
                labels: name_only_labels(namespace),
                known: false,
            };
        };
        let mut labels = ns.metadata.labels.clone().unwrap_or_default();
        labels.insert(NAME_LABEL.to_string(), namespace.to_string());
        NamespaceInfo {
            labels,
            known: true,
        }
    }

    fn namespace_source(&self) -> &'static str {
        "the cluster"
    }

    fn is_ready(&self) -> bool {
        self.policies_synced.load(Ordering::Acquire)
            && self.namespaces_synced.load(Ordering::Acquire)
    }
}

impl PolicyFeed {
    pub fn apply(&mut self, event: Event<DynamicObject>) {
        let event = event.modify(|o| slim(&mut o.metadata));
        self.writer.apply_watcher_event(&event);
        match event {
            // A (re)list in progress: the store keeps serving the last state until
            // InitDone swaps the new one in.
            Event::Init | Event::InitApply(_) => return,
            Event::InitDone => {
                self.inventory
                    .policies_synced
                    .store(true, Ordering::Release);
                info!(
                    policies = self.inventory.policies.len(),
                    "EcrEncryptionPolicies synced"
                );
            }
            Event::Apply(_) | Event::Delete(_) => {}
        }
        self.inventory.recompile();
        self.inventory.changed.notify_one();
    }
}

impl NamespaceFeed {
    pub fn apply(&mut self, event: Event<PartialObjectMeta<Namespace>>) {
        let event = event.modify(|ns| slim(&mut ns.metadata));
        self.writer.apply_watcher_event(&event);
        if matches!(event, Event::InitDone) {
            self.inventory
                .namespaces_synced
                .store(true, Ordering::Release);
            info!(
                namespaces = self.inventory.namespaces.len(),
                "Namespaces synced"
            );
        }
    }
}

/// Drops what admission never reads (managed fields, annotations such as
/// kubectl's last-applied-configuration) before an object enters a store.
fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
}

/// Objects of the policy store: their `spec` as the API server sent it.
impl PolicyObject for DynamicObject {
    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn spec(&self) -> HeldSpec<'_> {
        HeldSpec::Json(self.data.get("spec"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Admission;
    use crate::judging::{FixedFacts, Judge};
    use crate::metrics::AdmissionMetrics;
    use crate::policy::{Mode, Options};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn policy(name: &str, generation: i64, spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "metadata": {
                "name": name,
                "uid": format!("uid-{name}"),
                "generation": generation,
                "resourceVersion": format!("{generation}"),
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{…}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": spec,
        }))
        .unwrap()
    }

    /// Docker Hub images are denied in namespaces labelled tier=regulated.
    fn deny_docker_hub(name: &str) -> DynamicObject {
        policy(
            name,
            1,
            json!({
                "namespaceSelector": {"matchLabels": {"tier": "regulated"}},
                "nonEcrImages": "Deny",
            }),
        )
    }

    fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(NAME_LABEL.to_string(), name.to_string())])
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {"big": "x".repeat(1000)},
            },
        }))
        .unwrap()
    }

    fn synced() -> (Arc<ClusterInventory>, PolicyFeed, NamespaceFeed) {
        let (inventory, mut policies, mut namespaces) = ClusterInventory::new();
        for feed_event in [Event::Init, Event::InitDone] {
            policies.apply(feed_event);
        }
        namespaces.apply(Event::Init);
        namespaces.apply(Event::InitApply(namespace("payments", &[])));
        namespaces.apply(Event::InitDone);
        (inventory, policies, namespaces)
    }

    fn admission(inventory: Arc<ClusterInventory>) -> Admission {
        let judge = Judge::new(
            Arc::new(FixedFacts::failing("no AWS in this test")),
            Options::default(),
            Duration::from_secs(1),
        );
        Admission::new(inventory, judge, AdmissionMetrics::default())
    }

    /// `allowed`, and the denial message or warnings, for a Pod running nginx.
    async fn run_nginx(admission: &Admission, namespace: &str) -> (bool, String) {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0d9a6f0e-2b8c-4a59-9a39-3f1f0f9f2f11",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "web",
                "namespace": namespace,
                "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "web", "namespace": namespace},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
                "oldObject": null,
                "dryRun": false,
            },
        });
        let outcome = admission
            .review(&serde_json::to_vec(&review).unwrap())
            .await
            .unwrap();
        let response = outcome.review.response;
        let text = if response.allowed {
            response.warnings.unwrap_or_default().join("\n")
        } else {
            response.status.message
        };
        (response.allowed, text)
    }

    #[test]
    fn readiness_waits_for_both_initial_syncs_and_survives_a_relist() {
        let (inventory, mut policies, mut namespaces) = ClusterInventory::new();
        assert!(!inventory.is_ready());
        policies.apply(Event::Init);
        policies.apply(Event::InitApply(deny_docker_hub("no-hub")));
        assert!(!inventory.is_ready());
        assert!(inventory.policies().is_empty(), "nothing before InitDone");
        policies.apply(Event::InitDone);
        assert!(!inventory.is_ready(), "namespaces not synced yet");
        assert_eq!(inventory.policies().len(), 1);
        namespaces.apply(Event::Init);
        assert!(!inventory.is_ready());
        namespaces.apply(Event::InitDone);
        assert!(inventory.is_ready());

        // A broken watch relists: the last good state keeps serving until the new
        // list is complete, and readiness does not flap.
        policies.apply(Event::Init);
        assert!(inventory.is_ready());
        assert_eq!(inventory.policies().len(), 1);
        policies.apply(Event::InitDone);
        assert!(
            inventory.policies().is_empty(),
            "deleted while we were away"
        );
        assert!(inventory.is_ready());
    }

    #[tokio::test]
    async fn admission_follows_policy_creation_update_and_deletion() {
        let (inventory, mut policies, mut namespaces) = synced();
        namespaces.apply(Event::Apply(namespace(
            "payments",
            &[("tier", "regulated")],
        )));
        let admission = admission(inventory.clone());
        assert!(run_nginx(&admission, "payments").await.0, "no policy yet");

        policies.apply(Event::Apply(deny_docker_hub("no-hub")));
        let (allowed, message) = run_nginx(&admission, "payments").await;
        assert!(!allowed);
        assert!(message.contains("no-hub"), "{message}");

        let mut warn = deny_docker_hub("no-hub");
        warn.data["spec"]["mode"] = json!("Warn");
        policies.apply(Event::Apply(warn.clone()));
        let (allowed, warnings) = run_nginx(&admission, "payments").await;
        assert!(allowed);
        assert!(warnings.contains("no-hub"), "{warnings}");

        policies.apply(Event::Delete(warn));
        assert_eq!(
            run_nginx(&admission, "payments").await,
            (true, String::new())
        );
    }

    #[tokio::test]
    async fn admission_follows_namespace_relabelling() {
        let (inventory, mut policies, mut namespaces) = synced();
        policies.apply(Event::Apply(deny_docker_hub("no-hub")));
        let admission = admission(inventory.clone());
        assert!(run_nginx(&admission, "payments").await.0, "not regulated");

        namespaces.apply(Event::Apply(namespace(
            "payments",
            &[("tier", "regulated")],
        )));
        assert!(!run_nginx(&admission, "payments").await.0, "relabelled");
        assert!(
            run_nginx(&admission, "other").await.0,
            "unknown namespaces have only their name label"
        );

        namespaces.apply(Event::Apply(namespace("payments", &[("tier", "dev")])));
        assert!(run_nginx(&admission, "payments").await.0);

        // A namespace selector on the name label works too.
        let mut by_name = deny_docker_hub("by-name");
        by_name.data["spec"]["namespaceSelector"] =
            json!({"matchLabels": {NAME_LABEL: "payments"}});
        policies.apply(Event::Apply(by_name));
        assert!(!run_nginx(&admission, "payments").await.0);
    }

    #[tokio::test]
    async fn invalid_policies_fail_closed() {
        let (inventory, mut policies, _namespaces) = synced();
        let admission = admission(inventory.clone());
        policies.apply(Event::Apply(policy(
            "bad-glob",
            1,
            json!({"images": ["docker.io/[library"], "rules": {"allowedKmsKeys": ["alias/x"]}}),
        )));
        let (allowed, message) = run_nginx(&admission, "payments").await;
        assert!(!allowed);
        assert!(message.contains("policy bad-glob is invalid"), "{message}");
        assert!(message.contains("spec.images[0]"), "{message}");
        assert!(
            message.contains("spec.rules.allowedKmsKeys[0]"),
            "{message}"
        );

        // A spec this version cannot decode is not skipped either; its readable
        // selector still scopes it.
        policies.apply(Event::Delete(policy("bad-glob", 1, json!({}))));
        policies.apply(Event::Apply(policy(
            "from-the-future",
            1,
            json!({
                "mode": "Warn",
                "namespaceSelector": {"matchLabels": {NAME_LABEL: "payments"}},
                "rules": {"allowedEncryptionTypes": ["QUANTUM"]},
            }),
        )));
        let compiled = inventory.policies();
        assert_eq!(compiled.len(), 1);
        assert!(!compiled[0].is_valid());
        assert_eq!(compiled[0].mode, Mode::Warn);
        assert_eq!(compiled[0].problems()[0].path, "spec");
        assert!(
            compiled[0].problems()[0].message.contains("QUANTUM"),
            "{:?}",
            compiled[0].problems()
        );
        let (allowed, warnings) = run_nginx(&admission, "payments").await;
        assert!(allowed, "Warn mode warns");
        assert!(warnings.contains("from-the-future"), "{warnings}");
        assert_eq!(run_nginx(&admission, "other").await, (true, String::new()));
    }

    #[test]
    fn a_namespace_is_known_once_the_cluster_has_listed_it() {
        let (inventory, _policies, mut namespaces) = synced();
        let payments = inventory.namespace("payments");
        assert!(payments.known);
        assert_eq!(
            payments.labels,
            crate::inventory::name_only_labels("payments")
        );
        let other = inventory.namespace("paymnets");
        assert!(!other.known);
        assert_eq!(other.labels, crate::inventory::name_only_labels("paymnets"));
        assert_eq!(inventory.namespace_source(), "the cluster");
        namespaces.apply(Event::Apply(namespace("paymnets", &[("tier", "x")])));
        assert!(inventory.namespace("paymnets").known);
        namespaces.apply(Event::Delete(namespace("paymnets", &[])));
        assert!(!inventory.namespace("paymnets").known);
    }

    #[test]
    fn stores_keep_only_what_admission_reads() {
        let (inventory, mut policies, mut namespaces) = synced();
        policies.apply(Event::Apply(deny_docker_hub("no-hub")));
        namespaces.apply(Event::Apply(namespace(
            "payments",
            &[("tier", "regulated")],
        )));
        let object = inventory.policy_object("no-hub").unwrap();
        assert!(object.metadata.annotations.is_none());
        assert!(object.metadata.managed_fields.is_none());
        assert_eq!(object.metadata.uid.as_deref(), Some("uid-no-hub"));
        let labels = inventory.namespace_labels("payments");
        assert_eq!(labels["tier"], "regulated");
        assert_eq!(labels[NAME_LABEL], "payments");
        let ns = inventory
            .namespaces
            .get(&ObjectRef::new("payments"))
            .unwrap();
        assert!(ns.metadata.annotations.is_none());
    }

    #[tokio::test]
    async fn policy_changes_wake_the_status_writer() {
        let (inventory, mut policies, _namespaces) = synced();
        // InitDone in `synced` left a permit.
        inventory.policies_changed().notified().await;
        policies.apply(Event::Apply(deny_docker_hub("no-hub")));
        tokio::time::timeout(
            Duration::from_secs(1),
            inventory.policies_changed().notified(),
        )
        .await
        .unwrap();
    }
}

//! The running Pods the audit judges: one paginated list per cycle, read into
//! what judging needs (namespace, name, owner, image uses).

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};

use crate::policy::ImageUse;
use crate::workload::{self, WorkloadKind};

/// Only Pods that may still (re)start containers: Succeeded and Failed Pods
/// pull nothing again.
pub const RUNNING_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";
/// Pods per list page: bounds the memory of one response in a big cluster.
pub const PAGE_SIZE: u32 = 500;

/// One running Pod, as the audit judges it.
#[derive(Clone, Debug)]
pub struct AuditedPod {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The controller owner reference (ReplicaSet, StatefulSet, Job, …), if any.
    pub owner: Option<ObjectReference>,
    /// Containers, init and ephemeral containers, image volumes, in spec order;
    /// `Err` with the reader's message when the spec could not be read.
    pub image_uses: Result<Vec<ImageUse>, String>,
}

impl AuditedPod {
    /// From a Pod read as an untyped object (only the image fields are decoded).
    pub fn from_object(object: &DynamicObject) -> Option<Self> {
        let meta = &object.metadata;
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| ObjectReference {
                api_version: Some(o.api_version.clone()),
                kind: Some(o.kind.clone()),
                name: Some(o.name.clone()),
                namespace: meta.namespace.clone(),
                uid: Some(o.uid.clone()),
                ..ObjectReference::default()
            });
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone(),
            owner,
            image_uses: workload::image_uses(WorkloadKind::Pod, &object.data)
                .map_err(|e| e.to_string()),
        })
    }

    /// The Pod as a report's `resources` entry.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

/// The list's field selector: running Pods outside the excluded namespaces
/// (filtered by the API server, so their Pods never cross the wire).
pub fn field_selector(excluded: &[String]) -> String {
    let mut selector = RUNNING_PODS.to_string();
    for namespace in excluded {
        selector.push_str(",metadata.namespace!=");
        selector.push_str(namespace);
    }
    selector
}

/// Every running Pod outside `excluded` namespaces, listed page by page.
pub async fn list(client: Client, excluded: &[String]) -> Result<Vec<AuditedPod>, kube::Error> {
    let api = Api::<DynamicObject>::all_with(client, &ApiResource::erase::<Pod>(&()));
    let selector = field_selector(excluded);
    let mut params = ListParams::default().fields(&selector).limit(PAGE_SIZE);
    let mut pods = Vec::new();
    loop {
        let page = api.list(&params).await?;
        pods.extend(
            page.items
                .iter()
                .filter(|o| {
                    o.metadata
                        .namespace
                        .as_ref()
                        .is_some_and(|ns| !excluded.contains(ns))
                })
                .filter_map(AuditedPod::from_object),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(pods),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Slot;

    #[test]
    fn every_image_slot_and_the_controller_owner_are_read() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-1",
                "namespace": "shop",
                "uid": "u1",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n1"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d", "uid": "rs1", "controller": true},
                ],
            },
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "web", "image": "nginx"}],
                "ephemeralContainers": [{"name": "debug", "image": "alpine"}],
                "volumes": [{"name": "data", "image": {"reference": "quay.io/x/data:1"}}],
            },
        }))
        .unwrap();
        let pod = AuditedPod::from_object(&object).unwrap();
        let slots: Vec<(Slot, &str)> = pod
            .image_uses
            .as_ref()
            .unwrap()
            .iter()
            .map(|u| (u.slot, u.reference.as_str()))
            .collect();
        assert_eq!(
            slots,
            [
                (Slot::InitContainer, "busybox"),
                (Slot::Container, "nginx"),
                (Slot::EphemeralContainer, "alpine"),
                (Slot::ImageVolume, "quay.io/x/data:1"),
            ]
        );
        let owner = pod.owner.unwrap();
        assert_eq!(
            (
                owner.kind.as_deref(),
                owner.name.as_deref(),
                owner.namespace.as_deref()
            ),
            (Some("ReplicaSet"), Some("web-5d"), Some("shop"))
        );
    }

    #[test]
    fn the_field_selector_leaves_out_finished_pods_and_excluded_namespaces() {
        assert_eq!(
            field_selector(&["ecr-guard".into(), "kube-system".into()]),
            "status.phase!=Succeeded,status.phase!=Failed,\
             metadata.namespace!=ecr-guard,metadata.namespace!=kube-system"
        );
    }
}

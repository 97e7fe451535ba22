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

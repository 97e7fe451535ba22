//! Warning Events for keys that break pulls (see [`super::key_state`]), on the
//! workload that owns the Pod (a Deployment rather than its ReplicaSet, a
//! CronJob rather than its Job), so `kubectl describe deployment` shows them.
//!
//! One Event per (workload, key, state) for the life of the process: the
//! report carries the finding every cycle; the Event is the nudge.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, PartialObjectMeta, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use tracing::warn;

use super::key_state::{BrokenKey, message};
use crate::cluster::events::REPORTING_CONTROLLER;

/// The Events' reason.
pub const REASON: &str = "KmsKeyUnusable";
/// The Events' action.
pub const ACTION: &str = "Audit";
/// Most (workload, key, state) triples remembered; past it the memory starts
/// over (at worst, one more Event each).
const MAX_REMEMBERED: usize = 10_000;
/// The API server's limit on `note`.
const NOTE_LIMIT: usize = 1024;

type Warned = (String, String, String, String);

/// Writes the Events; remembers which it wrote.
pub struct KeyWarnings {
    client: Client,
    instance: String,
    warned: Mutex<HashSet<Warned>>,
}

impl KeyWarnings {
    pub fn new(client: Client) -> Self {
        let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "ecr-guard-audit".into());
        Self {
            client,
            instance,
            warned: Mutex::default(),
        }
    }

    /// The workload a Pod's controller owner belongs to: a ReplicaSet's
    /// Deployment, a Job's CronJob (one metadata GET each, remembered in
    /// `owners` for the cycle), else the owner itself.
    pub async fn workload(
        &self,
        owner: &ObjectReference,
        owners: &mut HashMap<(String, String, String), ObjectReference>,
    ) -> ObjectReference {
        let (Some(kind), Some(name), Some(namespace)) =
            (&owner.kind, &owner.name, &owner.namespace)
        else {
            return owner.clone();
        };
        let gvk = match kind.as_str() {
            "ReplicaSet" => GroupVersionKind::gvk("apps", "v1", "ReplicaSet"),
            "Job" => GroupVersionKind::gvk("batch", "v1", "Job"),
            _ => return owner.clone(),
        };
        let key = (namespace.clone(), kind.clone(), name.clone());
        if let Some(found) = owners.get(&key) {
            return found.clone();
        }
        let resource = ApiResource::from_gvk(&gvk);
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &resource);
        let found = match api.get_metadata(name).await {
            Ok(meta) => parent(&meta, namespace).unwrap_or_else(|| owner.clone()),
            Err(error) => {
                warn!(%error, kind, name, "failed to read a Pod's owner; the Event goes on the owner");
                owner.clone()
            }
        };
        owners.insert(key, found.clone());
        found
    }

    /// A Warning Event on `workload` about `key`, unless one was written already.
    pub async fn warn(&self, workload: &ObjectReference, key: &BrokenKey) {
        let remembered = (
            workload.namespace.clone().unwrap_or_default(),
            format!(
                "{}/{}",
                workload.kind.as_deref().unwrap_or(""),
                workload.name.as_deref().unwrap_or("")
            ),
            key.arn.clone(),
            key.state.clone(),
        );
        {
            let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
            if warned.contains(&remembered) {
                return;
            }
            if warned.len() >= MAX_REMEMBERED {
                warned.clear();
            }
            warned.insert(remembered.clone());
        }
        let namespace = remembered.0.clone();
        let api = Api::<Event>::namespaced(self.client.clone(), &namespace);
        let event = self.event(workload, key);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            warn!(%error, key = %key.arn, "failed to write a KmsKeyUnusable Event");
            // Try again next cycle.
            self.warned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&remembered);
        }
    }

    fn event(&self, workload: &ObjectReference, key: &BrokenKey) -> Event {
        let now = Timestamp::now();
        let base: String = workload
            .name
            .as_deref()
            .unwrap_or("ecr-guard")
            .chars()
            .take(200)
            .collect();
        let note: String = message(key).chars().take(NOTE_LIMIT).collect();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{base}.{:x}", now.as_nanosecond())),
                namespace: workload.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
            reporting_instance: Some(self.instance.chars().take(128).collect()),
            action: Some(ACTION.to_string()),
            reason: Some(REASON.to_string()),
            regarding: Some(workload.clone()),
            note: Some(note),
            type_: Some("Warning".to_string()),
            ..Event::default()
        }
    }
}

/// The controller owner of `meta` when it is a Deployment or CronJob.
fn parent(meta: &PartialObjectMeta<DynamicObject>, namespace: &str) -> Option<ObjectReference> {
    let owner = meta.metadata.owner_references.iter().flatten().find(|o| {
        o.controller == Some(true) && matches!(o.kind.as_str(), "Deployment" | "CronJob")
    })?;
    Some(ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        namespace: Some(namespace.to_string()),
        uid: Some(owner.uid.clone()),
        ..ObjectReference::default()
    })
}

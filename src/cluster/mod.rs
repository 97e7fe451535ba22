//! Cluster mode: policies and namespace labels from the API server, policy status
//! and Events back to it.
//!
//! Admission reads only in-memory stores filled by reflectors
//! ([`crate::inventory::cluster`]); the API calls are the two list/watch pairs, a
//! server-side apply of each policy's status ([`status`]) and Events on policies
//! for Warn/DryRun violations ([`events`]). Everything else here is wiring.

pub mod client;
pub mod events;
pub mod status;

use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tracing::{info, warn};

pub use client::client;
pub use events::{EventLimits, EventSink};
pub use status::StatusWriter;

use crate::inventory::cluster::{ClusterInventory, NamespaceFeed, PolicyFeed, policy_resource};

/// The field manager of every write: replicas share it, so their identical status
/// applies never conflict.
pub const FIELD_MANAGER: &str = "ecr-guard";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to read the kubeconfig {path}")]
    ReadKubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("failed to load the kubeconfig")]
    LoadKubeconfig(#[source] kube::config::KubeconfigError),
    #[error(
        "failed to find cluster credentials: not in a cluster ({in_cluster}) and no usable kubeconfig ({kubeconfig}); \
         pass --kubeconfig, or --policy-file to run without a cluster"
    )]
    NoConfig {
        in_cluster: String,
        kubeconfig: String,
    },
    #[error("failed to build the Kubernetes client")]
    BuildClient(#[source] kube::Error),
    #[error("failed to list EcrEncryptionPolicies")]
    ListPolicies(#[source] watcher::Error),
    #[error("failed to list namespaces")]
    ListNamespaces(#[source] watcher::Error),
}

/// List + watch of every EcrEncryptionPolicy (paginated list, then a watch with bookmarks).
pub fn policy_events(client: Client) -> impl Stream<Item = watcher::Result<Event<DynamicObject>>> {
    let api = Api::<DynamicObject>::all_with(client, &policy_resource());
    watcher::watcher(api, watcher::Config::default())
}

/// List + watch of namespace metadata only (`PartialObjectMetadata`): labels are all
/// admission needs, and full Namespace objects would cost memory in big clusters.
pub fn namespace_events(
    client: Client,
) -> impl Stream<Item = watcher::Result<Event<PartialObjectMeta<Namespace>>>> {
    let api = Api::<PartialObjectMeta<Namespace>>::all(client);
    watcher::watcher(api, watcher::Config::default())
}

/// Feeds the policy store forever. A broken watch is retried with backoff while the
/// last good state keeps serving.
pub async fn watch_policies(client: Client, mut feed: PolicyFeed) {
    let mut events = std::pin::pin!(policy_events(client).default_backoff());
    while let Some(item) = events.next().await {
        match item {
            Ok(event) => feed.apply(event),
            Err(error) => warn!(%error, "EcrEncryptionPolicy watch failed; retrying with backoff"),
        }
    }
}

/// Feeds the namespace store forever, like [`watch_policies`].
pub async fn watch_namespaces(client: Client, mut feed: NamespaceFeed) {
    let mut events = std::pin::pin!(namespace_events(client).default_backoff());
    while let Some(item) = events.next().await {
        match item {
            Ok(event) => feed.apply(event),
            Err(error) => warn!(%error, "Namespace watch failed; retrying with backoff"),
        }
    }
}

/// What `serve` runs in cluster mode.
pub struct Cluster {
    pub inventory: Arc<ClusterInventory>,
    pub events: Arc<EventSink>,
}

/// Starts the reflectors, the status writer and the Event writer on the current
/// runtime. `/readyz` waits for `inventory.is_ready()`.
pub fn start(client: Client) -> Cluster {
    let (inventory, policies, namespaces) = ClusterInventory::new();
    tokio::spawn(watch_policies(client.clone(), policies));
    tokio::spawn(watch_namespaces(client.clone(), namespaces));
    tokio::spawn(StatusWriter::new(client.clone(), inventory.clone()).run());
    let (events, writer) = events::channel(client, inventory.clone(), EventLimits::default());
    tokio::spawn(writer.run());
    info!("cluster mode: watching EcrEncryptionPolicies and Namespaces");
    Cluster {
        inventory,
        events: Arc::new(events),
    }
}

/// Only the two reflectors (policies, namespaces), for `audit`: it reads what
/// admission reads and writes neither policy status nor admission Events.
pub fn watch(client: Client) -> Arc<ClusterInventory> {
    let (inventory, policies, namespaces) = ClusterInventory::new();
    tokio::spawn(watch_policies(client.clone(), policies));
    tokio::spawn(watch_namespaces(client, namespaces));
    inventory
}

/// One read of the cluster's policies and namespace labels, for `check`: the same
/// paginated lists the reflectors start with, no watch, no retry.
pub async fn snapshot(client: Client) -> Result<Arc<ClusterInventory>, ClusterError> {
    let (inventory, mut policies, mut namespaces) = ClusterInventory::new();
    let mut events = std::pin::pin!(policy_events(client.clone()));
    while let Some(event) = events
        .try_next()
        .await
        .map_err(ClusterError::ListPolicies)?
    {
        let done = matches!(event, Event::InitDone);
        policies.apply(event);
        if done {
            break;
        }
    }
    let mut events = std::pin::pin!(namespace_events(client));
    while let Some(event) = events
        .try_next()
        .await
        .map_err(ClusterError::ListNamespaces)?
    {
        let done = matches!(event, Event::InitDone);
        namespaces.apply(event);
        if done {
            break;
        }
    }
    Ok(inventory)
}

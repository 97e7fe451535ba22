//! Publishing a cycle's results: one list of ecr-guard's reports, then a
//! server-side apply of each report whose findings changed and a delete of each
//! report whose namespace has nothing left. An unchanged report is not written.

use std::collections::BTreeMap;

use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};

use super::report::{self, API_VERSION, KIND, MANAGED_BY, ReportBody, ReportResult, Timestamp};
use crate::cluster::FIELD_MANAGER;

/// The PolicyReport resource.
pub fn report_resource() -> ApiResource {
    ApiResource {
        group: "wgpolicyk8s.io".into(),
        version: "v1alpha2".into(),
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        plural: "policyreports".into(),
    }
}

/// What one publication did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub applied: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

/// ecr-guard's reports now in the cluster: by namespace, each part by name.
pub type Existing = BTreeMap<String, BTreeMap<String, ReportBody>>;

/// ecr-guard's reports now in the cluster (every part, see [`report::part_name`]).
pub async fn existing(client: Client) -> Result<Existing, kube::Error> {
    let api = Api::<DynamicObject>::all_with(client, &report_resource());
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let mut found = Existing::new();
    for object in list.items {
        let (Some(namespace), Some(name)) = (object.metadata.namespace, object.metadata.name)
        else {
            continue;
        };
        if !report::is_part_name(&name) {
            continue;
        }
        // A report this version cannot read is rewritten, not trusted.
        let body = serde_json::from_value(object.data).unwrap_or_default();
        found.entry(namespace).or_default().insert(name, body);
    }
    Ok(found)
}

/// Makes the cluster's reports say `desired` (results by namespace; a namespace
/// with no results gets no report). `previous` is [`existing`]'s answer. Past
/// [`report::MAX_RESULTS`] a namespace's results are split into parts; parts
/// no longer needed are deleted.
pub async fn publish(
    client: Client,
    previous: &Existing,
    desired: BTreeMap<String, Vec<ReportResult>>,
    now: Timestamp,
) -> Result<Published, kube::Error> {
    let mut done = Published::default();
    let empty = BTreeMap::new();
    let reported: std::collections::BTreeSet<String> = desired
        .iter()
        .filter(|(_, results)| !results.is_empty())
        .map(|(namespace, _)| namespace.clone())
        .collect();
    for (namespace, results) in desired {
        if results.is_empty() {
            continue;
        }
        let old = previous.get(&namespace).unwrap_or(&empty);
        // Every old part's results, so a result moved to another part keeps its timestamp.
        let merged = ReportBody {
            results: old.values().flat_map(|b| b.results.clone()).collect(),
            ..ReportBody::default()
        };
        let parts = report::parts(results, Some(&merged), now);
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &report_resource());
        for (name, body) in &parts {
            if old.get(name) == Some(body) {
                done.unchanged += 1;
                continue;
            }
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(
                name,
                &params,
                &Patch::Apply(body.to_object(&namespace, name)),
            )
            .await?;
            done.applied += 1;
        }
        for name in old.keys() {
            if !parts.iter().any(|(part, _)| part == name) {
                delete(&api, name, &mut done).await?;
            }
        }
    }
    for (namespace, old) in previous {
        if reported.contains(namespace) {
            continue;
        }
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &report_resource());
        for name in old.keys() {
            delete(&api, name, &mut done).await?;
        }
    }
    Ok(done)
}

async fn delete(
    api: &Api<DynamicObject>,
    name: &str,
    done: &mut Published,
) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            done.deleted += 1;
            Ok(())
        }
        // Already gone (the namespace was deleted): nothing to do.
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

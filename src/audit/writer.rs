//! Publishing a cycle's results: one list of ecr-guard's reports, then a
//! server-side apply of each report whose findings changed and a delete of each
//! report whose namespace has nothing left. An unchanged report is not written.

use std::collections::BTreeMap;

use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};

use super::report::{
    API_VERSION, KIND, MANAGED_BY, REPORT_NAME, ReportBody, ReportResult, Timestamp,
};
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

/// ecr-guard's reports now in the cluster, by namespace.
pub async fn existing(client: Client) -> Result<BTreeMap<String, ReportBody>, kube::Error> {
    let api = Api::<DynamicObject>::all_with(client, &report_resource());
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|o| o.metadata.name.as_deref() == Some(REPORT_NAME))
        .filter_map(|o| {
            let namespace = o.metadata.namespace.clone()?;
            // A report this version cannot read is rewritten, not trusted.
            let body = serde_json::from_value(o.data).unwrap_or_default();
            Some((namespace, body))
        })
        .collect())
}

/// Makes the cluster's reports say `desired` (results by namespace; a namespace
/// with no results gets no report). `previous` is [`existing`]'s answer.
pub async fn publish(
    client: Client,
    previous: &BTreeMap<String, ReportBody>,
    desired: BTreeMap<String, Vec<ReportResult>>,
    now: Timestamp,
) -> Result<Published, kube::Error> {
    let mut done = Published::default();
    for (namespace, results) in &desired {
        if results.is_empty() {
            continue;
        }
        let old = previous.get(namespace);
        let body = ReportBody::new(results.clone(), old, now);
        if old == Some(&body) {
            done.unchanged += 1;
            continue;
        }
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &report_resource());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(
            REPORT_NAME,
            &params,
            &Patch::Apply(body.to_object(namespace)),
        )
        .await?;
        done.applied += 1;
    }
    for namespace in previous.keys() {
        if desired.get(namespace).is_some_and(|r| !r.is_empty()) {
            continue;
        }
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &report_resource());
        match api.delete(REPORT_NAME, &DeleteParams::default()).await {
            Ok(_) => done.deleted += 1,
            // Already gone (the namespace was deleted): nothing to do.
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

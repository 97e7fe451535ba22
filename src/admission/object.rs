//! The object under review, as far as ecr-guard reads it: its name and `spec`.
//!
//! The API server sends the whole object — managedFields, labels, annotations,
//! status — several kilobytes per review. Decoding it into a `DynamicObject`
//! (whose `#[serde(flatten)]` buffers the object once more before building a
//! `serde_json::Value` of it) cost more than everything else ecr-guard does for a
//! warm review. This type keeps `metadata.name`, `metadata.generateName` and
//! `spec` (where every kind we judge keeps its pod spec), and skips the rest
//! without building anything. `spec` stays raw JSON text until the workload views
//! read the images out of it: building it as a `serde_json::Value` (and dropping
//! it) cost a fifth of the server's CPU under load.

use std::borrow::Cow;

use kube::core::{ApiResource, DynamicResourceScope, ObjectMeta, Resource};
use serde::Deserialize;
use serde_json::value::RawValue;

/// An admitted object: what [`workload::subjects_in_spec`](super::workload::subjects_in_spec) needs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "ObjectView")]
pub struct ReviewedObject {
    /// Only `name` and `generateName` are kept.
    pub metadata: ObjectMeta,
    /// The object's `spec` as JSON text; `None` when absent or null.
    pub spec: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ObjectView {
    #[serde(default)]
    metadata: Option<MetaView>,
    #[serde(default)]
    spec: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaView {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
}

impl From<ObjectView> for ReviewedObject {
    fn from(view: ObjectView) -> Self {
        let meta = view.metadata.unwrap_or(MetaView {
            name: None,
            generate_name: None,
        });
        Self {
            metadata: ObjectMeta {
                name: meta.name,
                generate_name: meta.generate_name,
                ..ObjectMeta::default()
            },
            spec: view.spec,
        }
    }
}

// `AdmissionRequest<T>` asks for a `Resource`; like `DynamicObject`, the type
// information is carried at run time (unused here: nothing builds API URLs).
impl Resource for ReviewedObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_the_name_and_spec_and_skips_the_rest() {
        let object: ReviewedObject = serde_json::from_str(
            &json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "web-1",
                    "generateName": "web-",
                    "labels": {"app": "web"},
                    "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
                },
                "spec": {"containers": [{"name": "app", "image": "nginx"}]},
                "status": {"phase": "Pending"}
            })
            .to_string(),
        )
        .expect("a Pod decodes");
        assert_eq!(object.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(object.metadata.generate_name.as_deref(), Some("web-"));
        assert!(object.metadata.labels.is_none());
        assert!(object.metadata.managed_fields.is_none());
        assert_eq!(
            object.spec.expect("spec kept").get(),
            r#"{"containers":[{"image":"nginx","name":"app"}]}"#
        );
    }

    #[test]
    fn an_object_without_metadata_or_spec_decodes() {
        let object: ReviewedObject =
            serde_json::from_str(r#"{"kind": "Pod", "spec": null}"#).expect("decodes");
        assert!(object.metadata.name.is_none());
        assert!(object.spec.is_none());
    }
}

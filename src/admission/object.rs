//! The object under review, as far as ecr-guard reads it: its name and `spec`.
//!
//! The API server sends the whole object — managedFields, labels, annotations,
//! status — several kilobytes per review. Decoding it into a `DynamicObject`
//! (whose `#[serde(flatten)]` buffers the object once more before building a
//! `serde_json::Value` of it) cost more than everything else ecr-guard does for a
//! warm review. This type keeps `metadata.name`, `metadata.generateName` and the
//! image fields of `spec`, and skips the rest without building anything.
//!
//! The image fields are read in the same pass as the review ([`OnePass`]).
//! Keeping `spec` as JSON text to read it again per kind cost ~5% of the
//! server's CPU under load, but that second read is what gives an unreadable
//! pod spec its error; so when the one-pass read fails, the review is decoded
//! again keeping the text ([`KeepRaw`]), and answered exactly as before.

use std::borrow::Cow;
use std::marker::PhantomData;

use kube::core::{ApiResource, DynamicResourceScope, ObjectMeta, Resource};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::policy::ImageUse;
use crate::workload::{self, SpecView, WorkloadError, WorkloadKind};

/// An admitted object: its name and the images of its `spec`.
///
/// `How` is only how it is decoded: in one pass by default ([`OnePass`]), or
/// keeping `spec` as text ([`KeepRaw`]) when the one-pass view fails (see
/// `review::decode`).
#[derive(Debug, Default)]
pub struct ReviewedObject<How = OnePass> {
    /// Only `name` and `generateName` are kept.
    pub metadata: ObjectMeta,
    pub spec: ObjectSpec,
    how: PhantomData<How>,
}

/// Decode `spec` with [`SpecView`], in the same pass as the review.
#[derive(Debug, Default)]
pub struct OnePass;

/// Decode `spec` as JSON text, read later by the view of the object's kind.
#[derive(Debug, Default)]
pub struct KeepRaw;

/// The object's `spec`, as far as it was read with the review.
#[derive(Debug, Default)]
pub enum ObjectSpec {
    /// Absent or null.
    #[default]
    Missing,
    /// The image fields of every kind, read in one pass.
    Read(Box<SpecView>),
    /// The JSON text, for the per-kind view and its errors.
    Raw(Box<RawValue>),
}

impl ObjectSpec {
    /// The images an object of `kind` with this spec would run.
    pub fn image_uses(self, kind: WorkloadKind) -> Result<Vec<ImageUse>, WorkloadError> {
        match self {
            Self::Missing => workload::image_uses_in_spec(kind, None),
            Self::Read(view) => view.image_uses(kind),
            Self::Raw(raw) => workload::image_uses_in_spec(kind, Some(&raw)),
        }
    }
}

impl ReviewedObject<KeepRaw> {
    /// The same object, typed as the default kind of `ReviewedObject`.
    pub fn decoded(self) -> ReviewedObject {
        ReviewedObject {
            metadata: self.metadata,
            spec: self.spec,
            how: PhantomData,
        }
    }
}

#[derive(Deserialize)]
struct ObjectView<S> {
    #[serde(default)]
    metadata: Option<MetaView>,
    // A missing `Option` field is `None` without `default`, which would ask S: Default.
    spec: Option<S>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaView {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
}

impl<S> ObjectView<S> {
    fn into_object<How>(self, spec: impl FnOnce(S) -> ObjectSpec) -> ReviewedObject<How> {
        let (name, generate_name) = self
            .metadata
            .map_or((None, None), |meta| (meta.name, meta.generate_name));
        ReviewedObject {
            metadata: ObjectMeta {
                name,
                generate_name,
                ..ObjectMeta::default()
            },
            spec: self.spec.map_or(ObjectSpec::Missing, spec),
            how: PhantomData,
        }
    }
}

impl<'de> Deserialize<'de> for ReviewedObject<OnePass> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ObjectView::<Box<SpecView>>::deserialize(deserializer)
            .map(|v| v.into_object(ObjectSpec::Read))
    }
}

impl<'de> Deserialize<'de> for ReviewedObject<KeepRaw> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ObjectView::<Box<RawValue>>::deserialize(deserializer)
            .map(|v| v.into_object(ObjectSpec::Raw))
    }
}

// `AdmissionRequest<T>` asks for a `Resource`; like `DynamicObject`, the type
// information is carried at run time (unused here: nothing builds API URLs).
impl<How> Resource for ReviewedObject<How> {
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
    use crate::policy::Slot;
    use serde_json::json;

    fn pod() -> String {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-1",
                "generateName": "web-",
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Pending"}
        })
        .to_string()
    }

    fn images(spec: ObjectSpec, kind: WorkloadKind) -> Vec<(Slot, String, String)> {
        spec.image_uses(kind)
            .expect("readable")
            .into_iter()
            .map(|s| (s.slot, s.name, s.reference))
            .collect()
    }

    #[test]
    fn keeps_the_name_and_the_images_and_skips_the_rest() {
        let object: ReviewedObject = serde_json::from_str(&pod()).expect("a Pod decodes");
        assert_eq!(object.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(object.metadata.generate_name.as_deref(), Some("web-"));
        assert!(object.metadata.labels.is_none());
        assert!(object.metadata.managed_fields.is_none());
        assert!(matches!(object.spec, ObjectSpec::Read(_)));
        assert_eq!(
            images(object.spec, WorkloadKind::Pod),
            vec![(Slot::Container, "app".into(), "nginx".into())]
        );
    }

    #[test]
    fn keep_raw_keeps_the_spec_text() {
        let object: ReviewedObject<KeepRaw> = serde_json::from_str(&pod()).expect("decodes");
        let object = object.decoded();
        let ObjectSpec::Raw(raw) = &object.spec else {
            panic!("{:?}", object.spec)
        };
        assert_eq!(
            raw.get(),
            r#"{"containers":[{"image":"nginx","name":"app","ports":[{"containerPort":80}]}]}"#
        );
        assert_eq!(object.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(
            images(object.spec, WorkloadKind::Pod),
            vec![(Slot::Container, "app".into(), "nginx".into())]
        );
    }

    #[test]
    fn an_object_without_metadata_or_spec_decodes() {
        for body in [r#"{"kind": "Pod", "spec": null}"#, r#"{"kind": "Pod"}"#] {
            let object: ReviewedObject = serde_json::from_str(body).expect("decodes");
            assert!(object.metadata.name.is_none());
            assert!(matches!(object.spec, ObjectSpec::Missing), "{body}");
        }
    }

    #[test]
    fn a_spec_the_one_pass_view_cannot_read_fails_only_that_view() {
        // A Pod has no `template`: its per-kind view never reads one.
        let body = r#"{"spec": {"template": 5, "containers": [{"name": "a", "image": "x"}]}}"#;
        assert!(serde_json::from_str::<ReviewedObject>(body).is_err());
        let object: ReviewedObject<KeepRaw> = serde_json::from_str(body).expect("decodes");
        assert_eq!(
            images(object.decoded().spec, WorkloadKind::Pod),
            vec![(Slot::Container, "a".into(), "x".into())]
        );
    }
}

//! The parts of an AdmissionReview that ecr-guard reads, borrowed from the body.
//!
//! kube's `AdmissionRequest` owns every field the API server sends: three
//! group/version/kind triples, `userInfo` with its groups, `options` as a
//! `serde_json::Value`, all copied into `String`s and dropped again: ~10% of a
//! warm review's instructions (BENCHMARKS.md, item 21). This view keeps what a
//! verdict needs, as `Cow`s that borrow from the body when the JSON string has
//! no escapes, and skips the rest. `review::decode` falls back to kube's types
//! whenever this view cannot read a body, so a body that is not a review gets
//! kube's error, word for word, as before.

use std::borrow::Cow;

use kube::core::admission::{AdmissionRequest, Operation};
use serde::{Deserialize, Deserializer};

use super::object::{KeepRaw, ReviewedObject};

/// `{"apiVersion", "kind", "request"}`; `response` and anything else skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReviewView<'a> {
    #[serde(borrow)]
    pub api_version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub request: Option<Request<'a>>,
}

/// One admission request, as far as ecr-guard reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// The kind of the object (its version is not needed).
    #[serde(borrow)]
    pub kind: GroupKind<'a>,
    #[serde(borrow, default, deserialize_with = "optional_str")]
    pub sub_resource: Option<Cow<'a, str>>,
    /// Empty for objects named by the API server (`generateName`).
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "optional_str")]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    #[serde(default)]
    pub object: Option<ReviewedObject>,
    #[serde(default)]
    pub old_object: Option<ReviewedObject>,
    /// The request will not be persisted (`kubectl --dry-run=server`).
    #[serde(default)]
    pub dry_run: bool,
}

/// The `group` and `kind` of a request's `kind` (a GroupVersionKind).
#[derive(Debug, Deserialize)]
pub struct GroupKind<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// serde borrows a `Cow<str>` field from the input, but not one inside an `Option`.
fn optional_str<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text>::deserialize(deserializer)?.map(|text| text.0))
}

impl From<AdmissionRequest<ReviewedObject<KeepRaw>>> for Request<'static> {
    /// A request kube's types read where [`Request`]'s one-pass view could not
    /// (the objects' specs kept as text, for the per-kind views).
    fn from(request: AdmissionRequest<ReviewedObject<KeepRaw>>) -> Self {
        Self {
            uid: request.uid.into(),
            kind: GroupKind {
                group: request.kind.group.into(),
                kind: request.kind.kind.into(),
            },
            sub_resource: request.sub_resource.map(Cow::Owned),
            name: request.name.into(),
            namespace: request.namespace.map(Cow::Owned),
            operation: request.operation,
            object: request.object.map(ReviewedObject::decoded),
            old_object: request.old_object.map(ReviewedObject::decoded),
            dry_run: request.dry_run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_owns_escaped_ones() {
        let body = r#"{
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "web-\u0031", "namespace": "shop", "operation": "UPDATE",
                "subResource": "ephemeralcontainers",
                "userInfo": {"username": "alice", "groups": ["dev"]},
                "options": {"kind": "CreateOptions"}
            }
        }"#;
        let review: ReviewView = serde_json::from_str(body).expect("reads");
        let request = review.request.expect("a request");
        assert!(matches!(request.uid, Cow::Borrowed("u-1")));
        assert!(matches!(request.namespace, Some(Cow::Borrowed("shop"))));
        assert!(matches!(&request.name, Cow::Owned(name) if name == "web-1"));
        assert_eq!(request.kind.kind, "Pod");
        assert_eq!(request.operation, Operation::Update);
        assert!(matches!(
            request.sub_resource,
            Some(Cow::Borrowed("ephemeralcontainers"))
        ));
        assert!(!request.dry_run);
        assert!(request.object.is_none());
    }
}

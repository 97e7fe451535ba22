//! AdmissionReview body → [`Review`]: what a verdict needs, borrowed from the body.
//!
//! A [`Review`] is one admission request as ecr-guard reads it (kube's own
//! `AdmissionReview` and `AdmissionRequest` keep their names and are not used
//! here). kube's types own every field the API server sends — three
//! group/version/kind triples, `userInfo`, `options`, the whole object with its
//! managedFields — all copied into `String`s and dropped again. This reader keeps
//! uid, kind, operation, subresource, namespace, name (with the object's
//! `generateName`), dryRun and the images of the new and old objects, as `Cow`s
//! that borrow from the body when the JSON string has no escapes, and skips the
//! rest without building anything.
//!
//! One pass: the API server sends the request's `kind` before `object` and
//! `oldObject` (Go's field order), so each object's pod spec is read in the same
//! pass by the view of that kind only ([`workload::SpecSeed`]). An object that
//! comes before `kind` (other clients) is kept as borrowed text and read with
//! the same view once the kind is known.
//!
//! A pod spec that view cannot read ends the pass. The body is then read once
//! more with each spec read apart from its text ([`workload::image_uses_in_spec`]),
//! so that the review still gets its answer (400, with the per-kind view's error)
//! and a body broken elsewhere still gets its [`BadReview`]. Only such bodies are
//! read twice.
//!
//! Only JSON objects are read as objects, as the API server sends them (serde's
//! derived readers would also take a list of the fields in order).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use kube::core::admission::Operation;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::policy::ImageUse;
use crate::workload::{self, SpecSeed, WorkloadError, WorkloadKind};

/// The only AdmissionReview version ecr-guard speaks.
pub(super) const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body could not be read as an AdmissionReview.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReview {
    #[error("request body is empty; expected an AdmissionReview ({API_VERSION})")]
    Empty,
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("request body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("unsupported AdmissionReview version {0:?}; ecr-guard speaks {API_VERSION}")]
    WrongVersion(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// One admission request, as far as a verdict needs it.
#[derive(Debug)]
pub struct Review<'a> {
    pub uid: Cow<'a, str>,
    /// The kind of the object (its version is not needed).
    pub kind: GroupKind<'a>,
    /// `kind`, if it is a kind ecr-guard judges.
    pub workload: Option<WorkloadKind>,
    pub sub_resource: Option<Cow<'a, str>>,
    /// Empty for objects named by the API server (`generateName`).
    pub name: Cow<'a, str>,
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    pub object: Option<ReviewedObject<'a>>,
    pub old_object: Option<ReviewedObject<'a>>,
    /// The request will not be persisted (`kubectl --dry-run=server`).
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

/// An object under review: its name, `generateName` and the images of its pod spec.
#[derive(Debug)]
pub struct ReviewedObject<'a> {
    pub name: Option<Cow<'a, str>>,
    pub generate_name: Option<Cow<'a, str>>,
    /// The images of its pod spec in spec order (none for a kind ecr-guard does
    /// not judge), or why they cannot be read.
    pub images: Result<Vec<ImageUse>, WorkloadError>,
}

/// Body → review, with an error that says what is wrong.
pub fn decode(body: &[u8]) -> Result<Review<'_>, BadReview> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadReview::Empty);
    }
    // serde_json checks UTF-8 string by string when it reads bytes, ~9% of a
    // warm review's instructions; checking the whole body first is far cheaper.
    let text = std::str::from_utf8(body).map_err(|e| not_utf8(body, e))?;
    let one_pass = Pass::default();
    let read = match read(text, &one_pass) {
        Err(_) if one_pass.spec_failed.get() => read(
            text,
            &Pass {
                apart: true,
                ..Pass::default()
            },
        ),
        read => read,
    };
    let envelope = read.map_err(bad_json)?;
    if envelope.kind != "AdmissionReview" {
        return Err(BadReview::NotAReview(format!(
            "kind is {:?}",
            envelope.kind
        )));
    }
    if envelope.api_version != API_VERSION {
        return Err(BadReview::WrongVersion(envelope.api_version.into_owned()));
    }
    envelope.request.ok_or(BadReview::NoRequest)
}

/// A body that is not UTF-8 is no review. Reading it as a `Value` reads every
/// string, so serde_json's own error names the first bad one.
fn not_utf8(body: &[u8], error: std::str::Utf8Error) -> BadReview {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => bad_json(e),
        Ok(_) => BadReview::NotJson(error.to_string()),
    }
}

fn bad_json(e: serde_json::Error) -> BadReview {
    if e.is_syntax() || e.is_eof() {
        BadReview::NotJson(e.to_string())
    } else {
        BadReview::NotAReview(e.to_string())
    }
}

fn read<'a>(text: &'a str, pass: &Pass) -> serde_json::Result<Envelope<'a>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let envelope = EnvelopeSeed(pass).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(envelope)
}

/// How one read of a body goes.
#[derive(Default)]
struct Pass {
    /// Read each pod spec apart, from its text (the second read).
    apart: bool,
    /// Set when a pod spec read in the same pass failed.
    spec_failed: Cell<bool>,
}

/// `{"apiVersion", "kind", "request"}`; `response` and anything else skipped.
struct Envelope<'a> {
    api_version: Cow<'a, str>,
    kind: Cow<'a, str>,
    request: Option<Review<'a>>,
}

/// A JSON string, borrowed when it has no escapes (serde borrows a `Cow<str>`
/// only as a field marked `borrow`).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The object's `metadata`, as far as it is read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
    #[serde(borrow, default)]
    generate_name: Option<Text<'a>>,
}

struct EnvelopeSeed<'p>(&'p Pass);

const ENVELOPE_FIELDS: &[&str] = &["apiVersion", "kind", "request"];

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_struct("AdmissionReview", ENVELOPE_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut api_version, mut kind, mut request) = (None, None, None);
        while let Some(field) = map.next_key_seed(Field(ENVELOPE_FIELDS))? {
            match field {
                Some(0) => {
                    absent(&api_version, "apiVersion")?;
                    api_version = Some(map.next_value::<Text>()?.0);
                }
                Some(1) => {
                    absent(&kind, "kind")?;
                    kind = Some(map.next_value::<Text>()?.0);
                }
                Some(_) => {
                    absent(&request, "request")?;
                    request = Some(map.next_value_seed(Nullable(RequestSeed(self.0)))?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope {
            api_version: api_version.ok_or_else(|| de::Error::missing_field("apiVersion"))?,
            kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
            request: request.flatten(),
        })
    }
}

struct RequestSeed<'p>(&'p Pass);

/// The request's fields ecr-guard reads, in the order the API server sends them.
const REQUEST_FIELDS: &[&str] = &[
    "uid",
    "kind",
    "subResource",
    "name",
    "namespace",
    "operation",
    "object",
    "oldObject",
    "dryRun",
];

/// An object as read in the request: at once, or (before `kind`) as text.
enum Object<'a> {
    Read(ReviewedObject<'a>),
    Later(&'a RawValue),
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Review<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_struct("AdmissionRequest", REQUEST_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Review<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct AdmissionRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut uid = None;
        let mut kind: Option<GroupKind> = None;
        let mut workload = None;
        let mut sub_resource: Option<Option<Text>> = None;
        let mut name: Option<Text> = None;
        let mut namespace: Option<Option<Text>> = None;
        let mut operation = None;
        let mut object: Option<Option<Object>> = None;
        let mut old_object: Option<Option<Object>> = None;
        let mut dry_run = None;
        while let Some(field) = map.next_key_seed(Field(REQUEST_FIELDS))? {
            match field {
                Some(0) => {
                    absent(&uid, "uid")?;
                    uid = Some(map.next_value::<Text>()?.0);
                }
                Some(1) => {
                    absent(&kind, "kind")?;
                    let read: GroupKind = map.next_value()?;
                    workload = WorkloadKind::from_group_kind(&read.group, &read.kind);
                    kind = Some(read);
                }
                Some(2) => {
                    absent(&sub_resource, "subResource")?;
                    sub_resource = Some(map.next_value()?);
                }
                Some(3) => {
                    absent(&name, "name")?;
                    name = Some(map.next_value()?);
                }
                Some(4) => {
                    absent(&namespace, "namespace")?;
                    namespace = Some(map.next_value()?);
                }
                Some(5) => {
                    absent(&operation, "operation")?;
                    operation = Some(map.next_value::<Operation>()?);
                }
                Some(i @ (6 | 7)) => {
                    let slot = if i == 6 { &mut object } else { &mut old_object };
                    absent(slot, REQUEST_FIELDS[i])?;
                    *slot = Some(if kind.is_some() {
                        let seed = ObjectSeed {
                            workload,
                            pass: self.0,
                        };
                        map.next_value_seed(Nullable(seed))?.map(Object::Read)
                    } else {
                        map.next_value::<Option<&RawValue>>()?.map(Object::Later)
                    });
                }
                Some(_) => {
                    absent(&dry_run, "dryRun")?;
                    dry_run = Some(map.next_value::<bool>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let uid = uid.ok_or_else(|| de::Error::missing_field("uid"))?;
        let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
        let operation = operation.ok_or_else(|| de::Error::missing_field("operation"))?;
        let seed = ObjectSeed {
            workload,
            pass: self.0,
        };
        Ok(Review {
            uid,
            kind,
            workload,
            sub_resource: sub_resource.flatten().map(|text| text.0),
            name: name.map_or(Cow::Borrowed(""), |text| text.0),
            namespace: namespace.flatten().map(|text| text.0),
            operation,
            object: object.flatten().map(|o| seed.read_later(o)).transpose()?,
            old_object: old_object
                .flatten()
                .map(|o| seed.read_later(o))
                .transpose()?,
            dry_run: dry_run.unwrap_or(false),
        })
    }
}

/// A field name's index in a list of names (`None` for any other name),
/// without keeping the name: what serde derives for each struct.
struct Field(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Field {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for Field {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|known| *known == name))
    }

    fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|known| known.as_bytes() == name))
    }
}

/// serde's derived readers refuse a field given twice; so do these.
fn absent<T, E: de::Error>(slot: &Option<T>, field: &'static str) -> Result<(), E> {
    match slot {
        Some(_) => Err(E::duplicate_field(field)),
        None => Ok(()),
    }
}

/// `null` or what `S` reads.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// Reads an object of a known kind (`workload`: the judged kind, if it is one).
#[derive(Clone, Copy)]
struct ObjectSeed<'p> {
    workload: Option<WorkloadKind>,
    pass: &'p Pass,
}

const OBJECT_FIELDS: &[&str] = &["metadata", "spec"];

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ReviewedObject<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_struct("object", OBJECT_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ReviewedObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut metadata: Option<Option<Meta>> = None;
        let mut images = None;
        while let Some(field) = map.next_key_seed(Field(OBJECT_FIELDS))? {
            match field {
                Some(0) => {
                    absent(&metadata, "metadata")?;
                    metadata = Some(map.next_value()?);
                }
                Some(_) => {
                    absent(&images, "spec")?;
                    images = Some(self.spec(&mut map)?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let images = match (images, self.workload) {
            (Some(images), _) => images,
            (None, Some(kind)) => Err(workload::missing_pod_spec(kind)),
            (None, None) => Ok(Vec::new()),
        };
        let (name, generate_name) = metadata
            .flatten()
            .map_or((None, None), |meta| (meta.name, meta.generate_name));
        Ok(ReviewedObject {
            name: name.map(|text| text.0),
            generate_name: generate_name.map(|text| text.0),
            images,
        })
    }
}

impl ObjectSeed<'_> {
    /// The images of the `spec` that is the map's next value.
    fn spec<'de, A: MapAccess<'de>>(
        self,
        map: &mut A,
    ) -> Result<Result<Vec<ImageUse>, WorkloadError>, A::Error> {
        let Some(kind) = self.workload else {
            map.next_value::<IgnoredAny>()?;
            return Ok(Ok(Vec::new()));
        };
        if self.pass.apart {
            let raw: Option<&RawValue> = map.next_value()?;
            return Ok(workload::image_uses_in_spec(kind, raw));
        }
        match map.next_value_seed(Nullable(SpecSeed(kind))) {
            Ok(images) => Ok(images
                .flatten()
                .ok_or_else(|| workload::missing_pod_spec(kind))),
            Err(e) => {
                self.pass.spec_failed.set(true);
                Err(e)
            }
        }
    }

    /// An object kept as text until the kind was known, read now.
    fn read_later<'de, E: de::Error>(self, object: Object<'de>) -> Result<ReviewedObject<'de>, E> {
        match object {
            Object::Read(object) => Ok(object),
            Object::Later(raw) => self
                .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
                .map_err(E::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Slot;
    use serde_json::{Value, json};

    fn pod_review(spec: Value) -> Vec<u8> {
        json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "userInfo": {},
                "object": {"metadata": {"name": "p"}, "spec": spec}
            }
        })
        .to_string()
        .into_bytes()
    }

    fn images(images: Result<Vec<ImageUse>, WorkloadError>) -> Vec<(Slot, String, String)> {
        images
            .expect("readable")
            .into_iter()
            .map(|s| (s.slot, s.name, s.reference))
            .collect()
    }

    #[test]
    fn a_readable_spec_is_read_in_one_pass() {
        let body = pod_review(json!({"containers": [{"name": "a", "image": "x"}]}));
        let pass = Pass::default();
        let envelope = read(std::str::from_utf8(&body).unwrap(), &pass).expect("decodes");
        assert!(!pass.spec_failed.get());
        let object = envelope.request.expect("a request").object.expect("object");
        assert_eq!(
            images(object.images),
            vec![(Slot::Container, "a".into(), "x".into())]
        );
    }

    #[test]
    fn a_spec_the_view_of_its_kind_cannot_read_is_read_again_apart() {
        // A Pod has no `template`: its view never reads one.
        let body = pod_review(json!({"template": 5, "containers": [{"name": "a", "image": "x"}]}));
        let object = decode(&body).expect("decodes").object.expect("object");
        assert_eq!(
            images(object.images),
            vec![(Slot::Container, "a".into(), "x".into())]
        );
        // Wrong for the Pod view itself: the review is still read, the spec's
        // error kept for the answer.
        let body = pod_review(json!({"containers": "nginx"}));
        let pass = Pass::default();
        assert!(read(std::str::from_utf8(&body).unwrap(), &pass).is_err());
        assert!(pass.spec_failed.get());
        let request = decode(&body).expect("decodes");
        assert_eq!(request.uid, "u-1");
        let object = request.object.expect("object");
        assert_eq!(object.name.as_deref(), Some("p"));
        let err = object.images.unwrap_err();
        assert!(
            matches!(err, WorkloadError::ReadPodSpec { kind: "Pod", .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "failed to read the pod spec of Pod: invalid type: string \"nginx\", expected a sequence at line 1 column 21"
        );
    }

    #[test]
    fn a_body_that_is_not_a_review_is_refused_after_both_reads() {
        let mut review: Value = serde_json::from_slice(&pod_review(json!({}))).unwrap();
        review["request"]["uid"] = json!(5);
        let err = decode(review.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, BadReview::NotAReview(_)), "{err:?}");
        assert!(matches!(decode(b"{\"kind\": "), Err(BadReview::NotJson(_))));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_where_the_view_would_skip_it() {
        let mut review: Value = serde_json::from_slice(&pod_review(json!({}))).unwrap();
        review["request"]["userInfo"]["username"] = json!("mallory");
        let mut body = review.to_string().into_bytes();
        let at = body.windows(7).position(|w| w == b"mallory").unwrap() + 4;
        body.insert(at, 0xff);
        let err = decode(&body).unwrap_err();
        assert!(matches!(err, BadReview::NotJson(_)), "{err:?}");
    }

    #[test]
    fn request_fields_the_view_does_not_read_are_not_required() {
        let mut review: Value = serde_json::from_slice(&pod_review(json!({}))).unwrap();
        let request = review["request"].as_object_mut().unwrap();
        request.remove("userInfo");
        request.remove("resource");
        let body = review.to_string();
        let request = decode(body.as_bytes()).expect("decodes");
        assert_eq!(request.uid, "u-1");
    }

    #[test]
    fn a_body_that_is_not_utf8_gets_serde_jsons_error() {
        let mut body = pod_review(json!({"containers": [{"name": "a", "image": "x"}]}));
        let at = body.windows(3).position(|w| w == b"\"x\"").unwrap() + 1;
        body[at] = 0xff;
        let err = decode(&body).unwrap_err();
        let BadReview::NotJson(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("invalid unicode code point"), "{message}");
    }

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
        let request = decode(body.as_bytes()).expect("reads");
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

    /// `text` read as an object of `workload`'s kind, in one pass or apart.
    fn object(
        text: &str,
        workload: Option<WorkloadKind>,
        apart: bool,
    ) -> serde_json::Result<ReviewedObject<'_>> {
        let pass = Pass {
            apart,
            ..Pass::default()
        };
        ObjectSeed {
            workload,
            pass: &pass,
        }
        .deserialize(&mut serde_json::Deserializer::from_str(text))
    }

    #[test]
    fn keeps_the_name_and_the_images_and_skips_the_rest() {
        let pod = pod();
        for apart in [false, true] {
            let object = object(&pod, Some(WorkloadKind::Pod), apart).expect("a Pod decodes");
            assert_eq!(object.name.as_deref(), Some("web-1"));
            assert_eq!(object.generate_name.as_deref(), Some("web-"));
            assert_eq!(
                images(object.images),
                vec![(Slot::Container, "app".into(), "nginx".into())]
            );
        }
    }

    #[test]
    fn an_object_without_metadata_or_spec_decodes() {
        for body in [r#"{"kind": "Pod", "spec": null}"#, r#"{"kind": "Pod"}"#] {
            for apart in [false, true] {
                let object = object(body, Some(WorkloadKind::Pod), apart).expect("decodes");
                assert!(object.name.is_none());
                assert!(
                    matches!(object.images, Err(WorkloadError::MissingPodSpec { .. })),
                    "{body}"
                );
            }
        }
    }

    #[test]
    fn the_spec_of_a_kind_not_judged_is_not_read() {
        let body = r#"{"metadata": {"name": "c"}, "spec": {"containers": "nginx"}}"#;
        let object = object(body, None, false).expect("decodes");
        assert_eq!(object.name.as_deref(), Some("c"));
        assert!(object.images.expect("nothing to read").is_empty());
    }

    #[test]
    fn an_object_before_the_kind_is_read_once_the_kind_is_known() {
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "request": {
                "object": {"metadata": {"generateName": "web-"}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}},
                "uid": "u-2",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "operation": "CREATE"
            }
        })
        .to_string();
        let request = decode(body.as_bytes()).expect("decodes");
        assert_eq!(request.workload, Some(WorkloadKind::Deployment));
        let object = request.object.expect("object");
        assert_eq!(object.generate_name.as_deref(), Some("web-"));
        assert_eq!(
            images(object.images),
            vec![(Slot::Container, "a".into(), "x".into())]
        );
    }

    #[test]
    fn an_unreadable_spec_before_the_kind_gets_the_error_of_its_kind() {
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "request": {
                "object": {"spec": {"containers": "nginx"}},
                "uid": "u-3",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE"
            }
        })
        .to_string();
        let request = decode(body.as_bytes()).expect("decodes");
        assert_eq!(request.uid, "u-3");
        let err = request.object.expect("object").images.unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to read the pod spec of Pod: invalid type: string \"nginx\", expected a sequence at line 1 column 21"
        );
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let body = pod_review(json!({"containers": []}));
        let text = String::from_utf8(body).unwrap();
        let twice = text.replacen("\"uid\":\"u-1\"", "\"uid\":\"u-1\",\"uid\":\"u-2\"", 1);
        assert_ne!(twice, text);
        let err = decode(twice.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, BadReview::NotAReview(m) if m.contains("duplicate field `uid`")),
            "{err:?}"
        );
    }
}

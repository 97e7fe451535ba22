//! Pod specs of every kind we judge → the images they use.
//!
//! Only the image fields are read, through small serde views of each kind's path
//! to its pod spec: a full typed decode (k8s-openapi's Pod, Deployment, …) would
//! cost more per review and would reject objects over fields we never look at.
//! The same per-kind views read a `serde_json::Value` (manifests given to
//! `check`), raw JSON text, and (through [`SpecSeed`]) an object's `spec` in
//! the same pass as the AdmissionReview around it.

use serde::de::DeserializeSeed;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::policy::{ImageUse, Slot};

/// The kinds whose pod specs we judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    ReplicationController,
}

impl WorkloadKind {
    /// From an API group and kind; `None` for anything we do not judge.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        Some(match (group, kind) {
            ("", "Pod") => Self::Pod,
            ("", "ReplicationController") => Self::ReplicationController,
            ("apps", "Deployment") => Self::Deployment,
            ("apps", "StatefulSet") => Self::StatefulSet,
            ("apps", "DaemonSet") => Self::DaemonSet,
            ("apps", "ReplicaSet") => Self::ReplicaSet,
            ("batch", "Job") => Self::Job,
            ("batch", "CronJob") => Self::CronJob,
            _ => return None,
        })
    }

    /// From a manifest's `apiVersion` (`apps/v1`, `v1`) and `kind`.
    pub fn from_api_version_kind(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Self::from_group_kind(group, kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::ReplicationController => "ReplicationController",
        }
    }

    /// Where the pod spec sits in an object of this kind.
    fn pod_spec_path(self) -> &'static str {
        match self {
            Self::Pod => "spec",
            Self::CronJob => "spec.jobTemplate.spec.template.spec",
            _ => "spec.template.spec",
        }
    }

    /// The pod spec inside this kind's `spec`; `None` when a step of the path is
    /// missing or null.
    fn pod_spec<'de, D: Deserializer<'de>>(self, spec: D) -> Result<Option<PodSpecView>, D::Error> {
        Ok(match self {
            Self::Pod => Some(PodSpecView::deserialize(spec)?),
            Self::CronJob => CronJobSpecView::deserialize(spec)?
                .job_template
                .and_then(|job| job.spec)
                .and_then(|job| job.template)
                .and_then(|template| template.spec),
            _ => TemplatedSpecView::deserialize(spec)?
                .template
                .and_then(|template| template.spec),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadError {
    #[error("{kind} has no pod spec at .{path}")]
    MissingPodSpec { kind: &'static str, path: String },
    #[error("failed to read the pod spec of {kind}: {reason}")]
    ReadPodSpec { kind: &'static str, reason: String },
}

/// `spec` of Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and
/// ReplicationController, and `spec.jobTemplate.spec` of a CronJob.
#[derive(Debug, Deserialize)]
struct TemplatedSpecView {
    #[serde(default)]
    template: Option<PodTemplateView>,
}

#[derive(Debug, Deserialize)]
struct PodTemplateView {
    #[serde(default)]
    spec: Option<PodSpecView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpecView {
    #[serde(default)]
    job_template: Option<JobTemplateView>,
}

#[derive(Debug, Deserialize)]
struct JobTemplateView {
    #[serde(default)]
    spec: Option<TemplatedSpecView>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpecView {
    #[serde(default, deserialize_with = "null_as_default")]
    containers: Vec<ContainerView>,
    #[serde(default, deserialize_with = "null_as_default")]
    init_containers: Vec<ContainerView>,
    #[serde(default, deserialize_with = "null_as_default")]
    ephemeral_containers: Vec<ContainerView>,
    #[serde(default, deserialize_with = "null_as_default")]
    volumes: Vec<VolumeView>,
}

#[derive(Debug, Deserialize)]
struct ContainerView {
    #[serde(default)]
    name: String,
    // A missing image is judged as an empty reference (an invalid image), not skipped.
    #[serde(default)]
    image: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VolumeView {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Option<ImageVolumeView>,
}

#[derive(Debug, Deserialize)]
struct ImageVolumeView {
    #[serde(default)]
    reference: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Every image an object of `kind` would run, in spec order.
pub fn image_uses(kind: WorkloadKind, object: &Value) -> Result<Vec<ImageUse>, WorkloadError> {
    read(kind, object.get("spec").filter(|spec| !spec.is_null()))
}

/// [`image_uses`] given only the object's raw `spec` (`None` when it has none):
/// what admission decodes of an object.
pub fn image_uses_in_spec(
    kind: WorkloadKind,
    spec: Option<&RawValue>,
) -> Result<Vec<ImageUse>, WorkloadError> {
    match spec {
        Some(raw) => read(
            kind,
            Some(&mut serde_json::Deserializer::from_str(raw.get())),
        ),
        None => read(kind, None::<&Value>),
    }
}

/// Reads the pod spec of `kind` out of an object's `spec` while the review
/// around it is read, in the same pass: the images (as [`image_uses`] would
/// return them), or `None` when a step of the path to the pod spec is missing
/// or null ([`missing_pod_spec`]). A spec the view cannot read fails with the
/// deserializer's error, which ends the whole read: whoever needs
/// [`WorkloadError::ReadPodSpec`] instead reads the spec apart
/// ([`image_uses_in_spec`]).
#[derive(Clone, Copy, Debug)]
pub struct SpecSeed(pub WorkloadKind);

impl<'de> DeserializeSeed<'de> for SpecSeed {
    type Value = Option<Vec<ImageUse>>;

    fn deserialize<D: Deserializer<'de>>(self, spec: D) -> Result<Self::Value, D::Error> {
        Ok(self.0.pod_spec(spec)?.map(|view| from_view(view, self.0)))
    }
}

fn read<'de, D: Deserializer<'de>>(
    kind: WorkloadKind,
    spec: Option<D>,
) -> Result<Vec<ImageUse>, WorkloadError> {
    let missing = || missing_pod_spec(kind);
    let spec = spec.ok_or_else(missing)?;
    let view = kind
        .pod_spec(spec)
        .map_err(|e| WorkloadError::ReadPodSpec {
            kind: kind.as_str(),
            reason: e.to_string(),
        })?
        .ok_or_else(missing)?;
    Ok(from_view(view, kind))
}

/// The error for an object of `kind` whose pod spec is absent.
pub fn missing_pod_spec(kind: WorkloadKind) -> WorkloadError {
    WorkloadError::MissingPodSpec {
        kind: kind.as_str(),
        path: kind.pod_spec_path().to_string(),
    }
}

/// Whether `reference` is a placeholder that Kubernetes accepts in a pod
/// *template* but never in a Pod: blank (empty or only whitespace). The API
/// server's validation (`validateContainersOnlyForPod`) refuses leading or
/// trailing whitespace in a Pod's images only; in a template `image: " "` is a
/// token that image-change triggers (OpenShift's, among others) replace before
/// any Pod exists, and an image volume's `reference` is optional there "to
/// allow higher level config management to default or override" it. An empty
/// container image in a template is refused by the API server itself
/// (`image: Required value`) before any webhook is called, so reading it as a
/// placeholder too admits nothing Kubernetes would not.
fn is_placeholder(reference: &str) -> bool {
    reference.trim().is_empty()
}

/// The image uses of one pod spec of `kind`, in spec order: init containers,
/// containers, ephemeral containers, then image volumes. In a template (every
/// kind but Pod) a blank image is a placeholder with nothing to judge, and is
/// left out; in a Pod it is kept and judged as an invalid image (fail closed).
fn from_view(view: PodSpecView, kind: WorkloadKind) -> Vec<ImageUse> {
    let is_template = kind != WorkloadKind::Pod;
    let judged = |reference: &Option<String>| {
        !(is_template && is_placeholder(reference.as_deref().unwrap_or_default()))
    };
    let containers = [
        (Slot::InitContainer, view.init_containers),
        (Slot::Container, view.containers),
        (Slot::EphemeralContainer, view.ephemeral_containers),
    ];
    let mut out: Vec<ImageUse> = containers
        .into_iter()
        .flat_map(|(slot, list)| {
            list.into_iter()
                .filter(|c| judged(&c.image))
                .map(move |c| ImageUse::new(slot, c.name, c.image.unwrap_or_default()))
        })
        .collect();
    out.extend(view.volumes.into_iter().filter_map(|v| {
        let image = v.image?;
        judged(&image.reference).then(|| {
            ImageUse::new(
                Slot::ImageVolume,
                v.name,
                image.reference.unwrap_or_default(),
            )
        })
    }));
    out
}

/// The image uses of `new` that `old` did not already have (same slot, name and image):
/// on UPDATE only new or changed images are judged, so an unrelated edit of a running
/// workload is not blocked by a policy created after it.
pub fn changed(new: Vec<ImageUse>, old: &[ImageUse]) -> Vec<ImageUse> {
    new.into_iter()
        .filter(|s| {
            !old.iter()
                .any(|o| o.slot == s.slot && o.name == s.name && o.reference == s.reference)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn names(image_uses: &[ImageUse]) -> Vec<(Slot, &str, &str)> {
        image_uses
            .iter()
            .map(|s| (s.slot, s.name.as_str(), s.reference.as_str()))
            .collect()
    }

    #[rstest]
    #[case("", "Pod", Some(WorkloadKind::Pod))]
    #[case("apps", "Deployment", Some(WorkloadKind::Deployment))]
    #[case("apps", "StatefulSet", Some(WorkloadKind::StatefulSet))]
    #[case("apps", "DaemonSet", Some(WorkloadKind::DaemonSet))]
    #[case("apps", "ReplicaSet", Some(WorkloadKind::ReplicaSet))]
    #[case("batch", "Job", Some(WorkloadKind::Job))]
    #[case("batch", "CronJob", Some(WorkloadKind::CronJob))]
    #[case("", "ReplicationController", Some(WorkloadKind::ReplicationController))]
    #[case("autoscaling", "Scale", None)]
    #[case("", "Binding", None)]
    #[case("", "PodExecOptions", None)]
    #[case("example.com", "Deployment", None)]
    fn recognises_exactly_the_judged_kinds(
        #[case] group: &str,
        #[case] kind: &str,
        #[case] expected: Option<WorkloadKind>,
    ) {
        assert_eq!(WorkloadKind::from_group_kind(group, kind), expected);
    }

    #[test]
    fn reads_every_image_slot_of_a_pod() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx:1"}, {"name": "side", "image": "envoy"}],
            "ephemeralContainers": [{"name": "debug", "image": "alpine"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "data", "image": {"reference": "quay.io/x/data:1"}}]
        }});
        let got = image_uses(WorkloadKind::Pod, &pod).unwrap();
        assert_eq!(
            names(&got),
            vec![
                (Slot::InitContainer, "init", "busybox"),
                (Slot::Container, "app", "nginx:1"),
                (Slot::Container, "side", "envoy"),
                (Slot::EphemeralContainer, "debug", "alpine"),
                (Slot::ImageVolume, "data", "quay.io/x/data:1"),
            ]
        );
    }

    #[rstest]
    #[case(WorkloadKind::Deployment, json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}))]
    #[case(WorkloadKind::Job, json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}))]
    #[case(WorkloadKind::CronJob, json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}}}))]
    fn finds_the_pod_template_of_workloads(#[case] kind: WorkloadKind, #[case] object: Value) {
        assert_eq!(
            names(&image_uses(kind, &object).unwrap()),
            vec![(Slot::Container, "a", "x")]
        );
    }

    /// What admission reads from raw JSON is what `check` reads from a `Value`.
    #[rstest]
    #[case(WorkloadKind::Pod, json!({"spec": {"initContainers": [{"name": "i", "image": "a"}], "containers": [{"name": "c", "image": "b\tc"}], "volumes": [{"name": "v", "image": {"reference": "c"}}]}}))]
    #[case(WorkloadKind::Deployment, json!({"spec": {"replicas": 2, "template": {"metadata": {}, "spec": {"containers": [{"name": "a", "image": "x"}]}}}}))]
    #[case(WorkloadKind::CronJob, json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}}}))]
    #[case(WorkloadKind::Deployment, json!({"spec": {}}))]
    #[case(WorkloadKind::Deployment, json!({"spec": {"template": null}}))]
    #[case(WorkloadKind::CronJob, json!({"spec": {"jobTemplate": []}}))]
    #[case(WorkloadKind::Pod, json!({"spec": {"containers": "nginx"}}))]
    #[case(WorkloadKind::Pod, json!({"spec": {"containers": [{"name": "a", "image": 7}]}}))]
    #[case(WorkloadKind::Pod, json!({"spec": null}))]
    #[case(WorkloadKind::Pod, json!({}))]
    fn raw_json_and_value_read_the_same(#[case] kind: WorkloadKind, #[case] object: Value) {
        let from_value = image_uses(kind, &object);
        let spec = object.get("spec").filter(|spec| !spec.is_null());
        let raw = spec.map(|spec| RawValue::from_string(spec.to_string()).unwrap());
        assert_same(&from_value, &image_uses_in_spec(kind, raw.as_deref()));
        // The same-pass read, where it can read the spec, agrees with both
        // (admission reads the spec apart where it cannot).
        if let Some(Ok(read)) = spec.map(|spec| SpecSeed(kind).deserialize(spec)) {
            assert_same(&from_value, &read.ok_or_else(|| missing_pod_spec(kind)));
        }
    }

    fn assert_same(
        a: &Result<Vec<ImageUse>, WorkloadError>,
        b: &Result<Vec<ImageUse>, WorkloadError>,
    ) {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(names(a), names(b)),
            (Err(x), Err(y)) => assert_eq!(
                std::mem::discriminant(x),
                std::mem::discriminant(y),
                "{a:?} vs {b:?}"
            ),
            _ => panic!("{a:?} vs {b:?}"),
        }
    }

    #[test]
    fn the_same_pass_read_takes_each_kinds_pod_spec() {
        let spec = json!({
            "containers": [{"name": "pod", "image": "a"}],
            "template": {"spec": {"containers": [{"name": "templated", "image": "b"}]}},
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "cron", "image": "c"}]}}}}
        });
        for (kind, name) in [
            (WorkloadKind::Pod, "pod"),
            (WorkloadKind::Deployment, "templated"),
            (WorkloadKind::ReplicationController, "templated"),
            (WorkloadKind::CronJob, "cron"),
        ] {
            let got = SpecSeed(kind).deserialize(&spec).unwrap().unwrap();
            assert_eq!(got.len(), 1, "{kind:?}");
            assert_eq!(got[0].name, name, "{kind:?}");
        }
        let empty = SpecSeed(WorkloadKind::Job).deserialize(&json!({})).unwrap();
        assert!(matches!(
            empty.ok_or_else(|| missing_pod_spec(WorkloadKind::Job)),
            Err(WorkloadError::MissingPodSpec { kind: "Job", .. })
        ));
    }

    #[test]
    fn a_missing_image_is_judged_as_an_empty_reference() {
        let pod = json!({"spec": {"containers": [{"name": "a"}]}});
        let got = image_uses(WorkloadKind::Pod, &pod).unwrap();
        assert_eq!(names(&got), vec![(Slot::Container, "a", "")]);
        assert!(got[0].image.is_err());
    }

    /// `pod_spec` where `kind` keeps its pod spec.
    fn object_of(kind: WorkloadKind, pod_spec: Value) -> Value {
        match kind {
            WorkloadKind::Pod => json!({ "spec": pod_spec }),
            WorkloadKind::CronJob => {
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}})
            }
            _ => json!({"spec": {"template": {"spec": pod_spec}}}),
        }
    }

    /// Every slot holding a placeholder (blank, whitespace or absent), beside
    /// one real image.
    fn spec_with_placeholders() -> Value {
        json!({
            "initContainers": [{"name": "i-space", "image": " "}, {"name": "i-empty", "image": ""}],
            "containers": [
                {"name": "c-space", "image": " "},
                {"name": "c-tab", "image": "\t\n "},
                {"name": "c-absent"},
                {"name": "real", "image": "nginx:1"}
            ],
            "ephemeralContainers": [{"name": "e-space", "image": "  "}],
            "volumes": [
                {"name": "v-empty", "image": {"reference": ""}},
                {"name": "v-space", "image": {"reference": " "}},
                {"name": "v-absent", "image": {}}
            ]
        })
    }

    /// The three ways a spec is read (a `Value` for `check -f`, raw JSON and
    /// the same-pass read for admission), which must agree.
    fn read_three_ways(kind: WorkloadKind, object: &Value) -> Vec<Vec<(Slot, String, String)>> {
        let owned = |image_uses: Vec<ImageUse>| -> Vec<(Slot, String, String)> {
            image_uses
                .into_iter()
                .map(|s| (s.slot, s.name, s.reference))
                .collect()
        };
        let spec = object.get("spec").unwrap();
        let raw = RawValue::from_string(spec.to_string()).unwrap();
        vec![
            owned(image_uses(kind, object).unwrap()),
            owned(image_uses_in_spec(kind, Some(&raw)).unwrap()),
            owned(SpecSeed(kind).deserialize(spec).unwrap().unwrap()),
        ]
    }

    #[rstest]
    #[case(WorkloadKind::Deployment)]
    #[case(WorkloadKind::StatefulSet)]
    #[case(WorkloadKind::DaemonSet)]
    #[case(WorkloadKind::ReplicaSet)]
    #[case(WorkloadKind::Job)]
    #[case(WorkloadKind::CronJob)]
    #[case(WorkloadKind::ReplicationController)]
    fn a_placeholder_image_in_a_pod_template_is_nothing_to_judge(#[case] kind: WorkloadKind) {
        let object = object_of(kind, spec_with_placeholders());
        for read in read_three_ways(kind, &object) {
            assert_eq!(
                read,
                vec![(Slot::Container, "real".to_owned(), "nginx:1".to_owned())],
                "{kind:?}"
            );
        }
        // A template of placeholders only has nothing to judge, and is no error.
        let only = object_of(kind, json!({"containers": [{"name": "c", "image": " "}]}));
        for read in read_three_ways(kind, &only) {
            assert!(read.is_empty(), "{kind:?}: {read:?}");
        }
    }

    #[test]
    fn a_placeholder_image_in_a_pod_is_judged_as_an_invalid_image() {
        let object = object_of(WorkloadKind::Pod, spec_with_placeholders());
        for read in read_three_ways(WorkloadKind::Pod, &object) {
            let names: Vec<&str> = read.iter().map(|(_, name, _)| name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "i-space", "i-empty", "c-space", "c-tab", "c-absent", "real", "e-space",
                    "v-empty", "v-space", "v-absent"
                ]
            );
        }
        let got = image_uses(WorkloadKind::Pod, &object).unwrap();
        for image_use in got.iter().filter(|s| s.name != "real") {
            assert_eq!(
                *image_use.image,
                Err(crate::image::ImageError::Empty),
                "{}",
                image_use.name
            );
        }
    }

    #[test]
    fn null_lists_are_empty() {
        let pod = json!({"spec": {"containers": null, "initContainers": null, "volumes": null}});
        assert!(image_uses(WorkloadKind::Pod, &pod).unwrap().is_empty());
    }

    #[test]
    fn wrong_types_are_a_clear_error() {
        let pod = json!({"spec": {"containers": "nginx"}});
        let err = image_uses(WorkloadKind::Pod, &pod).unwrap_err();
        assert!(
            matches!(err, WorkloadError::ReadPodSpec { kind: "Pod", .. }),
            "{err}"
        );
    }

    #[test]
    fn a_workload_without_template_is_a_clear_error() {
        let err = image_uses(WorkloadKind::Deployment, &json!({"spec": {}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment has no pod spec at .spec.template.spec"
        );
    }

    #[test]
    fn update_judges_only_new_or_changed_images() {
        let old = vec![
            ImageUse::new(Slot::Container, "app", "nginx:1"),
            ImageUse::new(Slot::Container, "side", "envoy:1"),
        ];
        let new = vec![
            ImageUse::new(Slot::Container, "app", "nginx:1"),
            ImageUse::new(Slot::Container, "side", "envoy:2"),
            ImageUse::new(Slot::EphemeralContainer, "debug", "alpine"),
        ];
        assert_eq!(
            names(&changed(new, &old)),
            vec![
                (Slot::Container, "side", "envoy:2"),
                (Slot::EphemeralContainer, "debug", "alpine")
            ]
        );
    }
}

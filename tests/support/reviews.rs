//! AdmissionReview bodies for the tests: the captured ones in
//! tests/data/admission-reviews (see its README.md), their images rewritten, and
//! made-up reviews of each judged kind.

use serde_json::{Value, json};

/// The ECR registry of moto's default account (and of the fixed facts).
pub const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// `team/secure`: KMS with a customer-managed key, rotation on.
pub fn good() -> String {
    format!("{HOST}/team/secure:1.0")
}

/// `team/plain`: AES256.
pub fn bad() -> String {
    format!("{HOST}/team/plain:1.0")
}

/// The policy most tests judge by: KMS with a rotating customer key, in
/// namespaces labelled `tier=regulated`.
pub const STRICT: &str = "
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: strict}
spec:
  namespaceSelector: {matchLabels: {tier: regulated}}
  rules:
    allowedEncryptionTypes: [KMS, KMS_DSSE]
    requireCustomerManagedKey: true
    requireKeyRotation: true
";

/// A review captured from a kube-apiserver, by file name.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/admission-reviews/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Rewrites every `image` (and image volume `reference`) in the review's objects.
pub fn set_images(review: &mut Value, image: &str) {
    fn walk(v: &mut Value, image: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if (k == "image" || k == "reference") && child.is_string() {
                        *child = Value::String(image.to_string());
                    } else {
                        walk(child, image);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, image)),
            _ => {}
        }
    }
    walk(&mut review["request"]["object"], image);
    walk(&mut review["request"]["oldObject"], image);
}

/// [`set_images`] on one object rather than a review.
pub fn set_images_value(v: &mut Value, image: &str) {
    let mut wrapper = json!({"request": {"object": v.clone(), "oldObject": null}});
    set_images(&mut wrapper, image);
    *v = wrapper["request"]["object"].take();
}

/// A review of `kind` in namespace demo, its pod spec running `image`.
pub fn workload_review(group: &str, kind: &str, resource: &str, image: &str) -> Value {
    let pod_spec = json!({"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}], "restartPolicy": "Always"});
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": pod_spec});
    let spec = match kind {
        "Pod" => pod_spec,
        "CronJob" => {
            json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}})
        }
        _ => json!({"selector": {"matchLabels": {"app": "x"}}, "template": template}),
    };
    let version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let gvk = json!({"group": group, "version": "v1", "kind": kind});
    let gvr = json!({"group": group, "version": "v1", "resource": resource});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{kind}-{image}"), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "x", "namespace": "demo", "operation": "CREATE",
            "userInfo": {"username": "kube-local-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": {"apiVersion": version, "kind": kind, "metadata": {"name": "x", "namespace": "demo"}, "spec": spec},
            "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// The eight workload kinds ecr-guard judges: (group, kind, resource).
pub const JUDGED_KINDS: [(&str, &str, &str); 8] = [
    ("", "Pod", "pods"),
    ("apps", "Deployment", "deployments"),
    ("apps", "StatefulSet", "statefulsets"),
    ("apps", "DaemonSet", "daemonsets"),
    ("apps", "ReplicaSet", "replicasets"),
    ("batch", "Job", "jobs"),
    ("batch", "CronJob", "cronjobs"),
    ("", "ReplicationController", "replicationcontrollers"),
];

//! `ecr-guard audit` against a mock API server (tower-test), as `cluster.rs`
//! tests cluster mode: every call is checked for method, path, query and body.
//! The mock (`support::api_server`) is a trimmed copy of `cluster.rs`'s.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ecr_guard::audit::{AuditMetrics, Auditor, KeyWarnings};
use ecr_guard::inventory::cluster::ClusterInventory;
use ecr_guard::judging::{FixedFacts, Judge};
use ecr_guard::policy::Options;
use kube::Client;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use axum::http::Method;
use support::api_server::mock;

const PODS: &str = "/api/v1/pods?&fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed%2Cmetadata.namespace%21%3Dkube-system&limit=500";
const REPORTS: &str = "/apis/wgpolicyk8s.io/v1alpha2/policyreports?&labelSelector=app.kubernetes.io%2Fmanaged-by%3Decr-guard";

fn report_path(namespace: &str) -> String {
    format!("/apis/wgpolicyk8s.io/v1alpha2/namespaces/{namespace}/policyreports/ecr-guard")
}

/// Denies non-ECR images in namespaces labelled tier=regulated.
fn inventory() -> Arc<ClusterInventory> {
    let (inventory, mut policies, mut namespaces) = ClusterInventory::new();
    policies.apply(Event::Init);
    policies.apply(Event::InitApply(
        serde_json::from_value(json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "metadata": {"name": "no-hub", "uid": "uid-no-hub", "generation": 1},
            "spec": {
                "namespaceSelector": {"matchLabels": {"tier": "regulated"}},
                "nonEcrImages": "Deny",
            },
        }))
        .unwrap(),
    ));
    policies.apply(Event::InitDone);
    namespaces.apply(Event::Init);
    namespaces.apply(Event::InitApply(
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {"name": "demo", "labels": {"tier": "regulated"}},
        }))
        .unwrap(),
    ));
    namespaces.apply(Event::InitDone);
    inventory
}

fn auditor(client: Client) -> Auditor {
    Auditor {
        events: KeyWarnings::new(client.clone()),
        client,
        inventory: inventory(),
        judge: Judge::new(
            Arc::new(FixedFacts::failing("no AWS in these tests")),
            Options::default(),
            Duration::from_secs(1),
        ),
        excluded_namespaces: vec!["kube-system".into()],
        spread: Duration::ZERO,
        metrics: AuditMetrics::default(),
    }
}

fn pod(namespace: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{name}"),
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f",
                "uid": "uid-rs", "controller": true,
            }],
        },
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": {"phase": "Running"},
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn report(namespace: &str, body: &Value) -> Value {
    let mut report = body.clone();
    report["metadata"] = json!({
        "name": "ecr-guard",
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "ecr-guard"},
    });
    report
}

/// The report the first cycle applies, with its one timestamp.
fn expected_report(timestamp: &Value) -> Value {
    json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": "ecr-guard",
            "namespace": "demo",
            "labels": {"app.kubernetes.io/managed-by": "ecr-guard"},
        },
        "summary": {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0},
        "results": [{
            "source": "ecr-guard",
            "policy": "no-hub",
            "rule": "non_ecr_image",
            "result": "fail",
            "severity": "high",
            "category": "ECR encryption",
            "message": "container \"web\" image nginx:1.27: the image is not from a private ECR registry; policy no-hub allows only images from private ECR repositories",
            "resources": [
                {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "demo", "uid": "uid-web-1"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "namespace": "demo", "uid": "uid-rs"},
            ],
            "timestamp": timestamp,
        }],
    })
}

#[tokio::test]
async fn a_cycle_applies_changed_reports_deletes_empty_ones_and_writes_nothing_when_unchanged() {
    let (client, mut api) = mock();
    let auditor = Arc::new(auditor(client));

    // Cycle 1: one failing Pod in demo; a stale report in a namespace with no Pods left.
    let cycle = tokio::spawn({
        let auditor = auditor.clone();
        async move { auditor.cycle().await }
    });
    let call = api.next().await;
    call.assert(Method::GET, PODS);
    call.ok(list("PodList", vec![pod("demo", "web-1", "nginx:1.27")]));
    let call = api.next().await;
    call.assert(Method::GET, REPORTS);
    call.ok(list(
        "PolicyReportList",
        vec![report(
            "gone",
            &json!({"summary": {"pass": 1}, "results": []}),
        )],
    ));
    let call = api.next().await;
    call.assert(
        Method::PATCH,
        &format!("{}?&force=true&fieldManager=ecr-guard", report_path("demo")),
    );
    let timestamp = call.body["results"][0]["timestamp"].clone();
    assert!(
        timestamp["seconds"].as_i64().unwrap() > 1_700_000_000,
        "{timestamp}"
    );
    assert_eq!(call.body, expected_report(&timestamp));
    let applied = call.body.clone();
    call.ok(applied.clone());
    let call = api.next().await;
    call.assert(Method::DELETE, &format!("{}?", report_path("gone")));
    call.ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let summary = cycle.await.unwrap();
    assert_eq!(summary.exit_code(), 1, "{summary}");
    assert_eq!(
        (summary.published.applied, summary.published.deleted),
        (1, 1)
    );
    let text = summary.to_string();
    assert!(
        text.starts_with("audited 1 Pod in 1 namespace: 0 pass, 1 fail"),
        "{text}"
    );
    assert!(
        text.contains("fail demo/web-1 no-hub: container \"web\" image nginx:1.27"),
        "{text}"
    );

    // Cycle 2: nothing changed → two lists and no write.
    let cycle = tokio::spawn({
        let auditor = auditor.clone();
        async move { auditor.cycle().await }
    });
    let call = api.next().await;
    call.assert(Method::GET, PODS);
    call.ok(list("PodList", vec![pod("demo", "web-1", "nginx:1.27")]));
    let call = api.next().await;
    call.assert(Method::GET, REPORTS);
    call.ok(list("PolicyReportList", vec![applied.clone()]));
    let summary = cycle.await.unwrap();
    assert_eq!(summary.published.unchanged, 1);
    assert_eq!(
        (summary.published.applied, summary.published.deleted),
        (0, 0)
    );

    // Cycle 3: the Pod is gone → its result goes, and with it the report.
    let cycle = tokio::spawn({
        let auditor = auditor.clone();
        async move { auditor.cycle().await }
    });
    let call = api.next().await;
    call.assert(Method::GET, PODS);
    call.ok(list("PodList", vec![]));
    let call = api.next().await;
    call.assert(Method::GET, REPORTS);
    call.ok(list("PolicyReportList", vec![applied]));
    let call = api.next().await;
    call.assert(Method::DELETE, &format!("{}?", report_path("demo")));
    call.ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let summary = cycle.await.unwrap();
    assert_eq!(summary.published.deleted, 1);
    assert_eq!(summary.exit_code(), 0);
}

#[tokio::test]
async fn a_key_that_breaks_pulls_warns_on_the_deployment_behind_the_replica_set() {
    use ecr_guard::policy::facts::{
        EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, RepositoryFacts,
        RepositoryLookup, Rotation,
    };
    let (client, mut api) = mock();
    let key = "arn:aws:kms:us-east-1:123456789012:key/k";
    let facts = FixedFacts::answering(Ok(RepositoryLookup::Found(RepositoryFacts {
        encryption_type: EncryptionType::Kms,
        kms_key: Some(KeyLookup::Known(KeyFacts {
            arn: key.into(),
            manager: KeyManager::Customer,
            state: KeyState::PendingDeletion,
            rotation: Rotation::Enabled,
            deletion_date: None,
        })),
    })));
    let mut auditor = auditor(client);
    auditor.judge = Judge::new(Arc::new(facts), Options::default(), Duration::from_secs(1));
    let cycle = tokio::spawn(async move { auditor.cycle().await });
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1";

    let call = api.next().await;
    call.assert(Method::GET, PODS);
    call.ok(list("PodList", vec![pod("demo", "web-1", image)]));
    let call = api.next().await;
    call.assert(Method::GET, REPORTS);
    call.ok(list("PolicyReportList", vec![]));
    let call = api.next().await;
    assert_eq!(call.method, Method::PATCH);
    let results = call.body["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0]["policy"], "ecr-guard-kms-key-state");
    assert_eq!(results[0]["rule"], "key_pending_deletion");
    assert_eq!(results[0]["severity"], "critical");
    assert_eq!(results[1]["policy"], "no-hub");
    // requireUsableKey is on by default: the policy fails it too.
    assert_eq!(results[1]["result"], "fail");
    assert_eq!(results[1]["rule"], "key_unusable");
    assert_eq!(call.body["summary"]["fail"], 2);
    let body = call.body.clone();
    call.ok(body);

    // The ReplicaSet's metadata, for its Deployment.
    let call = api.next().await;
    call.assert(
        Method::GET,
        "/apis/apps/v1/namespaces/demo/replicasets/web-5d8f",
    );
    call.ok(json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": {
            "name": "web-5d8f",
            "namespace": "demo",
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": "uid-deploy", "controller": true,
            }],
        },
    }));
    let call = api.next().await;
    call.assert(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/demo/events?",
    );
    assert_eq!(
        call.body["regarding"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "demo", "uid": "uid-deploy"})
    );
    assert_eq!(call.body["type"], "Warning");
    assert_eq!(call.body["reason"], "KmsKeyUnusable");
    let note = call.body["note"].as_str().unwrap().to_string();
    assert!(
        note.contains(&format!("KMS key {key} is scheduled for deletion")),
        "{note}"
    );
    let body = call.body.clone();
    call.ok(body);
    let summary = cycle.await.unwrap();
    assert_eq!(summary.exit_code(), 1);
}

#[tokio::test]
async fn a_namespace_over_1000_results_is_split_into_parts_and_stale_parts_are_deleted() {
    let (client, mut api) = mock();
    let auditor = Arc::new(auditor(client));
    // Bare Pods (no owner): nothing to aggregate, one result each.
    let bare = |n: usize| {
        let mut pod = pod("demo", &format!("job-{n:04}"), "nginx:1.27");
        pod["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        pod
    };
    let part_path =
        |name: &str| format!("/apis/wgpolicyk8s.io/v1alpha2/namespaces/demo/policyreports/{name}");
    let mut leftover = report("demo", &json!({"summary": {"fail": 1}, "results": []}));
    leftover["metadata"]["name"] = json!("ecr-guard-3");

    // Cycle 1: 1,200 results → ecr-guard (1,000) and ecr-guard-2 (200); a third
    // part left from an earlier cycle is deleted.
    let cycle = tokio::spawn({
        let auditor = auditor.clone();
        async move { auditor.cycle().await }
    });
    let call = api.next().await;
    call.assert(Method::GET, PODS);
    call.ok(list("PodList", (0..1200).map(bare).collect()));
    let call = api.next().await;
    call.assert(Method::GET, REPORTS);
    call.ok(list("PolicyReportList", vec![leftover]));
    let mut parts = Vec::new();
    for (name, results) in [("ecr-guard", 1000), ("ecr-guard-2", 200)] {
        let call = api.next().await;
        call.assert(
            Method::PATCH,
            &format!("{}?&force=true&fieldManager=ecr-guard", part_path(name)),
        );
        assert_eq!(call.body["metadata"]["name"], name);
        assert_eq!(
            call.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "ecr-guard"
        );
        assert_eq!(call.body["results"].as_array().unwrap().len(), results);
        assert_eq!(call.body["summary"]["fail"], results);
        let body = call.body.clone();
        parts.push(body.clone());
        call.ok(body);
    }
    assert_eq!(parts[0]["results"][0]["resources"][0]["name"], "job-0000");
    assert_eq!(parts[1]["results"][0]["resources"][0]["name"], "job-1000");
    let call = api.next().await;
    call.assert(Method::DELETE, &format!("{}?", part_path("ecr-guard-3")));
    call.ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let summary = cycle.await.unwrap();
    assert_eq!(
        (summary.published.applied, summary.published.deleted),
        (2, 1)
    );

    // Cycle 2: 500 Pods left → one part rewritten, the second deleted.
    let cycle = tokio::spawn({
        let auditor = auditor.clone();
        async move { auditor.cycle().await }
    });
    let call = api.next().await;
    call.assert(Method::GET, PODS);
    call.ok(list("PodList", (0..500).map(bare).collect()));
    let call = api.next().await;
    call.assert(Method::GET, REPORTS);
    call.ok(list("PolicyReportList", parts.clone()));
    let call = api.next().await;
    call.assert(
        Method::PATCH,
        &format!(
            "{}?&force=true&fieldManager=ecr-guard",
            part_path("ecr-guard")
        ),
    );
    assert_eq!(call.body["results"].as_array().unwrap().len(), 500);
    // Unchanged results keep the timestamp they were first seen with.
    assert_eq!(
        call.body["results"][0]["timestamp"],
        parts[0]["results"][0]["timestamp"]
    );
    let body = call.body.clone();
    call.ok(body);
    let call = api.next().await;
    call.assert(Method::DELETE, &format!("{}?", part_path("ecr-guard-2")));
    call.ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let summary = cycle.await.unwrap();
    assert_eq!(
        (summary.published.applied, summary.published.deleted),
        (1, 1)
    );
}

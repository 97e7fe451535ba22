//! Cluster mode against a mock API server (tower-test), in the style of kube-rs
//! controller-rs's ApiServerVerifier: every call the code makes is checked for
//! method, path, query, headers and body, and answered the way kube-apiserver would.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use bytes::Bytes;
use ecr_guard::admission::{Admission, RequestContext, ViolationSink};
use ecr_guard::cluster::{self, EventLimits, StatusWriter, events, status};
use ecr_guard::inventory::Inventory;
use ecr_guard::inventory::cluster::ClusterInventory;
use ecr_guard::judging::{FixedFacts, Judge};
use ecr_guard::metrics::AdmissionMetrics;
use ecr_guard::policy::{Finding, Mode, Options, Reason, Violation};
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::Client;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// The mock API server

type MockBody = UnsyncBoxBody<Bytes, Infallible>;
type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<MockBody>>;
type Respond = tower_test::mock::SendResponse<Response<MockBody>>;

struct ApiServer(Handle);

/// One request the code made, and the way to answer it.
struct Call {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Value,
    respond: Respond,
}

fn mock() -> (Client, ApiServer) {
    let (service, handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<MockBody>>();
    (Client::new(service, "default"), ApiServer(handle))
}

impl ApiServer {
    /// The next call, or a panic after `within`.
    async fn next_within(&mut self, within: Duration) -> Call {
        let (request, respond) = tokio::time::timeout(within, self.0.next_request())
            .await
            .expect("the code made no API call in time")
            .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Call {
            method: parts.method,
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body,
            respond,
        }
    }

    async fn next(&mut self) -> Call {
        self.next_within(Duration::from_secs(10)).await
    }

    /// Asserts the code makes no call for `duration`.
    async fn silent_for(&mut self, duration: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(duration, self.0.next_request()).await
        {
            panic!(
                "unexpected API call: {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

impl Call {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }

    fn assert(&self, method: Method, uri: &str) {
        assert_eq!((&self.method, self.uri.as_str()), (&method, uri));
    }

    fn reply(self, status: StatusCode, body: Value) {
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(bytes).boxed_unsync())
            .unwrap();
        self.respond.send_response(response);
    }

    fn ok(self, body: Value) {
        self.reply(StatusCode::OK, body);
    }

    /// Answers a create as the API server does: 201 and the object.
    fn created(self) {
        let body = self.body.clone();
        self.reply(StatusCode::CREATED, body);
    }

    /// Answers a watch with a stream the test writes events into.
    fn watch(self) -> WatchStream {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
        let body = StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b))));
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(body))
            .unwrap();
        self.respond.send_response(response);
        WatchStream(tx)
    }
}

struct WatchStream(futures::channel::mpsc::UnboundedSender<Bytes>);

impl WatchStream {
    fn send(&self, kind: &str, object: Value) {
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
        line.push(b'\n');
        self.0.unbounded_send(Bytes::from(line)).unwrap();
    }
}

fn status_error(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

// ---------------------------------------------------------------------------
// Objects

const POLICIES: &str = "/apis/ecrguard.io/v1alpha1/ecrencryptionpolicies";
const NAMESPACES: &str = "/api/v1/namespaces";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// Denies Docker Hub images in namespaces labelled tier=regulated.
fn policy(name: &str, generation: i64, mode: &str) -> Value {
    json!({
        "apiVersion": "ecrguard.io/v1alpha1",
        "kind": "EcrEncryptionPolicy",
        "metadata": {
            "name": name,
            "uid": format!("uid-{name}"),
            "generation": generation,
            "resourceVersion": format!("{}", 100 + generation),
            "creationTimestamp": "2025-01-01T00:00:00Z",
        },
        "spec": {
            "mode": mode,
            "namespaceSelector": {"matchLabels": {"tier": "regulated"}},
            "nonEcrImages": "Deny",
        },
    })
}

fn namespace(name: &str, tier: &str, resource_version: &str) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": {
            "name": name,
            "uid": format!("uid-ns-{name}"),
            "resourceVersion": resource_version,
            "labels": {"kubernetes.io/metadata.name": name, "tier": tier},
        },
    })
}

fn list(kind: &str, resource_version: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": if kind == "PartialObjectMetadataList" { "meta.k8s.io/v1" } else { "ecrguard.io/v1alpha1" },
        "kind": kind,
        "metadata": {"resourceVersion": resource_version},
        "items": items,
    })
}

fn admission(inventory: Arc<dyn Inventory>) -> Admission {
    let judge = Judge::new(
        Arc::new(FixedFacts::failing("no AWS in these tests")),
        Options::default(),
        Duration::from_secs(1),
    );
    Admission::new(inventory, judge, AdmissionMetrics::default())
}

/// (allowed, denial message or warnings) for a Pod running nginx.
async fn run_nginx(admission: &Admission, namespace: &str, dry_run: bool) -> (bool, String) {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5f9a1c3e-7b8d-4e2f-9a6b-1c2d3e4f5a6b",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
            "oldObject": null,
            "dryRun": dry_run,
        },
    });
    let outcome = admission
        .review(&serde_json::to_vec(&review).unwrap())
        .await
        .unwrap();
    let response = outcome.review.response;
    if response.allowed {
        (true, response.warnings.unwrap_or_default().join("\n"))
    } else {
        (false, response.status.message)
    }
}

/// Waits (up to `limit`) until `check` holds; returns how long it took.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Reflectors

#[tokio::test]
async fn reflectors_list_then_watch_and_admission_follows_within_a_second() {
    let (client, mut api) = mock();
    let (inventory, policies, namespaces) = ClusterInventory::new();
    let admission = admission(inventory.clone());

    tokio::spawn(cluster::watch_policies(client.clone(), policies));
    let call = api.next().await;
    call.assert(Method::GET, &format!("{POLICIES}?&limit=500"));
    assert_eq!(call.body, Value::Null);
    call.ok(list(
        "EcrEncryptionPolicyList",
        "200",
        vec![policy("no-hub", 1, "Enforce")],
    ));
    let call = api.next().await;
    call.assert(
        Method::GET,
        &format!(
            "{POLICIES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=200"
        ),
    );
    let policy_watch = call.watch();
    within(Duration::from_secs(1), async || {
        inventory.policies().len() == 1
    })
    .await;
    assert!(!inventory.is_ready(), "namespaces not synced yet");

    tokio::spawn(cluster::watch_namespaces(client.clone(), namespaces));
    let call = api.next().await;
    call.assert(Method::GET, &format!("{NAMESPACES}?&limit=500"));
    assert_eq!(call.header("accept"), METADATA_LIST, "metadata only");
    call.ok(list(
        "PartialObjectMetadataList",
        "300",
        vec![namespace("payments", "regulated", "1")],
    ));
    let call = api.next().await;
    call.assert(
        Method::GET,
        &format!("{NAMESPACES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=300"),
    );
    assert_eq!(call.header("accept"), METADATA);
    let namespace_watch = call.watch();
    within(Duration::from_secs(1), async || inventory.is_ready()).await;

    let (allowed, message) = run_nginx(&admission, "payments", false).await;
    assert!(!allowed);
    assert!(message.contains("policy no-hub"), "{message}");

    // A policy change reaches admission within a second of its watch event.
    policy_watch.send("MODIFIED", policy("no-hub", 2, "Warn"));
    let took = within(Duration::from_secs(1), async || {
        run_nginx(&admission, "payments", false).await.0
    })
    .await;
    println!("policy change applied after {took:?}");
    let (_, warnings) = run_nginx(&admission, "payments", false).await;
    assert!(warnings.contains("no-hub"), "{warnings}");

    // So does a namespace relabelling.
    policy_watch.send("MODIFIED", policy("no-hub", 3, "Enforce"));
    within(Duration::from_secs(1), async || {
        !run_nginx(&admission, "payments", false).await.0
    })
    .await;
    namespace_watch.send("MODIFIED", namespace("payments", "dev", "2"));
    within(Duration::from_secs(1), async || {
        run_nginx(&admission, "payments", false).await == (true, String::new())
    })
    .await;
    namespace_watch.send("MODIFIED", namespace("payments", "regulated", "3"));
    within(Duration::from_secs(1), async || {
        !run_nginx(&admission, "payments", false).await.0
    })
    .await;

    // And a deletion.
    policy_watch.send("DELETED", policy("no-hub", 3, "Enforce"));
    within(Duration::from_secs(1), async || {
        inventory.policies().is_empty()
    })
    .await;
    assert!(run_nginx(&admission, "payments", false).await.0);

    // A broken watch: the last good state keeps serving while the watcher relists
    // with backoff.
    policy_watch.send("ADDED", policy("again", 1, "Enforce"));
    within(Duration::from_secs(1), async || {
        inventory.policies().len() == 1
    })
    .await;
    policy_watch.send(
        "ERROR",
        status_error(410, "Expired", "too old resource version: 200 (250)"),
    );
    let call = api.next().await;
    call.assert(Method::GET, &format!("{POLICIES}?&limit=500"));
    call.reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        status_error(500, "InternalError", "etcd is sad"),
    );
    assert!(inventory.is_ready());
    assert_eq!(inventory.policies().len(), 1, "last good state");
    assert!(!run_nginx(&admission, "payments", false).await.0);
    let call = api.next().await; // after the backoff
    call.assert(Method::GET, &format!("{POLICIES}?&limit=500"));
    call.ok(list("EcrEncryptionPolicyList", "400", vec![]));
    let call = api.next().await;
    call.assert(
        Method::GET,
        &format!(
            "{POLICIES}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=400"
        ),
    );
    let _policy_watch = call.watch();
    within(Duration::from_secs(1), async || {
        inventory.policies().is_empty()
    })
    .await;
    assert!(run_nginx(&admission, "payments", false).await.0);
}

#[tokio::test]
async fn check_reads_every_page_once_and_never_watches() {
    let (client, mut api) = mock();
    let snapshot = tokio::spawn(cluster::snapshot(client));

    let call = api.next().await;
    call.assert(Method::GET, &format!("{POLICIES}?&limit=500"));
    let mut first = list(
        "EcrEncryptionPolicyList",
        "",
        vec![policy("a", 1, "Enforce")],
    );
    first["metadata"] = json!({"continue": "page-2"});
    call.ok(first);
    let call = api.next().await;
    call.assert(
        Method::GET,
        &format!("{POLICIES}?&limit=500&continue=page-2"),
    );
    call.ok(list(
        "EcrEncryptionPolicyList",
        "500",
        vec![policy("b", 4, "DryRun")],
    ));
    let call = api.next().await;
    call.assert(Method::GET, &format!("{NAMESPACES}?&limit=500"));
    assert_eq!(call.header("accept"), METADATA_LIST);
    call.ok(list(
        "PartialObjectMetadataList",
        "600",
        vec![namespace("payments", "regulated", "1")],
    ));

    let inventory = snapshot.await.unwrap().unwrap();
    api.silent_for(Duration::from_millis(300)).await;
    assert!(inventory.is_ready());
    let names: Vec<String> = inventory
        .policies()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(inventory.namespace_labels("payments")["tier"], "regulated");
}

#[tokio::test]
async fn check_fails_when_the_cluster_cannot_be_read() {
    let (client, mut api) = mock();
    let snapshot = tokio::spawn(cluster::snapshot(client));
    let call = api.next().await;
    call.reply(
        StatusCode::FORBIDDEN,
        status_error(
            403,
            "Forbidden",
            "ecrencryptionpolicies.ecrguard.io is forbidden: User \"bob\" cannot list resource",
        ),
    );
    let Err(err) = snapshot.await.unwrap() else {
        panic!("a 403 must fail check")
    };
    assert_eq!(err.to_string(), "failed to list EcrEncryptionPolicies");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("cannot list resource"), "{chain}");
}

// ---------------------------------------------------------------------------
// Status

fn with_status(mut object: Value, status: &Value) -> Value {
    object["status"] = status.clone();
    object
}

#[tokio::test]
async fn status_is_server_side_applied_once_and_never_loops() {
    let (client, mut api) = mock();
    let (inventory, mut policies, _namespaces) = ClusterInventory::new();
    let valid = policy("a-valid", 2, "Enforce");
    let mut invalid = policy("b-invalid", 5, "Warn");
    invalid["spec"]["images"] = json!(["docker.io/[library"]);
    invalid["spec"]["rules"] = json!({"allowedKmsKeys": ["alias/aws/ecr"]});
    let current = with_status(
        policy("c-current", 1, "Enforce"),
        &json!({
            "observedGeneration": 1,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Accepted",
                "message": "the policy is valid and in force",
                "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1,
            }],
        }),
    );
    policies.apply(Event::Init);
    for object in [&valid, &invalid, &current] {
        policies.apply(Event::InitApply(
            serde_json::from_value(object.clone()).unwrap(),
        ));
    }
    policies.apply(Event::InitDone);

    let mut writer = StatusWriter::new(client, inventory.clone());
    let sync = tokio::spawn(async move {
        let ok = writer.sync().await;
        (writer, ok)
    });
    let mut written = Vec::new();
    for (name, generation) in [("a-valid", 2), ("b-invalid", 5)] {
        let call = api.next().await;
        call.assert(
            Method::PATCH,
            &format!("{POLICIES}/{name}/status?&force=true&fieldManager=ecr-guard"),
        );
        assert_eq!(call.header("content-type"), "application/apply-patch+yaml");
        assert_eq!(call.header("accept"), "application/json");
        let body = call.body.clone();
        assert_eq!(body["apiVersion"], "ecrguard.io/v1alpha1");
        assert_eq!(body["kind"], "EcrEncryptionPolicy");
        assert_eq!(body["metadata"], json!({"name": name}), "identity only");
        assert!(body.get("spec").is_none(), "never owns the spec");
        assert_eq!(body["status"]["observedGeneration"], generation);
        let ready = &body["status"]["conditions"][0];
        assert_eq!(body["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["observedGeneration"], generation);
        let time = ready["lastTransitionTime"].as_str().unwrap();
        assert!(
            time.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && time.ends_with('Z'),
            "{time}"
        );
        if name == "a-valid" {
            assert_eq!(ready["status"], "True");
            assert_eq!(ready["reason"], "Accepted");
            assert_eq!(ready["message"], "the policy is valid and in force");
        } else {
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "Invalid");
            let message = ready["message"].as_str().unwrap();
            for part in [
                "spec.images[0]: invalid glob \"docker.io/[library\"",
                "spec.rules.allowedKmsKeys[0]: \"alias/aws/ecr\" is not a key ARN glob",
                "Invalid policies fail closed",
                "(Warn mode)",
            ] {
                assert!(message.contains(part), "{part} in {message}");
            }
        }
        let object = if name == "a-valid" { &valid } else { &invalid };
        let stored = with_status(object.clone(), &body["status"]);
        written.push(stored.clone());
        call.ok(stored);
    }
    let (mut writer, ok) = sync.await.unwrap();
    assert!(ok);

    // The watch events our applies cause ask for nothing more: no update loop.
    for stored in &written {
        policies.apply(Event::Apply(
            serde_json::from_value(stored.clone()).unwrap(),
        ));
    }
    let sync = tokio::spawn(async move { (writer.sync().await, writer) });
    api.silent_for(Duration::from_millis(300)).await;
    let (ok, mut writer) = sync.await.unwrap();
    assert!(ok);

    // Another replica won the race with a slightly different transition time: the
    // content is the same, so this replica leaves it alone.
    let mut raced = written[0].clone();
    raced["status"]["conditions"][0]["lastTransitionTime"] = json!("2025-06-01T12:00:00Z");
    policies.apply(Event::Apply(serde_json::from_value(raced).unwrap()));
    let sync = tokio::spawn(async move { (writer.sync().await, writer) });
    api.silent_for(Duration::from_millis(300)).await;
    let (_, mut writer) = sync.await.unwrap();

    // A spec change (new generation) is applied again, keeping the transition time.
    let mut edited = with_status(policy("a-valid", 3, "DryRun"), &written[0]["status"]);
    edited["status"]["conditions"][0]["lastTransitionTime"] = json!("2025-06-01T12:00:00Z");
    policies.apply(Event::Apply(serde_json::from_value(edited).unwrap()));
    let sync = tokio::spawn(async move { (writer.sync().await, writer) });
    let call = api.next().await;
    call.assert(
        Method::PATCH,
        &format!("{POLICIES}/a-valid/status?&force=true&fieldManager=ecr-guard"),
    );
    assert_eq!(call.body["status"]["observedGeneration"], 3);
    assert_eq!(
        call.body["status"]["conditions"][0]["lastTransitionTime"],
        "2025-06-01T12:00:00Z"
    );
    // The API server refuses: the writer reports it, to retry soon.
    call.reply(
        StatusCode::FORBIDDEN,
        status_error(
            403,
            "Forbidden",
            "cannot patch resource \"ecrencryptionpolicies/status\"",
        ),
    );
    let (ok, _writer) = sync.await.unwrap();
    assert!(!ok);
}

#[tokio::test]
async fn the_status_writer_follows_policy_changes() {
    let (client, mut api) = mock();
    let (inventory, mut policies, _namespaces) = ClusterInventory::new();
    tokio::spawn(StatusWriter::new(client, inventory).run());
    api.silent_for(Duration::from_millis(200)).await;

    policies.apply(Event::Init);
    policies.apply(Event::InitApply(
        serde_json::from_value(policy("p", 1, "Enforce")).unwrap(),
    ));
    policies.apply(Event::InitDone);
    let call = api.next_within(Duration::from_secs(1)).await;
    call.assert(
        Method::PATCH,
        &format!("{POLICIES}/p/status?&force=true&fieldManager=ecr-guard"),
    );
    let stored = with_status(policy("p", 1, "Enforce"), &call.body["status"]);
    call.ok(stored.clone());
    policies.apply(Event::Apply(
        serde_json::from_value(stored.clone()).unwrap(),
    ));
    api.silent_for(Duration::from_millis(300)).await;

    let mut edited = with_status(policy("p", 2, "Enforce"), &stored["status"]);
    edited["spec"]["images"] = json!([]);
    policies.apply(Event::Apply(serde_json::from_value(edited).unwrap()));
    let call = api.next_within(Duration::from_secs(1)).await;
    assert_eq!(call.body["status"]["observedGeneration"], 2);
    assert_eq!(call.body["status"]["conditions"][0]["reason"], "Invalid");
    assert!(
        call.body["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.images: must not be empty")
    );
    call.ok(stored);
}

// ---------------------------------------------------------------------------
// Events

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn violation(policy: &str, mode: Mode, container: &str) -> Violation {
    Violation {
        policy: policy.to_string(),
        mode,
        reason: Reason::EncryptionType,
        image_use: Some((
            format!(
                "container \"{container}\" image 123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.4"
            ),
            format!("container \"{container}\""),
        )),
        finding: Finding {
            problem: "repository payments/api is encrypted with AES256".to_string(),
            requirement: format!("policy {policy} allows only KMS, KMS_DSSE"),
        },
        hint: None,
    }
}

fn context(name: &str) -> RequestContext {
    RequestContext {
        namespace: "demo".to_string(),
        kind: "Deployment".to_string(),
        name: name.to_string(),
        operation: "CREATE".to_string(),
    }
}

fn synced_with(objects: &[Value]) -> Arc<ClusterInventory> {
    let (inventory, mut policies, mut namespaces) = ClusterInventory::new();
    policies.apply(Event::Init);
    for object in objects {
        policies.apply(Event::InitApply(
            serde_json::from_value(object.clone()).unwrap(),
        ));
    }
    policies.apply(Event::InitDone);
    namespaces.apply(Event::Init);
    namespaces.apply(Event::InitApply(
        serde_json::from_value(namespace("demo", "regulated", "1")).unwrap(),
    ));
    namespaces.apply(Event::InitDone);
    inventory
}

fn assert_created_event(call: &Call, policy: &str, action: &str, note: &str) {
    call.assert(Method::POST, &format!("{EVENTS}?"));
    assert_eq!(call.header("content-type"), "application/json");
    let body = &call.body;
    assert_eq!(body["apiVersion"], "events.k8s.io/v1");
    assert_eq!(body["kind"], "Event");
    assert_eq!(body["metadata"]["namespace"], "default");
    let name = body["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with(&format!("{policy}.")), "{name}");
    assert_eq!(
        body["regarding"],
        json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "name": policy,
            "uid": format!("uid-{policy}"),
        })
    );
    assert_eq!(body["reason"], "PolicyViolation");
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["action"], action);
    assert_eq!(body["note"], note);
    assert_eq!(body["reportingController"], "ecrguard.io/ecr-guard");
    let instance = body["reportingInstance"].as_str().unwrap();
    assert!(!instance.is_empty() && instance.len() <= 128);
    let time = body["eventTime"].as_str().unwrap();
    assert!(
        time.len() == "2025-01-01T00:00:00.000000Z".len(),
        "MicroTime: {time}"
    );
    for unset in [
        "deprecatedCount",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedSource",
        "related",
    ] {
        assert!(body.get(unset).is_none(), "{unset} must be unset");
    }
}

#[tokio::test(start_paused = true)]
async fn repeated_violations_make_one_event_and_a_series_not_a_flood() {
    let (client, mut api) = mock();
    let inventory = synced_with(&[policy("regulated", 1, "DryRun")]);
    let (sink, writer) = events::channel(client, inventory, EventLimits::default());
    tokio::spawn(writer.run());

    let dry_run = violation("regulated", Mode::DryRun, "api");
    let note = events::note(&context("web"), &dry_run);
    assert!(note.contains("namespace demo") && note.contains("Deployment web"));
    assert!(note.contains("container \"api\" image 123456789012.dkr.ecr"));
    assert!(note.contains("reason encryption_type"));
    for _ in 0..50 {
        sink.record(&context("web"), &dry_run);
    }
    let call = api.next_within(Duration::from_secs(1)).await;
    assert_created_event(&call, "regulated", "DryRun", &note);
    assert!(call.body.get("series").is_none());
    let name = call.body["metadata"]["name"].as_str().unwrap().to_string();
    let mut stored = call.body.clone();
    call.created();

    // The other 49 wait for the refresh interval, then go out as one series update.
    api.silent_for(Duration::from_secs(290)).await;
    let call = api.next_within(Duration::from_secs(30)).await;
    call.assert(Method::PATCH, &format!("{EVENTS}/{name}?"));
    assert_eq!(call.header("content-type"), "application/merge-patch+json");
    assert_eq!(call.body["series"]["count"], 50);
    assert!(call.body["series"]["lastObservedTime"].is_string());
    assert_eq!(
        call.body.as_object().unwrap().len(),
        1,
        "series only: the rest is immutable"
    );
    stored["series"] = call.body["series"].clone();
    call.ok(stored);

    // Another workload, another container or a Warn policy is another Event.
    sink.record(&context("worker"), &dry_run);
    let call = api.next_within(Duration::from_secs(1)).await;
    assert_created_event(
        &call,
        "regulated",
        "DryRun",
        &events::note(&context("worker"), &dry_run),
    );
    call.created();
    let warn = violation("regulated", Mode::Warn, "sidecar");
    sink.record(&context("web"), &warn);
    let call = api.next_within(Duration::from_secs(1)).await;
    let warn_note = events::note(&context("web"), &warn);
    assert!(warn_note.starts_with("Warn policy admitted Deployment web in namespace demo"));
    assert_created_event(&call, "regulated", "Warn", &warn_note);
    call.created();

    // Quiet for longer than the idle time: the next occurrence starts a new Event.
    api.silent_for(Duration::from_secs(700)).await;
    sink.record(&context("web"), &dry_run);
    let call = api.next_within(Duration::from_secs(1)).await;
    assert_created_event(&call, "regulated", "DryRun", &note);
    assert_ne!(call.body["metadata"]["name"], name.as_str());
    call.created();
}

#[tokio::test(start_paused = true)]
async fn event_writes_are_rate_limited_and_tracking_is_bounded() {
    let (client, mut api) = mock();
    let inventory = synced_with(&[policy("regulated", 1, "DryRun")]);
    let limits = EventLimits {
        max_tracked: 3,
        burst: 2,
        writes_per_second: 0.1,
        ..EventLimits::default()
    };
    let (sink, writer) = events::channel(client, inventory, limits);
    tokio::spawn(writer.run());
    let dry_run = violation("regulated", Mode::DryRun, "api");
    for name in ["w1", "w2", "w3", "w4", "w5"] {
        sink.record(&context(name), &dry_run);
    }
    let mut seen = Vec::new();
    // The burst: two at once.
    for _ in 0..2 {
        let call = api.next_within(Duration::from_millis(100)).await;
        seen.push(call.body["note"].as_str().unwrap().to_string());
        call.created();
    }
    // Then one per ten seconds; w4 and w5 were beyond the tracking bound.
    api.silent_for(Duration::from_secs(5)).await;
    let call = api.next_within(Duration::from_secs(15)).await;
    seen.push(call.body["note"].as_str().unwrap().to_string());
    call.created();
    api.silent_for(Duration::from_secs(200)).await;
    let workloads: Vec<&str> = seen
        .iter()
        .map(|n| n.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(workloads, ["w1", "w2", "w3"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_event_write_is_retried_later_not_per_occurrence() {
    let (client, mut api) = mock();
    let inventory = synced_with(&[policy("regulated", 1, "DryRun")]);
    let (sink, writer) = events::channel(client, inventory, EventLimits::default());
    tokio::spawn(writer.run());
    let dry_run = violation("regulated", Mode::DryRun, "api");
    sink.record(&context("web"), &dry_run);
    let call = api.next_within(Duration::from_secs(1)).await;
    call.reply(
        StatusCode::FORBIDDEN,
        status_error(403, "Forbidden", "events.events.k8s.io is forbidden"),
    );
    for _ in 0..20 {
        sink.record(&context("web"), &dry_run);
    }
    api.silent_for(Duration::from_secs(280)).await;
    let call = api.next_within(Duration::from_secs(40)).await;
    call.assert(Method::POST, &format!("{EVENTS}?"));
    assert_eq!(
        call.body["series"]["count"], 21,
        "created with every occurrence counted"
    );
    call.created();
}

#[tokio::test(start_paused = true)]
async fn admission_records_events_except_for_dry_run_requests() {
    let (client, mut api) = mock();
    let inventory = synced_with(&[policy("staging", 1, "DryRun")]);
    let (sink, writer) = events::channel(client, inventory.clone(), EventLimits::default());
    tokio::spawn(writer.run());
    let admission = admission(inventory).with_sink(Arc::new(sink) as Arc<dyn ViolationSink>);

    // `kubectl apply --dry-run=server`: judged, but no side effects.
    let (allowed, _) = run_nginx(&admission, "demo", true).await;
    assert!(allowed, "DryRun policies admit");
    api.silent_for(Duration::from_secs(60)).await;

    assert!(run_nginx(&admission, "demo", false).await.0);
    let call = api.next_within(Duration::from_secs(1)).await;
    let note = call.body["note"].as_str().unwrap().to_string();
    assert_created_event(&call, "staging", "DryRun", &note);
    for part in [
        "DryRun policy would deny Pod web in namespace demo",
        "reason non_ecr_image",
        "container \"web\"",
        "nginx",
    ] {
        assert!(note.contains(part), "{part} in {note}");
    }
    call.created();
}

// ---------------------------------------------------------------------------
// Status helpers are what the writer sends

#[test]
fn the_status_constants_match_the_crd_columns() {
    let crd = ecr_guard::policy::crd_yaml().unwrap();
    assert!(crd.contains(&format!(
        ".status.conditions[?(@.type==\"{}\")].status",
        status::READY
    )));
    assert_eq!(status::ACCEPTED, "Accepted");
    assert_eq!(status::INVALID, "Invalid");
}

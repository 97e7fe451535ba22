//! `ecr-guard audit` with facts from moto (the real registry, its cache) and a
//! mock API server: a key disabled or scheduled for deletion after a Pod was
//! admitted shows in the next cycle's report.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use ecr_guard::audit::{AuditMetrics, Auditor, CycleSummary, KeyWarnings};
use ecr_guard::inventory::cluster::{ClusterInventory, PolicyFeed};
use ecr_guard::judging::Judge;
use ecr_guard::policy::Options;
use ecr_guard::registry::{RegistryConfig, RegistryMetrics};
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use support::api_server::{ApiServer, mock};
use support::moto::{Encryption, Moto};

const US: &str = "us-east-1";
/// The audit's cache TTL: at most one interval (see `run::audit`).
const INTERVAL: Duration = Duration::from_millis(200);

fn policy(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "ecrguard.io/v1alpha1",
        "kind": "EcrEncryptionPolicy",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

/// An inventory of these policies, and its policy feed (to add more later).
fn inventory_of(policies: Vec<DynamicObject>) -> (Arc<ClusterInventory>, PolicyFeed) {
    let (inventory, mut feed, mut namespaces) = ClusterInventory::new();
    feed.apply(Event::Init);
    for policy in policies {
        feed.apply(Event::InitApply(policy));
    }
    feed.apply(Event::InitDone);
    namespaces.apply(Event::Init);
    namespaces.apply(Event::InitDone);
    (inventory, feed)
}

fn inventory() -> Arc<ClusterInventory> {
    inventory_of(vec![policy(
        "cmk",
        json!({"rules": {"requireCustomerManagedKey": true}}),
    )])
    .0
}

/// An auditor of `inventory` with facts from moto, cached for [`INTERVAL`].
fn auditor(moto: &Moto, inventory: Arc<ClusterInventory>) -> (Arc<Auditor>, ApiServer) {
    let registry = support::registry(
        moto.endpoint(),
        RegistryConfig {
            cache_ttl: INTERVAL,
            ..RegistryConfig::default()
        },
        RegistryMetrics::default(),
    );
    let (client, api) = mock();
    let auditor = Arc::new(Auditor {
        events: KeyWarnings::new(client.clone()),
        client,
        inventory,
        judge: Judge::new(
            Arc::new(registry),
            Options::default(),
            Duration::from_secs(3),
        ),
        excluded_namespaces: vec!["kube-system".into()],
        spread: Duration::ZERO,
        metrics: AuditMetrics::default(),
    });
    (auditor, api)
}

fn pod(image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api-1", "namespace": "payments", "uid": "uid-api-1"},
        "spec": {"containers": [{"name": "api", "image": image}]},
        "status": {"phase": "Running"},
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Serves one cycle: the Pod list, the report list (`existing`), then every
/// apply and Event until the cycle ends. Returns the summary, the applied
/// bodies and the created Events.
async fn serve_cycle(
    auditor: &Arc<Auditor>,
    api: &mut ApiServer,
    pods: Vec<Value>,
    existing: Vec<Value>,
) -> (CycleSummary, Vec<Value>, Vec<Value>) {
    let mut task = tokio::spawn({
        let auditor = auditor.clone();
        async move { auditor.cycle().await }
    });
    let call = api.next().await;
    assert!(call.uri.starts_with("/api/v1/pods?"), "{}", call.uri);
    call.ok(list(pods));
    let call = api.next().await;
    assert!(
        call.uri
            .starts_with("/apis/wgpolicyk8s.io/v1alpha2/policyreports?"),
        "{}",
        call.uri
    );
    call.ok(list(existing));
    let (mut applied, mut events) = (Vec::new(), Vec::new());
    loop {
        tokio::select! {
            done = &mut task => return (done.unwrap(), applied, events),
            call = api.next() => {
                if call.method == Method::POST {
                    assert_eq!(call.uri, "/apis/events.k8s.io/v1/namespaces/payments/events?");
                    events.push(call.body.clone());
                } else {
                    assert_eq!(call.method, Method::PATCH, "{}", call.uri);
                    applied.push(call.body.clone());
                }
                let body = call.body.clone();
                call.ok(body);
            }
        }
    }
}

/// The value of `ecr_guard_audit_key_deletion_days_left` as `/metrics` shows
/// it, `None` when the series is absent.
fn days_left_series(auditor: &Auditor) -> Option<String> {
    let mut registry = prometheus_client::registry::Registry::default();
    auditor.metrics.clone().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("ecr_guard_audit_key_deletion_days_left "))
        .map(str::to_string)
}

/// (policy, result, rule, message) of each result.
fn findings(report: &Value) -> Vec<(String, String, String, String)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (s("policy"), s("result"), s("rule"), s("message"))
        })
        .collect()
}

#[tokio::test]
async fn a_key_disabled_or_scheduled_for_deletion_after_admission_fails_the_next_cycle() {
    let moto = Moto::start().await;
    let key = moto.create_key(US).await;
    moto.enable_key_rotation(&key).await;
    let repo = moto
        .create_repository(US, "payments/api", Encryption::Kms(key.arn.clone()))
        .await;
    let image = format!(
        "{}.dkr.ecr.{US}.amazonaws.com/{}:1",
        repo.account, repo.name
    );
    let (auditor, mut api) = auditor(&moto, inventory());

    // Admitted and passing.
    let (summary, applied, events) =
        serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![]).await;
    assert!(events.is_empty());
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert_eq!(applied.len(), 1);
    let report = applied[0].clone();
    assert_eq!(findings(&report)[0].1, "pass");
    assert_eq!(report["results"][0]["properties"]["keyState"], "Enabled");
    assert_eq!(
        report["results"][0]["properties"]["kmsKey"],
        key.arn.as_str()
    );

    // The key is disabled: the next cycle (past the cache TTL) fails it.
    moto.disable_key(&key).await;
    tokio::time::sleep(INTERVAL * 2).await;
    let (summary, applied, events) =
        serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![report]).await;
    // A Warning Event on the workload (here the Pod itself: it has no owner).
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["reason"], "KmsKeyUnusable");
    assert_eq!(events[0]["action"], "Audit");
    assert_eq!(events[0]["reportingController"], "ecrguard.io/ecr-guard");
    assert_eq!(events[0]["regarding"]["kind"], "Pod");
    assert_eq!(events[0]["regarding"]["name"], "api-1");
    assert!(
        events[0]["note"]
            .as_str()
            .unwrap()
            .contains("fail to pull now")
    );
    assert_eq!(summary.exit_code(), 1, "{summary}");
    assert_eq!(applied.len(), 1);
    let report = applied[0].clone();
    let found = findings(&report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        (
            found[0].0.as_str(),
            found[0].1.as_str(),
            found[0].2.as_str()
        ),
        ("cmk", "fail", "key_unusable")
    );
    assert_eq!(
        (
            found[1].0.as_str(),
            found[1].1.as_str(),
            found[1].2.as_str()
        ),
        ("ecr-guard-kms-key-state", "fail", "key_disabled")
    );
    assert!(found[1].3.contains("fail to pull now"), "{}", found[1].3);
    assert_eq!(report["summary"]["fail"], 2);

    assert_eq!(
        days_left_series(&auditor),
        None,
        "no deletion scheduled: no series"
    );

    // Scheduled for deletion (7 days): the warning says when, and how to cancel it.
    moto.schedule_key_deletion(&key).await;
    let deletion_date = moto
        .kms(US)
        .describe_key()
        .key_id(&key.id)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .and_then(|m| m.deletion_date().copied())
        .expect("moto reports DeletionDate after ScheduleKeyDeletion");
    let day = ecr_guard::policy::facts::utc_day(deletion_date.try_into().unwrap());
    tokio::time::sleep(INTERVAL * 2).await;
    let (_, applied, events) =
        serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![report]).await;
    assert_eq!(events.len(), 1, "a new state, a new Event");
    let found = findings(&applied[0]);
    assert_eq!(found[1].2, "key_pending_deletion");
    assert!(
        found[1].3.starts_with(&format!(
            "KMS key {} is scheduled for deletion on {day} (7 days): Pods using repository \
             payments/api will fail to pull after that",
            key.arn
        )),
        "{}",
        found[1].3
    );
    assert!(
        found[1].3.contains(&format!(
            "aws kms cancel-key-deletion --key-id {} --region {US}",
            key.arn
        )),
        "{}",
        found[1].3
    );
    let properties = &applied[0]["results"][1]["properties"];
    assert!(
        properties["keyDeletionDate"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{day}T")),
        "{properties}"
    );
    // The cmk policy's denial text names the date too.
    assert!(
        found[0].3.contains(&format!("(to be deleted on {day})")),
        "{}",
        found[0].3
    );
    assert_eq!(days_left_series(&auditor).as_deref(), Some("7"));

    // Nothing changed since: no write.
    let report = applied[0].clone();
    tokio::time::sleep(INTERVAL * 2).await;
    let (_, applied, events) =
        serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![report]).await;
    assert!(applied.is_empty());
    assert!(events.is_empty(), "one Event per workload, key and state");
}

/// The key-state warning holds whatever the policies: a Pod no policy judges
/// (here: no policy at all) still gets the failing result, the Event and the
/// days-left series when its repository's key is scheduled for deletion.
#[tokio::test]
async fn an_unusable_key_is_reported_for_a_pod_no_policy_judges() {
    let moto = Moto::start().await;
    let key = moto.create_key(US).await;
    let repo = moto
        .create_repository(US, "payments/api", Encryption::Kms(key.arn.clone()))
        .await;
    let image = format!(
        "{}.dkr.ecr.{US}.amazonaws.com/{}:1",
        repo.account, repo.name
    );
    let (auditor, mut api) = auditor(&moto, inventory_of(vec![]).0);

    // A usable key and no policy: nothing to report, nothing written.
    let (summary, applied, events) =
        serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![]).await;
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert!(applied.is_empty() && events.is_empty());

    moto.schedule_key_deletion(&key).await;
    tokio::time::sleep(INTERVAL * 2).await;
    let (summary, applied, events) =
        serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![]).await;
    assert_eq!(summary.exit_code(), 1, "{summary}");
    assert_eq!(events.len(), 1);
    assert_eq!(applied.len(), 1);
    let found = findings(&applied[0]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].0.as_str(),
            found[0].1.as_str(),
            found[0].2.as_str()
        ),
        ("ecr-guard-kms-key-state", "fail", "key_pending_deletion")
    );
    assert_eq!(days_left_series(&auditor).as_deref(), Some("7"));
}

#[tokio::test]
async fn rotation_turned_off_fails_enforce_warns_warn_and_a_new_policy_adds_results() {
    let moto = Moto::start().await;
    let key = moto.create_key(US).await;
    moto.enable_key_rotation(&key).await;
    let repo = moto
        .create_repository(US, "payments/api", Encryption::Kms(key.arn.clone()))
        .await;
    let image = format!(
        "{}.dkr.ecr.{US}.amazonaws.com/{}:1",
        repo.account, repo.name
    );
    let rotation = json!({"rules": {"requireKeyRotation": true}});
    let mut warned = rotation.clone();
    warned["mode"] = json!("Warn");
    let (inventory, mut feed) = inventory_of(vec![
        policy("rotate-enforced", rotation),
        policy("rotate-warned", warned),
    ]);
    let (auditor, mut api) = auditor(&moto, inventory);

    let (summary, applied, _) = serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![]).await;
    assert_eq!(summary.results.pass, 2, "{summary}");
    let report = applied[0].clone();

    moto.kms(US)
        .disable_key_rotation()
        .key_id(&key.id)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(INTERVAL * 2).await;
    let (summary, applied, events) =
        serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![report]).await;
    assert!(events.is_empty(), "rotation off does not break pulls");
    assert_eq!(summary.exit_code(), 1, "{summary}");
    let found = findings(&applied[0]);
    assert_eq!(
        found
            .iter()
            .map(|f| (f.0.as_str(), f.1.as_str(), f.2.as_str()))
            .collect::<Vec<_>>(),
        [
            ("rotate-enforced", "fail", "rotation_disabled"),
            ("rotate-warned", "warn", "rotation_disabled"),
        ]
    );
    assert_eq!(applied[0]["results"][1]["severity"], "medium");
    let report = applied[0].clone();

    // A new policy: its result appears in the next cycle.
    feed.apply(Event::Apply(policy(
        "aes-only",
        json!({"rules": {"allowedEncryptionTypes": ["AES256"]}}),
    )));
    let (_, applied, _) = serve_cycle(&auditor, &mut api, vec![pod(&image)], vec![report]).await;
    let found = findings(&applied[0]);
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(
        (
            found[0].0.as_str(),
            found[0].1.as_str(),
            found[0].2.as_str()
        ),
        ("aes-only", "fail", "encryption_type")
    );
}

/// The note's number: AWS calls of one cycle for 1,000 Pods over 50 repositories
/// (each with its own customer-managed key), counted by a proxy before moto.
/// Facts are cached, so each repository and key is asked about once per cycle:
/// 50 × (DescribeRepositories + DescribeKey + GetKeyRotationStatus) = 150.
#[tokio::test]
async fn a_cycle_of_1000_pods_over_50_repositories_asks_aws_about_each_once() {
    let moto = Moto::start().await;
    let proxy = support::proxy::Proxy::start(moto.endpoint()).await;
    let mut images = Vec::new();
    for n in 0..50 {
        let key = moto.create_key(US).await;
        moto.enable_key_rotation(&key).await;
        let repo = moto
            .create_repository(
                US,
                &format!("team/app-{n}"),
                Encryption::Kms(key.arn.clone()),
            )
            .await;
        images.push(format!(
            "{}.dkr.ecr.{US}.amazonaws.com/{}:1",
            repo.account, repo.name
        ));
    }
    let registry = support::registry(
        proxy.endpoint(),
        RegistryConfig::default(),
        RegistryMetrics::default(),
    );
    let (client, mut api) = mock();
    let auditor = Arc::new(Auditor {
        events: KeyWarnings::new(client.clone()),
        client,
        inventory: inventory(),
        judge: Judge::new(
            Arc::new(registry),
            Options::default(),
            Duration::from_secs(10),
        ),
        excluded_namespaces: vec!["kube-system".into()],
        spread: Duration::ZERO,
        metrics: AuditMetrics::default(),
    });
    let pods: Vec<Value> = (0..1000)
        .map(|n| {
            let mut pod = pod(&images[n % 50]);
            pod["metadata"]["name"] = json!(format!("api-{n}"));
            pod["metadata"]["uid"] = json!(format!("uid-{n}"));
            pod
        })
        .collect();
    let started = std::time::Instant::now();
    let (summary, applied, _) = serve_cycle(&auditor, &mut api, pods, vec![]).await;
    let took = started.elapsed();
    assert_eq!(summary.pods, 1000);
    assert_eq!(summary.results.pass, 1000, "{summary}");
    assert_eq!(applied[0]["results"].as_array().unwrap().len(), 1000);
    let calls = [
        proxy.count(support::proxy::DESCRIBE_REPOSITORIES),
        proxy.count(support::proxy::DESCRIBE_KEY),
        proxy.count(support::proxy::GET_KEY_ROTATION_STATUS),
    ];
    println!("1,000 Pods, 50 repositories: AWS calls {calls:?} in {took:?}");
    assert_eq!(calls, [50, 50, 50]);
}

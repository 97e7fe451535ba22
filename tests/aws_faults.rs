//! The webhook over real HTTPS while AWS misbehaves: a fault-injecting proxy sits
//! between ecr-guard and moto (latency, 500/503, throttling in the AWS wire format,
//! access denied, dropped and reset connections, a blackhole), for ECR and for KMS.
//!
//! For every fault, under `onLookupFailure: Deny` and `Allow`: the review is
//! answered with HTTP 200 within the lookup timeout plus [`MARGIN`], the verdict
//! follows the policy, and the message says the encryption could not be verified
//! and why.

mod support;

use std::time::{Duration, Instant};

use ecr_guard::registry::RegistryConfig;
use serde_json::{Value, json};
use support::https::post_review;
use support::moto::{ACCOUNT, Encryption, Moto, repository};
use support::proxy::{DESCRIBE_KEY, DESCRIBE_REPOSITORIES, Fault, GET_KEY_ROTATION_STATUS, Proxy};
use support::webhook::{Settings, Webhook};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// The lookup timeout of the webhooks under test.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// What an answer may take beyond the lookup timeout: a TLS handshake, JSON both
/// ways and scheduling on a shared 2-core machine. A correctness bound (the
/// deadline holds whatever AWS does), not a performance target.
const MARGIN: Duration = Duration::from_millis(750);

/// Two policies: namespace `deny` fails closed, namespace `allow` fails open.
const POLICIES: &str = "
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: fail-closed}
spec:
  namespaceSelector: {matchLabels: {lookup: deny}}
  rules: {allowedEncryptionTypes: [KMS, KMS_DSSE], requireKeyRotation: true}
  onLookupFailure: Deny
---
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: fail-open}
spec:
  namespaceSelector: {matchLabels: {lookup: allow}}
  rules: {allowedEncryptionTypes: [KMS, KMS_DSSE], requireKeyRotation: true}
  onLookupFailure: Allow
";

fn settings() -> Settings {
    let mut settings = Settings::new(POLICIES)
        .namespace("deny:lookup=deny")
        .namespace("allow:lookup=allow");
    settings.lookup_timeout = LOOKUP_TIMEOUT;
    settings
}

/// moto with `team/secure` (customer key, rotation on) and `team/plain` (AES256).
async fn aws() -> (Moto, Proxy) {
    let moto = Moto::start_with_team_repositories().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    (moto, proxy)
}

fn pod_review(uid: &str, namespace: &str, image: &str) -> Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "app", "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": namespace},
                       "spec": {"containers": [{"name": "app", "image": image}]}},
            "oldObject": null, "dryRun": false
        }
    })
}

/// Posts a review and checks the transport-level promises: HTTP 200, an
/// AdmissionReview with our uid, within the deadline. Returns the response.
async fn review_in_time(hook: &Webhook, uid: &str, namespace: &str, image: &str) -> Value {
    let started = Instant::now();
    let resp = post_review(hook.addr, &hook.ca, &pod_review(uid, namespace, image)).await;
    let took = started.elapsed();
    assert_eq!(
        resp.status,
        200,
        "{uid}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert!(
        took < LOOKUP_TIMEOUT + MARGIN,
        "{uid}: answered after {took:?}, deadline {LOOKUP_TIMEOUT:?} + {MARGIN:?}"
    );
    let body = resp.json();
    assert_eq!(body["response"]["uid"], uid);
    eprintln!(
        "{uid} [{namespace}] {image}: allowed={} in {took:.3?}",
        body["response"]["allowed"]
    );
    body["response"].clone()
}

struct Case {
    name: &'static str,
    target: Option<&'static str>,
    fault: Fault,
    /// The message names one of these as the reason (SDK retries of transient
    /// errors may end at the deadline instead of with the error itself).
    reasons: &'static [&'static str],
}

const TIMEOUT: &str = "AWS did not answer before the lookup deadline";
const THROTTLED: &str = "AWS throttled the lookup";
const DENIED: &str = "access denied: ";
const AWS_ERROR: &str = "AWS error: ";

fn cases() -> Vec<Case> {
    let case = |name, target, fault, reasons| Case {
        name,
        target,
        fault,
        reasons,
    };
    vec![
        case(
            "ECR latency past the deadline",
            Some(DESCRIBE_REPOSITORIES),
            Fault::Delay(LOOKUP_TIMEOUT * 3),
            &[TIMEOUT],
        ),
        case(
            "ECR blackholed",
            Some(DESCRIBE_REPOSITORIES),
            Fault::Hang,
            &[TIMEOUT],
        ),
        case(
            "KMS blackholed",
            Some(DESCRIBE_KEY),
            Fault::Hang,
            &[TIMEOUT],
        ),
        case(
            "ECR HTTP 500",
            Some(DESCRIBE_REPOSITORIES),
            Fault::error(500, "ServerException"),
            &[AWS_ERROR, TIMEOUT],
        ),
        case(
            "ECR HTTP 503",
            Some(DESCRIBE_REPOSITORIES),
            Fault::service_unavailable(),
            &[AWS_ERROR, TIMEOUT],
        ),
        case(
            "KMS HTTP 500",
            Some(DESCRIBE_KEY),
            Fault::error(500, "KMSInternalException"),
            &[AWS_ERROR, TIMEOUT],
        ),
        case(
            "ECR ThrottlingException",
            Some(DESCRIBE_REPOSITORIES),
            Fault::throttling(),
            &[THROTTLED, TIMEOUT],
        ),
        case(
            "KMS ThrottlingException",
            Some(DESCRIBE_KEY),
            Fault::throttling(),
            &[THROTTLED, TIMEOUT],
        ),
        case(
            "HTTP 429 TooManyRequestsException",
            None,
            Fault::error(429, "TooManyRequestsException"),
            &[THROTTLED, TIMEOUT],
        ),
        case(
            "ECR AccessDeniedException",
            Some(DESCRIBE_REPOSITORIES),
            Fault::access_denied(),
            &[DENIED],
        ),
        case(
            "connection closed",
            Some(DESCRIBE_REPOSITORIES),
            Fault::CloseConnection,
            &[AWS_ERROR, TIMEOUT],
        ),
        case(
            "connection reset",
            Some(DESCRIBE_REPOSITORIES),
            Fault::Reset,
            &[AWS_ERROR, TIMEOUT],
        ),
        case(
            "KMS connection reset",
            Some(DESCRIBE_KEY),
            Fault::Reset,
            &[AWS_ERROR, TIMEOUT],
        ),
    ]
}

fn set(proxy: &Proxy, case: &Case) {
    proxy.clear_faults();
    match case.target {
        Some(target) => proxy.set_fault_for(target, case.fault.clone()),
        None => proxy.set_fault(case.fault.clone()),
    }
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_fails_closed_under_deny_within_the_deadline() {
    let (_moto, proxy) = aws().await;
    let good = format!("{HOST}/team/secure:1");
    let bad = format!("{HOST}/team/plain:1");
    for case in cases() {
        // A webhook per case, so that no answer cached in an earlier case (the
        // repository, when only KMS failed) hides this one's fault.
        let hook = Webhook::start(proxy.endpoint(), settings()).await;
        set(&proxy, &case);
        // Errors are never cached: each review below meets the fault afresh.
        let r = review_in_time(&hook, case.name, "deny", &good).await;
        assert_eq!(r["allowed"], false, "{}: {r}", case.name);
        assert_eq!(r["status"]["code"], 403, "{}", case.name);
        let message = message(&r);
        assert!(
            message.contains("the encryption of repository team/secure could not be verified"),
            "{}: {message}",
            case.name
        );
        let reason = case.reasons.iter().find(|reason| message.contains(*reason));
        assert!(
            reason.is_some(),
            "{}: expected one of {:?} in {message}",
            case.name,
            case.reasons
        );
        eprintln!("{}: reason {:?}", case.name, reason.unwrap());
        assert!(
            message.contains("policy fail-closed denies images it cannot verify"),
            "{message}"
        );
        // A non-compliant image stays denied, whatever AWS does (for KMS faults
        // it is denied for its AES256 encryption, which needs no KMS call).
        let r = review_in_time(&hook, case.name, "deny", &bad).await;
        assert_eq!(r["allowed"], false, "{}: {r}", case.name);
        assert_eq!(r["status"]["code"], 403, "{}", case.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_admits_with_a_warning_under_allow_within_the_deadline() {
    let (_moto, proxy) = aws().await;
    let good = format!("{HOST}/team/secure:1");
    for case in cases() {
        let hook = Webhook::start(proxy.endpoint(), settings()).await;
        set(&proxy, &case);
        let r = review_in_time(&hook, case.name, "allow", &good).await;
        assert_eq!(r["allowed"], true, "{}: {r}", case.name);
        let warnings = r["warnings"].to_string();
        assert!(
            warnings.contains("encryption of repository team/secure not verified"),
            "{}: {warnings}",
            case.name
        );
        assert!(
            case.reasons.iter().any(|reason| {
                // Warnings are shortened to ~120 characters; the reason's first
                // words survive.
                let head: String = reason.chars().take(12).collect();
                warnings.contains(&head)
            }),
            "{}: expected one of {:?} in {warnings}",
            case.name,
            case.reasons
        );
    }
}

/// The value of one series of the webhook's `/metrics`, 0 when absent.
async fn metric(hook: &Webhook, series: &str) -> f64 {
    let (status, text) = hook.admin_get("/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The reported case, against moto: a key policy that lets ecr-guard's role
/// DescribeKey but not GetKeyRotationStatus, on a key that rotates. KMS answers
/// AccessDenied (the proxy answers in moto's place as KMS does: HTTP 400,
/// `AccessDeniedException`, JSON body). The denial says rotation is unknown,
/// with its own reason and metric label and the hint to grant the permission;
/// never "rotation disabled" and `aws kms enable-key-rotation`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_status_refused_by_the_key_policy_is_unknown_not_disabled() {
    let (moto, proxy) = aws().await;
    let key = moto
        .reported_kms_key(&repository(ACCOUNT, "us-east-1", "team/secure"))
        .await
        .expect("team/secure names its key");
    proxy.set_fault_for(
        GET_KEY_ROTATION_STATUS,
        Fault::kms_access_denied("kms:GetKeyRotationStatus", &key),
    );
    let hook = Webhook::start(proxy.endpoint(), settings()).await;

    let r = review_in_time(
        &hook,
        "rotation-unknown",
        "deny",
        &format!("{HOST}/team/secure:1"),
    )
    .await;

    assert_eq!(r["allowed"], false, "{r}");
    let message = message(&r);
    assert!(
        message.contains(&format!(
            "the rotation status of KMS key {key} is unknown (GetKeyRotationStatus was denied: User: "
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "hint: allow ecr-guard's IAM role kms:GetKeyRotationStatus in the key policy of {key}"
        )),
        "{message}"
    );
    for wrong in ["rotation disabled", "enable-key-rotation", "hint: retry"] {
        assert!(!message.contains(wrong), "{wrong:?} in {message}");
    }
    assert_eq!(proxy.count(GET_KEY_ROTATION_STATUS), 1);
    let series = |reason: &str| {
        format!(
            "ecr_guard_policy_violations_total{{policy=\"fail-closed\",mode=\"Enforce\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(metric(&hook, &series("rotation_unknown")).await, 1.0);
    assert_eq!(metric(&hook, &series("rotation_disabled")).await, 0.0);
}

/// DescribeKey refused by the key policy: the key is unknown (its own reason),
/// and the hint grants DescribeKey; DescribeRepositories refused: the lookup
/// failed, and the hint grants DescribeRepositories, not "retry".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_are_unknown_with_the_permission_to_grant() {
    let (moto, proxy) = aws().await;
    let key = moto
        .reported_kms_key(&repository(ACCOUNT, "us-east-1", "team/secure"))
        .await
        .expect("team/secure names its key");
    let image = format!("{HOST}/team/secure:1");

    proxy.set_fault_for(
        DESCRIBE_KEY,
        Fault::kms_access_denied("kms:DescribeKey", &key),
    );
    let hook = Webhook::start(proxy.endpoint(), settings()).await;
    let r = review_in_time(&hook, "describe-key-denied", "deny", &image).await;
    let text = message(&r);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        text.contains("which ecr-guard cannot describe (DescribeKey was denied"),
        "{text}"
    );
    assert!(
        text.contains(&format!("hint: allow ecr-guard's IAM role kms:DescribeKey and kms:GetKeyRotationStatus in the key policy of {key}")),
        "{text}"
    );
    assert!(!text.contains("enable-key-rotation"), "{text}");
    let series = "ecr_guard_policy_violations_total{policy=\"fail-closed\",mode=\"Enforce\",reason=\"key_unknown\"}";
    assert_eq!(metric(&hook, series).await, 1.0);

    proxy.clear_faults();
    proxy.set_fault_for(DESCRIBE_REPOSITORIES, Fault::access_denied());
    let hook = Webhook::start(proxy.endpoint(), settings()).await;
    let r = review_in_time(&hook, "describe-repositories-denied", "deny", &image).await;
    let message = message(&r);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message.contains(
            "hint: allow ecr-guard's IAM role ecr:DescribeRepositories on repository team/secure \
             in account 123456789012, region us-east-1"
        ),
        "{message}"
    );
    assert!(!message.contains("hint: retry"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_inside_the_deadline_changes_nothing() {
    let (_moto, proxy) = aws().await;
    let hook = Webhook::start(proxy.endpoint(), settings()).await;
    proxy.set_fault(Fault::Delay(Duration::from_millis(200)));
    for namespace in ["deny", "allow"] {
        let r = review_in_time(
            &hook,
            "slow-good",
            namespace,
            &format!("{HOST}/team/secure:1"),
        )
        .await;
        assert_eq!(r["allowed"], true, "{r}");
        assert!(r["warnings"].is_null(), "{r}");
        let r = review_in_time(
            &hook,
            "slow-bad",
            namespace,
            &format!("{HOST}/team/plain:1"),
        )
        .await;
        assert_eq!(r["allowed"], false, "{r}");
        assert!(message(&r).contains("is encrypted with AES256"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_are_served_while_aws_fails_and_fresh_ones_after() {
    let (moto, proxy) = aws().await;
    let mut settings = settings();
    settings.registry = RegistryConfig {
        cache_ttl: Duration::from_millis(1500),
        stale_ttl: Duration::from_secs(60),
        ..RegistryConfig::default()
    };
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    let image = format!("{HOST}/team/secure:1");

    let r = review_in_time(&hook, "warm", "deny", &image).await;
    assert_eq!(r["allowed"], true, "{r}");

    // The entry expires; AWS goes down.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    proxy.set_fault(Fault::service_unavailable());
    let r = review_in_time(&hook, "stale", "deny", &image).await;
    assert_eq!(r["allowed"], true, "the expired answer is served: {r}");
    let (_, metrics) = hook.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"ecr_guard_cache_requests_total{cache="repository",result="stale"} 1"#),
        "{metrics}"
    );

    // Meanwhile the repository is recreated with AES256; once AWS is back the
    // webhook sees it.
    let ecr = moto.ecr("us-east-1");
    ecr.delete_repository()
        .repository_name("team/secure")
        .force(true)
        .send()
        .await
        .expect("DeleteRepository");
    moto.create_repository("us-east-1", "team/secure", Encryption::Aes256)
        .await;
    proxy.clear_faults();
    let r = review_in_time(&hook, "fresh", "deny", &image).await;
    assert_eq!(r["allowed"], false, "fresh data after recovery: {r}");
    assert!(message(&r).contains("is encrypted with AES256"), "{r}");
}

/// A webhook with a cap of 4 concurrent AWS calls in front of `proxy`, which
/// delays every call by 100 ms so that calls pile up if nothing holds them back.
async fn slow_capped_webhook(proxy: &Proxy) -> Webhook {
    let mut settings = settings();
    settings.lookup_timeout = Duration::from_secs(5);
    settings.registry = RegistryConfig {
        // 3 for repositories, 1 for KMS.
        max_concurrent_calls: 4,
        ..RegistryConfig::default()
    };
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    proxy.set_fault(Fault::Delay(Duration::from_millis(100)));
    hook
}

/// Sends one Pod review per image (namespace `deny`) at once; every answer is
/// HTTP 200; returns the AdmissionReview bodies.
async fn review_all_at_once(hook: Webhook, images: Vec<String>) -> Vec<Value> {
    let hook = std::sync::Arc::new(hook);
    let mut tasks = tokio::task::JoinSet::new();
    for image in images {
        let hook = hook.clone();
        tasks.spawn(async move {
            let resp = post_review(hook.addr, &hook.ca, &pod_review("burst", "deny", &image)).await;
            assert_eq!(resp.status, 200);
            resp.json()
        });
    }
    tasks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_many_unknown_repositories_is_capped_in_flight() {
    let (_moto, proxy) = aws().await;
    let hook = slow_capped_webhook(&proxy).await;
    let images = (0..40)
        .map(|i| format!("{HOST}/burst/repo-{i}:1"))
        .collect();
    for body in review_all_at_once(hook, images).await {
        // None of these repositories exists: denied, never admitted.
        assert_eq!(body["response"]["allowed"], false, "{body}");
    }
    assert_eq!(proxy.count(DESCRIBE_REPOSITORIES), 40);
    assert!(
        proxy.max_in_flight() <= 4,
        "{} AWS calls in flight at once, cap 4",
        proxy.max_in_flight()
    );
}

/// A cold burst over many repositories sharing one key: the key's KMS calls do
/// not wait behind every queued `DescribeRepositories` (they have their own
/// share of the cap), so reviews are answered as their repositories arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lookups_do_not_queue_behind_repository_lookups() {
    let moto = Moto::start().await;
    let key = moto.create_key("us-east-1").await;
    moto.enable_key_rotation(&key).await;
    for i in 0..12 {
        moto.create_repository(
            "us-east-1",
            &format!("fleet/svc-{i}"),
            Encryption::Kms(key.arn.clone()),
        )
        .await;
    }
    let proxy = Proxy::start(moto.endpoint()).await;
    let hook = slow_capped_webhook(&proxy).await;
    let images = (0..12).map(|i| format!("{HOST}/fleet/svc-{i}:1")).collect();
    for body in review_all_at_once(hook, images).await {
        assert_eq!(body["response"]["allowed"], true, "{body}");
    }
    let arrivals = proxy.arrivals();
    let first_key_call = arrivals.iter().position(|t| t == DESCRIBE_KEY);
    let last_repository_call = arrivals.iter().rposition(|t| t == DESCRIBE_REPOSITORIES);
    assert_eq!(proxy.count(DESCRIBE_REPOSITORIES), 12, "{arrivals:?}");
    assert_eq!(proxy.count(DESCRIBE_KEY), 1, "{arrivals:?}");
    assert!(
        first_key_call < last_repository_call,
        "DescribeKey waited for every DescribeRepositories: {arrivals:?}"
    );
    assert!(
        proxy.max_in_flight() <= 4,
        "{} in flight, cap 4",
        proxy.max_in_flight()
    );
}

/// The proxy's own promise: a reset is a reset, seen by a plain client.
#[tokio::test]
async fn reset_fault_resets_the_connection() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(&format!("http://{}", upstream.local_addr().unwrap())).await;
    proxy.set_fault(Fault::Reset);
    let addr: std::net::SocketAddr = proxy
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let err = s
        .read_to_end(&mut buf)
        .await
        .expect_err("a reset, not a clean close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(proxy.faulted().get("reset"), Some(&1));
}

/// A flood of distinct repositories cannot grow the cache past its capacity:
/// sent again, almost all of them have to be looked up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_repositories_stays_within_the_cache_capacity() {
    const CAPACITY: u64 = 20;
    const REPOS: usize = 400;
    let (_moto, proxy) = aws().await;
    let mut settings = settings();
    settings.lookup_timeout = Duration::from_secs(5);
    settings.registry = RegistryConfig {
        max_entries: CAPACITY,
        ..RegistryConfig::default()
    };
    let hook = Webhook::start(proxy.endpoint(), settings).await;
    let flood = |round: &'static str| {
        let hook = &hook;
        async move {
            for batch in 0..REPOS / 10 {
                let containers: Vec<Value> = (0..10)
                    .map(|i| {
                        json!({"name": format!("c{i}"),
                               "image": format!("{HOST}/flood/repo-{}:1", batch * 10 + i)})
                    })
                    .collect();
                let mut review = pod_review(round, "deny", "x");
                review["request"]["object"]["spec"]["containers"] = json!(containers);
                let resp = post_review(hook.addr, &hook.ca, &review).await;
                assert_eq!(resp.status, 200);
                // None of them exists: denied.
                assert_eq!(resp.json()["response"]["allowed"], false);
            }
        }
    };
    flood("first").await;
    let first = proxy.count(DESCRIBE_REPOSITORIES);
    assert_eq!(first, REPOS);
    flood("second").await;
    let again = proxy.count(DESCRIBE_REPOSITORIES) - first;
    // The answer cache holds at most CAPACITY answers (at this size one shard,
    // which evicts on insert), so at most CAPACITY of the second round are hits.
    assert!(
        again >= REPOS - CAPACITY as usize,
        "only {again} of {REPOS} repositories were looked up again: the cache holds more than {CAPACITY}"
    );
    eprintln!("flood: {REPOS} repositories, capacity {CAPACITY}: {again} looked up again");
}

/// `ecr-guard check` with no AWS credentials anywhere, run as a user would
/// (a clean environment, no ~/.aws) on a machine whose instance metadata
/// endpoint refuses (here a local stand-in answering 403, as a blocked IMDS
/// does). It says plainly, in one line, that no credentials were found and
/// where they were looked for, and the hint says what to set, not "retry";
/// stderr carries none of the credential chain's `Debug` dumps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_credentials_says_what_to_set_in_one_line() {
    let imds = Proxy::start("http://127.0.0.1:9").await;
    imds.set_fault(Fault::Answer {
        status: 403,
        body: "IMDS is not for you".to_owned(),
    });
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/examples/regulated-require-cmk.yaml"
    );
    let endpoint = imds.endpoint().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
            .args(["check", "--policy-file", policy])
            .args(["--namespace-labels", "payments:compliance=regulated"])
            .args(["-n", "payments", "--image"])
            .arg(format!("{HOST}/payments/api:1.4"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent/ecr-guard-home")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
            .output()
            .expect("run ecr-guard check")
    })
    .await
    .expect("runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("stdout:\n{stdout}\nstderr:\n{stderr}");

    assert_eq!(output.status.code(), Some(1), "denied, not a crash");
    assert!(
        stdout.contains(
            "could not be verified (no AWS credentials were found (looked in environment variables \
             (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), the shared config and credentials files (AWS_PROFILE), \
             a web identity token (IRSA: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), the container credentials \
             endpoint (EKS Pod Identity / ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI), and EC2 instance metadata (IMDS)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "hint: give ecr-guard AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("hint: retry"), "{stdout}");
    assert!(imds.faulted().values().sum::<usize>() > 0, "IMDS was asked");
    for dump in ["FailedToLoadToken(", "SdkBody", "ServiceError {"] {
        assert!(!stderr.contains(dump), "{dump} on stderr:\n{stderr}");
        assert!(!stdout.contains(dump), "{dump} on stdout:\n{stdout}");
    }
    assert!(stderr.lines().all(|line| line.len() < 300), "{stderr}");
}

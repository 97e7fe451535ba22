//! `ecr-guard scan` (issue 19) as a process against moto, through the counting,
//! fault-injecting proxy: two regions × two accounts (one reached through an
//! assumed role) with a known mix of encryption, so every count, finding,
//! verdict and cost of `--output json` is asserted exactly; the AWS calls
//! (each key described once); throttling; pagination past 1,000
//! repositories; exit codes; `--namespace`.
//!
//! In moto's place the proxy answers only what moto cannot model: the
//! pull-through cache APIs (`support/pull_through.rs`) and `DescribeKey` of
//! the AWS-managed `aws/ecr` key (moto names a key that does not exist; see
//! `support/moto.rs`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use support::moto::{ACCOUNT, Encryption, Moto, aws_ecr_key_metadata};
use support::proxy::{
    ASSUME_ROLE, DESCRIBE_KEY, DESCRIBE_PULL_THROUGH_CACHE_RULES, DESCRIBE_REPOSITORIES,
    DESCRIBE_REPOSITORY_CREATION_TEMPLATES, Fault, GET_KEY_ROTATION_STATUS, Proxy,
};

const US: &str = "us-east-1";
const EU: &str = "eu-west-1";
/// The central registry account, reached through a role.
const CENTRAL: &str = "111111111111";
/// `--assume-role` for the central account.
const CENTRAL_ROLE: &str = "111111111111=arn:aws:iam::111111111111:role/ecr-guard-reader";
/// An account whose listing the proxy denies.
const DENIED: &str = "222222222222";

/// `require-kms` (Enforce, every namespace) and `rotation` (Warn, namespaces
/// labelled team=payments only).
const POLICIES: &str = "\
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: require-kms}
spec:
  mode: Enforce
  images: ['*']
  rules: {allowedEncryptionTypes: [KMS, KMS_DSSE]}
---
apiVersion: ecrguard.io/v1alpha1
kind: EcrEncryptionPolicy
metadata: {name: rotation}
spec:
  mode: Warn
  images: ['*']
  namespaceSelector: {matchLabels: {team: payments}}
  rules: {requireCustomerManagedKey: true, requireKeyRotation: true}
";

struct Run {
    code: i32,
    report: Value,
    stderr: String,
}

/// Runs `ecr-guard scan -o json ARGS` against `endpoint` (as account
/// [`ACCOUNT`], region us-east-1 configured).
async fn scan(endpoint: &str, dir: &Path, args: &[&str]) -> Run {
    let mut json = vec!["-o", "json"];
    json.extend(args);
    let (code, stdout, stderr) = scan_text(endpoint, dir, &json).await;
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    Run {
        code,
        report,
        stderr,
    }
}

/// Runs `ecr-guard scan ARGS` (any output) against `endpoint`:
/// `(exit code, stdout, stderr)`.
async fn scan_text(endpoint: &str, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let policies = dir.join("policies.yaml");
    std::fs::write(&policies, POLICIES).expect("write policies");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
    cmd.arg("scan")
        .arg("--policy-file")
        .arg(&policies)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", US)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("ECR_GUARD_LOG_LEVEL", "warn");
    // The proxy runs on this test's runtime: wait for the process off it.
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run ecr-guard scan"))
        .await
        .expect("scan thread");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The key ARNs of the mix, to assert the report against.
struct Keys {
    shared: String,
    no_rotation: String,
    disabled: String,
    pending: String,
    /// The pending key's DeletionDate as KMS reports it (RFC 3339, UTC).
    pending_deletion: String,
    eu: String,
    central: String,
    aws_managed: String,
}

/// Seeds the mix (12 repositories in 3 of the 4 registries; central's
/// eu-west-1 registry is empty) and the pull-through rule `docker-hub` of
/// ecr-guard's own us-east-1 registry, with no creation template (AES256).
async fn seed(moto: &Moto, proxy: &Proxy) -> Keys {
    let key = |region: &'static str, rotate: bool| async move {
        let key = moto.create_key(region).await;
        if rotate {
            moto.enable_key_rotation(&key).await;
        }
        key
    };
    let shared = key(US, true).await;
    let no_rotation = key(US, false).await;
    let disabled = key(US, true).await;
    moto.disable_key(&disabled).await;
    let pending = key(US, true).await;
    moto.schedule_key_deletion(&pending).await;
    let deletion: std::time::SystemTime = moto
        .kms(US)
        .describe_key()
        .key_id(&pending.id)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .and_then(|m| m.deletion_date().copied())
        .expect("moto reports DeletionDate after ScheduleKeyDeletion")
        .try_into()
        .unwrap();
    let pending_deletion = ecr_guard::policy::facts::rfc3339_utc(deletion).unwrap();
    let eu = key(EU, true).await;

    moto.create_repository(US, "app/aes", Encryption::Aes256)
        .await;
    let default = moto
        .create_repository(US, "app/default", Encryption::KmsDefaultKey)
        .await;
    for name in ["app/shared-1", "app/shared-2", "app/shared-3"] {
        moto.create_repository(US, name, Encryption::Kms(shared.arn.clone()))
            .await;
    }
    moto.create_repository(
        US,
        "app/no-rotation",
        Encryption::Kms(no_rotation.arn.clone()),
    )
    .await;
    moto.create_repository(US, "app/disabled", Encryption::Kms(disabled.arn.clone()))
        .await;
    moto.create_repository(US, "app/pending", Encryption::Kms(pending.arn.clone()))
        .await;
    moto.create_repository(EU, "eu/aes", Encryption::Unspecified)
        .await;
    moto.create_repository(EU, "eu/cmk", Encryption::Kms(eu.arn.clone()))
        .await;

    let central = moto.as_account(CENTRAL).await;
    let central_key = central.create_key(US).await;
    central
        .create_repository(US, "central/aes", Encryption::Aes256)
        .await;
    central
        .create_repository(US, "central/cmk", Encryption::Kms(central_key.arn.clone()))
        .await;

    // moto names a key that does not exist for KMS without a key; AWS names
    // the AWS-managed aws/ecr key, which the proxy describes as KMS does.
    let aws_managed = moto
        .reported_kms_key(&default)
        .await
        .expect("moto names a key");
    proxy.set_fault_for_body(
        DESCRIBE_KEY,
        &aws_managed,
        Fault::Answer {
            status: 200,
            body: aws_ecr_key_metadata(&aws_managed),
        },
    );
    proxy
        .pull_through()
        .add_rule(ACCOUNT, "docker-hub", "registry-1.docker.io");
    Keys {
        shared: shared.arn,
        no_rotation: no_rotation.arn,
        disabled: disabled.arn,
        pending: pending.arn,
        pending_deletion,
        eu: eu.arn,
        central: central_key.arn,
        aws_managed,
    }
}

const BOTH_REGIONS_AND_CENTRAL: &[&str] = &[
    "--region",
    US,
    "--region",
    EU,
    "--account",
    CENTRAL,
    "--assume-role",
    CENTRAL_ROLE,
];

fn repository<'r>(report: &'r Value, account: &str, region: &str, name: &str) -> &'r Value {
    report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .find(|r| r["account"] == account && r["region"] == region && r["name"] == name)
        .unwrap_or_else(|| panic!("{account}/{region}/{name} not in the report"))
}

fn codes(repo: &Value) -> Vec<&str> {
    repo["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["code"].as_str().expect("code"))
        .collect()
}

/// `(policy, allowed, reasons)` of each verdict.
fn verdicts(repo: &Value) -> Vec<(String, bool, Vec<String>)> {
    repo["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .map(|v| {
            (
                v["policy"].as_str().expect("policy").to_owned(),
                v["allowed"].as_bool().expect("allowed"),
                v["reasons"]
                    .as_array()
                    .expect("reasons")
                    .iter()
                    .map(|r| r.as_str().expect("reason").to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn v(policy: &str, allowed: bool, reasons: &[&str]) -> (String, bool, Vec<String>) {
    (
        policy.to_owned(),
        allowed,
        reasons.iter().map(|r| (*r).to_owned()).collect(),
    )
}

/// `(encryptionType, kmsKey, keyManager, keyState, keyRotation)`.
fn encryption(repo: &Value) -> (Value, Value, Value, Value, Value) {
    (
        repo["encryptionType"].clone(),
        repo["kmsKey"].clone(),
        repo["keyManager"].clone(),
        repo["keyState"].clone(),
        repo["keyRotation"].clone(),
    )
}

fn kms(
    key: &str,
    manager: &str,
    state: &str,
    rotation: &str,
) -> (Value, Value, Value, Value, Value) {
    (
        json!("KMS"),
        json!(key),
        json!(manager),
        json!(state),
        json!(rotation),
    )
}

fn aes() -> (Value, Value, Value, Value, Value) {
    (
        json!("AES256"),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_estate_is_reported_exactly_counted_judged_and_priced() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    let keys = seed(&moto, &proxy).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = BOTH_REGIONS_AND_CENTRAL.to_vec();
    args.extend(["--kms-requests-per-month", "2000000"]);

    let run = scan(proxy.endpoint(), dir.path(), &args).await;
    let r = &run.report;

    assert_eq!(run.code, 1, "Enforce violations, no errors: {}", run.stderr);
    assert!(r.get("errors").is_none(), "{r:#}");
    let names: Vec<(&str, &str, &str)> = r["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|x| {
            (
                x["account"].as_str().unwrap(),
                x["region"].as_str().unwrap(),
                x["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (CENTRAL, US, "central/aes"),
            (CENTRAL, US, "central/cmk"),
            (ACCOUNT, EU, "eu/aes"),
            (ACCOUNT, EU, "eu/cmk"),
            (ACCOUNT, US, "app/aes"),
            (ACCOUNT, US, "app/default"),
            (ACCOUNT, US, "app/disabled"),
            (ACCOUNT, US, "app/no-rotation"),
            (ACCOUNT, US, "app/pending"),
            (ACCOUNT, US, "app/shared-1"),
            (ACCOUNT, US, "app/shared-2"),
            (ACCOUNT, US, "app/shared-3"),
        ],
        "sorted by account, region, name"
    );

    // Per repository: encryption, findings, verdicts.
    let aes_verdicts = [
        v("require-kms", false, &["encryption_type"]),
        v("rotation", false, &["customer_managed_key_required"]),
    ];
    for (account, region, name) in [
        (CENTRAL, US, "central/aes"),
        (ACCOUNT, EU, "eu/aes"),
        (ACCOUNT, US, "app/aes"),
    ] {
        let repo = repository(r, account, region, name);
        assert_eq!(encryption(repo), aes(), "{name}");
        assert_eq!(codes(repo), ["aes256-where-kms-required"], "{name}");
        assert_eq!(verdicts(repo), aes_verdicts, "{name}");
    }
    let central_cmk = repository(r, CENTRAL, US, "central/cmk");
    assert_eq!(
        encryption(central_cmk),
        kms(&keys.central, "CUSTOMER", "Enabled", "Disabled")
    );
    assert_eq!(codes(central_cmk), ["key-rotation-disabled"]);
    assert_eq!(
        verdicts(central_cmk),
        [
            v("require-kms", true, &[]),
            v("rotation", false, &["rotation_disabled"])
        ]
    );
    let compliant = [v("require-kms", true, &[]), v("rotation", true, &[])];
    let eu_cmk = repository(r, ACCOUNT, EU, "eu/cmk");
    assert_eq!(
        encryption(eu_cmk),
        kms(&keys.eu, "CUSTOMER", "Enabled", "Enabled")
    );
    assert_eq!(codes(eu_cmk), Vec::<&str>::new());
    assert_eq!(verdicts(eu_cmk), compliant);
    for name in ["app/shared-1", "app/shared-2", "app/shared-3"] {
        let repo = repository(r, ACCOUNT, US, name);
        assert_eq!(
            encryption(repo),
            kms(&keys.shared, "CUSTOMER", "Enabled", "Enabled")
        );
        assert_eq!(codes(repo), Vec::<&str>::new());
        assert_eq!(verdicts(repo), compliant);
    }
    let default = repository(r, ACCOUNT, US, "app/default");
    assert_eq!(
        encryption(default),
        kms(&keys.aws_managed, "AWS", "Enabled", "AwsManaged")
    );
    assert_eq!(codes(default), Vec::<&str>::new());
    assert_eq!(
        verdicts(default),
        [
            v("require-kms", true, &[]),
            v("rotation", false, &["customer_managed_key_required"])
        ]
    );
    let no_rotation = repository(r, ACCOUNT, US, "app/no-rotation");
    assert_eq!(
        encryption(no_rotation),
        kms(&keys.no_rotation, "CUSTOMER", "Enabled", "Disabled")
    );
    assert_eq!(codes(no_rotation), ["key-rotation-disabled"]);
    assert_eq!(
        verdicts(no_rotation),
        [
            v("require-kms", true, &[]),
            v("rotation", false, &["rotation_disabled"])
        ]
    );
    let disabled = repository(r, ACCOUNT, US, "app/disabled");
    assert_eq!(
        encryption(disabled),
        kms(&keys.disabled, "CUSTOMER", "Disabled", "Enabled")
    );
    assert_eq!(codes(disabled), ["key-disabled"]);
    assert_eq!(
        verdicts(disabled),
        [
            v("require-kms", false, &["key_unusable"]),
            v("rotation", false, &["key_unusable"])
        ]
    );
    let pending = repository(r, ACCOUNT, US, "app/pending");
    assert_eq!(
        encryption(pending),
        kms(&keys.pending, "CUSTOMER", "PendingDeletion", "Enabled")
    );
    assert_eq!(codes(pending), ["key-pending-deletion"]);
    assert_eq!(pending["keyDeletionDate"], keys.pending_deletion.as_str());
    let day = &keys.pending_deletion[..10];
    assert!(
        pending["findings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "key {} is scheduled for deletion on {day}: pulls fail now",
                keys.pending
            )),
        "{}",
        pending["findings"][0]
    );
    assert_eq!(disabled["keyDeletionDate"], Value::Null);
    assert_eq!(
        verdicts(pending),
        [
            v("require-kms", false, &["key_unusable"]),
            v("rotation", false, &["key_unusable"])
        ]
    );
    // The denial text, as admission words it.
    assert_eq!(
        repository(r, ACCOUNT, US, "app/aes")["verdicts"][0]["messages"],
        json!([
            "container \"scan\" image 123456789012.dkr.ecr.us-east-1.amazonaws.com/app/aes:latest: \
             repository app/aes is encrypted with AES256; policy require-kms allows only KMS, KMS_DSSE"
        ])
    );

    // The pull-through rule (the proxy holds rules per account, so both of
    // its regions have it): no template, so ECR's default AES256.
    let rules = r["pullThroughRules"].as_array().expect("pullThroughRules");
    let where_: Vec<(&str, &str)> = rules
        .iter()
        .map(|x| {
            (
                x["account"].as_str().unwrap(),
                x["region"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(where_, [(ACCOUNT, EU), (ACCOUNT, US)], "{rules:#?}");
    for rule in rules {
        assert_eq!(
            (&rule["prefix"], &rule["upstream"], &rule["template"]),
            (
                &json!("docker-hub"),
                &json!("registry-1.docker.io"),
                &Value::Null
            )
        );
        assert_eq!(encryption(rule), aes());
        assert_eq!(
            codes(rule),
            [
                "aes256-where-kms-required",
                "pull-through-template-non-compliant"
            ]
        );
        assert_eq!(verdicts(rule), aes_verdicts);
    }

    assert_eq!(
        r["summary"],
        json!({
            "repositories": 12,
            "byEncryptionType": {"AES256": 3, "KMS": 9, "KMS_DSSE": 0},
            "violations": 8,
            "enforcedViolations": 5,
            "withFindings": 7,
            "byVerdict": {"allowed": 4, "denied": 5, "warned": 3, "dryRun": 0},
            "registries": 4,
        })
    );
    // Six distinct customer-managed keys (the shared one once; the AWS-managed
    // one free); 2,000,000 requests at $0.03 per 10,000; one new key in each
    // of the three registries with a refused repository.
    let cost = &r["cost"];
    assert_eq!(cost["customerManagedKeys"], 6);
    let usd = |field: &str| cost[field].as_f64().expect(field);
    assert!((usd("keyMonthlyUsd") - 6.0).abs() < 1e-9, "{cost:#}");
    assert!((usd("requestsMonthlyUsd") - 6.0).abs() < 1e-9, "{cost:#}");
    assert!((usd("monthlyUsd") - 12.0).abs() < 1e-9, "{cost:#}");
    assert!((usd("toComplyMonthlyUsd") - 3.0).abs() < 1e-9, "{cost:#}");
    assert_eq!(
        cost["prices"],
        json!({"kmsKeyMonthlyUsd": 1.0, "kmsRequestUsdPer10k": 0.03, "kmsRequestsPerMonth": 2000000})
    );

    // Each distinct key described once; one listing page per registry; one
    // AssumeRole for the central account.
    assert_eq!(
        proxy.count(DESCRIBE_KEY),
        7,
        "six customer keys and aws/ecr"
    );
    assert_eq!(
        proxy.count(GET_KEY_ROTATION_STATUS),
        6,
        "customer keys only"
    );
    assert_eq!(proxy.count(DESCRIBE_REPOSITORIES), 4);
    assert_eq!(proxy.count(DESCRIBE_PULL_THROUGH_CACHE_RULES), 4);
    assert_eq!(proxy.count(DESCRIBE_REPOSITORY_CREATION_TEMPLATES), 2);
    assert_eq!(proxy.count(ASSUME_ROLE), 1);
    assert_eq!(proxy.pull_through().shape_errors(), Vec::<String>::new());

    // --namespace: only the policies selecting it judge.
    let labels = ["--namespace-labels", "payments:team=payments;web:team=web"];
    let mut web = args.clone();
    web.extend(labels);
    web.extend(["--namespace", "web"]);
    let in_web = scan(proxy.endpoint(), dir.path(), &web).await;
    assert_eq!(in_web.code, 1);
    for repo in in_web.report["repositories"].as_array().unwrap() {
        let judged: Vec<String> = verdicts(repo).into_iter().map(|(p, ..)| p).collect();
        assert_eq!(judged, ["require-kms"], "{repo:#}");
    }
    assert_eq!(
        in_web.report["summary"]["byVerdict"],
        json!({"allowed": 7, "denied": 5, "warned": 0, "dryRun": 0})
    );
    let mut payments = args.clone();
    payments.extend(labels);
    payments.extend(["--namespace", "payments"]);
    let in_payments = scan(proxy.endpoint(), dir.path(), &payments).await;
    assert_eq!(
        in_payments.report["repositories"], r["repositories"],
        "both policies select payments: as without --namespace"
    );

    // Throttling: a third of ECR and KMS calls refused; retried with backoff,
    // the report is the same.
    proxy.set_random_faults_for(
        &[
            DESCRIBE_REPOSITORIES,
            DESCRIBE_KEY,
            GET_KEY_ROTATION_STATUS,
            DESCRIBE_PULL_THROUGH_CACHE_RULES,
            DESCRIBE_REPOSITORY_CREATION_TEMPLATES,
        ],
        vec![Fault::throttling()],
        33,
    );
    let throttled = scan(proxy.endpoint(), dir.path(), &args).await;
    assert!(
        proxy.faulted().get("error").copied().unwrap_or(0) > 0,
        "some calls were throttled"
    );
    assert_eq!(throttled.code, 1, "{}", throttled.stderr);
    assert_eq!(throttled.report, run.report);
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_say_compliant_refused_or_unjudged() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    let key = moto.create_key(US).await;
    moto.enable_key_rotation(&key).await;
    moto.create_repository(US, "ok/app", Encryption::Kms(key.arn.clone()))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");

    let compliant = scan(proxy.endpoint(), dir.path(), &[]).await;
    assert_eq!(compliant.code, 0, "{}", compliant.stderr);
    // stderr is not a terminal here: no progress bar, and nothing else to say.
    assert_eq!(compliant.stderr, "");
    assert_eq!(compliant.report["summary"]["registries"], 1, "AWS_REGION");
    assert_eq!(compliant.report["summary"]["byVerdict"]["allowed"], 1);

    moto.create_repository(US, "bad/app", Encryption::Aes256)
        .await;
    assert_eq!(scan(proxy.endpoint(), dir.path(), &[]).await.code, 1);

    // --output-file: the report there, nothing on stdout.
    let file = dir.path().join("report.json");
    let file_arg = file.to_str().expect("UTF-8 path").to_owned();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
    cmd.args([
        "scan",
        "-o",
        "json",
        "--output-file",
        &file_arg,
        "--policy-file",
    ])
    .arg(dir.path().join("policies.yaml"))
    .env_clear()
    .env("AWS_ACCESS_KEY_ID", "test")
    .env("AWS_SECRET_ACCESS_KEY", "test")
    .env("AWS_REGION", US)
    .env("AWS_ENDPOINT_URL", proxy.endpoint())
    .env("ECR_GUARD_LOG_LEVEL", "warn");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run ecr-guard scan"))
        .await
        .expect("scan thread");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let written: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("the report file")).expect("JSON");
    assert_eq!(written["summary"]["repositories"], 2);

    // A registry whose listing is denied: reported, the others still judged.
    proxy.set_fault_for_body(
        DESCRIBE_REPOSITORIES,
        DENIED,
        Fault::ErrorWithMessage {
            status: 400,
            error_type: "AccessDeniedException".to_owned(),
            message: format!(
                "User: arn:aws:sts::123456789012:assumed-role/ecr-guard/scan is not authorized \
                 to perform: ecr:DescribeRepositories on resource: \
                 arn:aws:ecr:us-east-1:{DENIED}:repository/* because no resource-based policy \
                 allows the ecr:DescribeRepositories action"
            ),
        },
    );
    let unjudged = scan(proxy.endpoint(), dir.path(), &["--account", DENIED]).await;
    assert_eq!(unjudged.code, 2, "{}", unjudged.stderr);
    let errors = unjudged.report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["account"], DENIED);
    assert_eq!(errors[0]["region"], US);
    assert_eq!(errors[0]["api"], "DescribeRepositories");
    let message = errors[0]["message"].as_str().expect("message");
    assert!(message.contains("access denied"), "{message}");
    assert!(
        unjudged.stderr.contains(&format!(
            "account {DENIED} region us-east-1: DescribeRepositories"
        )),
        "{}",
        unjudged.stderr
    );
    assert_eq!(unjudged.report["summary"]["repositories"], 2);
    assert_eq!(unjudged.report["summary"]["registries"], 2);

    // Usage errors: exit 2, nothing on stdout.
    let out = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .args(["scan", "--account", "12345"])
        .env_clear()
        .output()
        .expect("run ecr-guard scan");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an AWS account id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_past_a_thousand_repositories_is_read() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    let started = Instant::now();
    let ecr = moto.ecr(US);
    let names: Vec<String> = (0..1001).map(|i| format!("many/repo-{i:04}")).collect();
    // 20 at a time: moto answers one request per thread.
    for batch in names.chunks(20) {
        futures::future::join_all(
            batch
                .iter()
                .map(|name| ecr.create_repository().repository_name(name).send()),
        )
        .await
        .into_iter()
        .for_each(|created| {
            created.expect("CreateRepository");
        });
    }
    eprintln!("1,001 repositories created in {:?}", started.elapsed());
    let dir = tempfile::tempdir().expect("tempdir");

    let run = scan(proxy.endpoint(), dir.path(), &[]).await;

    assert_eq!(run.code, 1, "AES256 under require-kms: {}", run.stderr);
    assert_eq!(run.report["summary"]["repositories"], 1001);
    assert_eq!(run.report["summary"]["byEncryptionType"]["AES256"], 1001);
    assert_eq!(proxy.count(DESCRIBE_REPOSITORIES), 2, "pages of 1,000");
    let names: std::collections::BTreeSet<&str> = run.report["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 1001, "no repository twice");
}

/// A string field of the JSON, `""` for null (as CSV writes an absent cell).
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The cells of a markdown table row, `\`-escapes undone.
fn markdown_cells(line: &str) -> Vec<String> {
    let inner = line
        .strip_prefix("| ")
        .and_then(|l| l.strip_suffix(" |"))
        .expect("a table row");
    let mut cells = vec![String::new()];
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cells
                .last_mut()
                .unwrap()
                .push(chars.next().expect("escaped")),
            '|' => {
                let cell = cells.last_mut().unwrap();
                assert_eq!(cell.pop(), Some(' '), "{line}");
                cells.push(String::new());
                assert_eq!(chars.next(), Some(' '), "{line}");
            }
            _ => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

/// `denied by require-kms`, `warned by rotation`, `allowed`: the verdict cell
/// the JSON's verdicts call for.
fn verdict_cell(repo: &Value) -> String {
    let refused_in = |mode: &str| -> Vec<String> {
        verdicts(repo)
            .into_iter()
            .zip(repo["verdicts"].as_array().unwrap())
            .filter(|((_, allowed, _), v)| !allowed && v["mode"] == mode)
            .map(|((policy, ..), _)| policy)
            .collect()
    };
    for (mode, label) in [
        ("Enforce", "denied"),
        ("Warn", "warned"),
        ("DryRun", "dry-run"),
    ] {
        let by = refused_in(mode);
        if !by.is_empty() {
            return format!("{label} by {}", by.join(","));
        }
    }
    "allowed".to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_output_format_reads_back_as_the_json_says() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    seed(&moto, &proxy).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = BOTH_REGIONS_AND_CENTRAL;
    let run = |format: &'static str| {
        let mut with = vec!["-o", format];
        with.extend(args);
        let dir = dir.path().to_owned();
        let endpoint = proxy.endpoint().to_owned();
        async move { scan_text(&endpoint, &dir, &with).await }
    };

    let json = scan(proxy.endpoint(), dir.path(), args).await;
    assert_eq!(json.code, 1, "{}", json.stderr);
    let report = &json.report;
    let repos = report["repositories"].as_array().expect("repositories");
    assert_eq!(repos.len(), 12);

    // CSV, written to --output-file: one row per (repository, verdict), each
    // field the JSON's.
    let csv_file = dir.path().join("report.csv");
    let mut csv_args = vec!["-o", "csv", "--output-file", csv_file.to_str().unwrap()];
    csv_args.extend(args);
    let (code, stdout, stderr) = scan_text(proxy.endpoint(), dir.path(), &csv_args).await;
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    let mut reader = csv::Reader::from_path(&csv_file).expect("the CSV file");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<std::collections::HashMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.expect("row").iter().map(str::to_owned))
                .collect()
        })
        .collect();
    let mut expected = Vec::new();
    for repo in repos {
        let findings = codes(repo).join(";");
        for verdict in repo["verdicts"].as_array().unwrap() {
            let mut row = std::collections::HashMap::new();
            for field in [
                "account",
                "region",
                "name",
                "encryptionType",
                "kmsKey",
                "keyManager",
                "keyState",
                "keyDeletionDate",
                "keyRotation",
            ] {
                row.insert(field.to_owned(), text(&repo[field]));
            }
            row.insert("findings".to_owned(), findings.clone());
            for field in ["policy", "mode", "allowed"] {
                row.insert(field.to_owned(), text(&verdict[field]));
            }
            let reasons: Vec<String> = verdict["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(text)
                .collect();
            row.insert("reasons".to_owned(), reasons.join(";"));
            expected.push(row);
        }
    }
    assert_eq!(rows.len(), 24, "12 repositories × 2 policies");
    assert_eq!(rows, expected);

    // Markdown: each repository's row, its encryption and verdict cells.
    let (code, markdown, stderr) = run("markdown").await;
    assert_eq!(code, 1, "{stderr}");
    let table: Vec<Vec<String>> = markdown
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(markdown_cells)
        .collect();
    for repo in repos {
        let name = repo["name"].as_str().unwrap();
        let row = table
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("{name} has no markdown row:\n{markdown}"));
        assert_eq!(row[1], text(&repo["encryptionType"]), "{name}");
        let dash = |v: &Value| match v {
            Value::Null => "-".to_owned(),
            v => text(v),
        };
        assert_eq!(row[2], dash(&repo["kmsKey"]), "{name}");
        assert_eq!(row[3], dash(&repo["keyManager"]), "{name}");
        assert_eq!(row[5], dash(&repo["keyRotation"]), "{name}");
        assert_eq!(row[6], verdict_cell(repo), "{name}");
        let detail: Vec<String> = verdicts(repo)
            .into_iter()
            .zip(repo["verdicts"].as_array().unwrap())
            .map(|((policy, allowed, reasons), v)| {
                let outcome = if allowed {
                    "allowed".to_owned()
                } else {
                    reasons.join(",")
                };
                format!("{policy} ({}): {outcome}", text(&v["mode"]))
            })
            .collect();
        assert_eq!(row[7], detail.join("; "), "{name}");
        assert_eq!(row[8], codes(repo).join(", "), "{name}");
    }

    // HTML: the summary figures and the charts' counts are the JSON's.
    let (code, html, stderr) = run("html").await;
    assert_eq!(code, 1, "{stderr}");
    let mut figures = std::collections::BTreeMap::new();
    let mut bars: Vec<(String, String, String)> = Vec::new();
    let mut chart = String::new();
    let mut figure: Option<String> = None;
    let mut label = String::new();
    for token in xmlparser::Tokenizer::from(html.as_str()) {
        match token.expect("well-formed HTML") {
            xmlparser::Token::Attribute { local, value, .. } => match local.as_str() {
                "data-figure" => figure = Some(value.to_string()),
                "id" if value.starts_with("by-") && !value.ends_with("-title") => {
                    chart = value.to_string();
                }
                "data-label" => label = value.to_string(),
                "data-count" => bars.push((chart.clone(), label.clone(), value.to_string())),
                _ => {}
            },
            xmlparser::Token::Text { text } => {
                if let Some(name) = figure.take() {
                    figures.insert(name, text.to_string());
                }
            }
            _ => {}
        }
    }
    let summary = &report["summary"];
    let cost = &report["cost"];
    let usd = |v: &Value| format!("${:.2}", v.as_f64().expect("USD"));
    assert_eq!(figures["repositories"], summary["repositories"].to_string());
    assert_eq!(figures["violations"], summary["violations"].to_string());
    assert_eq!(
        figures["customer-managed-keys"],
        cost["customerManagedKeys"].to_string()
    );
    assert_eq!(figures["monthly"], usd(&cost["monthlyUsd"]));
    assert_eq!(figures["to-comply"], usd(&cost["toComplyMonthlyUsd"]));
    let chart_of = |id: &str| -> Vec<(String, String)> {
        bars.iter()
            .filter(|(c, ..)| c == id)
            .map(|(_, l, n)| (l.clone(), n.clone()))
            .collect()
    };
    let by_type: Vec<(String, String)> = summary["byEncryptionType"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, n)| (t.clone(), n.to_string()))
        .collect();
    assert_eq!(chart_of("by-encryption-type"), by_type);
    let by_verdict: Vec<(String, String)> = [
        ("denied", "denied"),
        ("warned", "warned"),
        ("dry-run", "dryRun"),
        ("allowed", "allowed"),
    ]
    .iter()
    .map(|(label, key)| ((*label).to_owned(), summary["byVerdict"][key].to_string()))
    .collect();
    let mut shown = chart_of("by-verdict");
    shown.sort();
    let mut by_verdict = by_verdict;
    by_verdict.sort();
    assert_eq!(shown, by_verdict);

    // The table (the default): every repository's line, none past 100 columns.
    let (code, table, stderr) = scan_text(proxy.endpoint(), dir.path(), args).await;
    assert_eq!(code, 1, "{stderr}");
    for repo in repos {
        let name = repo["name"].as_str().unwrap();
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} has no line:\n{table}"
        );
    }
    for line in table.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.chars().count()
        );
    }
}

/// One repository of a `DescribeRepositories` answer, as ECR gives it.
fn listed(name: &str, encryption: Value) -> Value {
    json!({
        "repositoryArn": format!("arn:aws:ecr:{US}:{ACCOUNT}:repository/{name}"),
        "registryId": ACCOUNT,
        "repositoryName": name,
        "repositoryUri": format!("{ACCOUNT}.dkr.ecr.{US}.amazonaws.com/{name}"),
        "createdAt": 1.7e9,
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": false},
        "encryptionConfiguration": encryption,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encryption_type_this_version_does_not_know_leaves_only_its_repository_unjudged() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    let key = moto.create_key(US).await;
    moto.enable_key_rotation(&key).await;
    // ECR answers with a type that came after this version: the listing is
    // moto's shape with one repository's type edited.
    proxy.set_fault_for_body(
        DESCRIBE_REPOSITORIES,
        ACCOUNT,
        Fault::Answer {
            status: 200,
            body: json!({"repositories": [
                listed("ok/aes", json!({"encryptionType": "AES256"})),
                listed("future/type", json!({"encryptionType": "KMS_PQ", "kmsKey": key.arn})),
                listed("ok/cmk", json!({"encryptionType": "KMS", "kmsKey": key.arn})),
            ]})
            .to_string(),
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");

    let run = scan(proxy.endpoint(), dir.path(), &[]).await;
    let r = &run.report;

    assert_eq!(run.code, 2, "a repository left unjudged: {}", run.stderr);
    let future = repository(r, ACCOUNT, US, "future/type");
    assert_eq!(
        encryption(future),
        (
            json!("KMS_PQ"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null
        ),
        "the type verbatim, nothing said of a key"
    );
    assert_eq!(future["keyDeletionDate"], Value::Null);
    assert_eq!(codes(future), ["encryption-type-unknown"]);
    let finding = future["findings"][0]["message"].as_str().unwrap();
    assert!(
        finding.contains("\"KMS_PQ\", which this version of ecr-guard does not know"),
        "{finding}"
    );
    assert_eq!(
        verdicts(future),
        [
            v("require-kms", false, &["lookup_failed"]),
            v("rotation", false, &["lookup_failed"])
        ]
    );
    // The error says which repository, and so does stderr.
    let errors = r["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        (
            &errors[0]["account"],
            &errors[0]["region"],
            &errors[0]["api"]
        ),
        (&json!(ACCOUNT), &json!(US), &json!("DescribeRepositories"))
    );
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("repository future/type: ECR reported encryption type \"KMS_PQ\""),
        "{message}"
    );
    assert!(
        run.stderr.contains("repository future/type"),
        "{}",
        run.stderr
    );

    // The rest of the registry is judged as ever.
    let ok_aes = repository(r, ACCOUNT, US, "ok/aes");
    assert_eq!(encryption(ok_aes), aes());
    assert_eq!(
        verdicts(ok_aes),
        [
            v("require-kms", false, &["encryption_type"]),
            v("rotation", false, &["customer_managed_key_required"])
        ]
    );
    let ok_cmk = repository(r, ACCOUNT, US, "ok/cmk");
    assert_eq!(
        encryption(ok_cmk),
        kms(&key.arn, "CUSTOMER", "Enabled", "Enabled")
    );
    assert_eq!(
        verdicts(ok_cmk),
        [v("require-kms", true, &[]), v("rotation", true, &[])]
    );
    assert_eq!(
        proxy.count(DESCRIBE_KEY),
        1,
        "the unjudged repository's key is not asked"
    );
    assert_eq!(
        r["summary"]["byEncryptionType"],
        json!({"AES256": 1, "KMS": 1, "KMS_DSSE": 0, "KMS_PQ": 1})
    );
    assert_eq!(r["summary"]["repositories"], 3);
    assert_eq!(r["summary"]["violations"], 2);
    assert_eq!(r["cost"]["customerManagedKeys"], 1);
}

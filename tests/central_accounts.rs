//! Issue 17: repositories and keys of a central registry account, looked up
//! with the credentials of a role assumed there (`--assume-role-template`,
//! `--assume-role`), against moto. moto models accounts: what credentials from
//! `AssumeRole` into account B create belongs to B and is invisible to the
//! default account's credentials (tests/support/moto.rs). It enforces no trust
//! policy, so a refused `AssumeRole` is answered by the test proxy, the way
//! STS answers it.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ecr_guard::policy::facts::{
    EncryptionType, KeyFacts, KeyManager, KeyState, LookupFailure, RepositoryLookup, Rotation,
};
use ecr_guard::registry::roles::{AccountRole, RoleTemplate};
use ecr_guard::registry::{AssumeRoles, RegistryConfig};
use prometheus_client::encoding::text::encode;

use support::moto::{ACCOUNT, Encryption, Key, Moto};
use support::proxy::{
    ASSUME_ROLE, DESCRIBE_KEY, DESCRIBE_REPOSITORIES, Fault, GET_CALLER_IDENTITY, Proxy,
};
use support::{Stack, deadline, found, known_key};

const US: &str = "us-east-1";
/// The central registry account.
const CENTRAL: &str = "111111111111";
/// Another account, for which only a template could name a role.
const OTHER: &str = "222222222222";
const TEMPLATE: &str = "arn:aws:iam::{account}:role/ecr-guard-reader";
const CENTRAL_READER: &str = "arn:aws:iam::111111111111:role/ecr-guard-reader";

fn with_roles(assume_roles: AssumeRoles) -> RegistryConfig {
    RegistryConfig {
        assume_roles,
        ..RegistryConfig::default()
    }
}

fn template() -> AssumeRoles {
    AssumeRoles {
        template: Some(RoleTemplate::parse(TEMPLATE).expect("valid template")),
        ..AssumeRoles::default()
    }
}

/// The central account's repositories: AES256, and KMS with a rotating and a
/// non-rotating customer-managed key of that account.
struct Central {
    aes: ecr_guard::image::EcrRepository,
    rotating: ecr_guard::image::EcrRepository,
    not_rotating: ecr_guard::image::EcrRepository,
    rotating_key: Key,
    plain_key: Key,
}

async fn seed_central(moto: &Moto) -> Central {
    let central = moto.as_account(CENTRAL).await;
    let rotating_key = central.create_key(US).await;
    central.enable_key_rotation(&rotating_key).await;
    let plain_key = central.create_key(US).await;
    Central {
        aes: central
            .create_repository(US, "central/aes", Encryption::Aes256)
            .await,
        rotating: central
            .create_repository(
                US,
                "central/rotating",
                Encryption::Kms(rotating_key.arn.clone()),
            )
            .await,
        not_rotating: central
            .create_repository(
                US,
                "central/not-rotating",
                Encryption::Kms(plain_key.arn.clone()),
            )
            .await,
        rotating_key,
        plain_key,
    }
}

fn metrics_text(s: &Stack) -> String {
    let mut text = String::new();
    encode(&mut text, &s.prometheus).expect("encode metrics");
    text
}

async fn assert_judged_from_the_central_account(s: &Stack, central: &Central) {
    let aes = found(s.registry.lookup(&central.aes, deadline()).await);
    assert_eq!(aes.encryption_type, EncryptionType::Aes256);
    assert_eq!(aes.kms_key, None);

    let rotating = found(s.registry.lookup(&central.rotating, deadline()).await);
    assert_eq!(rotating.encryption_type, EncryptionType::Kms);
    assert_eq!(
        known_key(&rotating),
        &KeyFacts {
            arn: central.rotating_key.arn.clone(),
            manager: KeyManager::Customer,
            state: KeyState::Enabled,
            rotation: Rotation::Enabled,
            deletion_date: None,
        }
    );

    let not_rotating = found(s.registry.lookup(&central.not_rotating, deadline()).await);
    assert_eq!(
        known_key(&not_rotating),
        &KeyFacts {
            arn: central.plain_key.arn.clone(),
            manager: KeyManager::Customer,
            state: KeyState::Enabled,
            rotation: Rotation::Disabled,
            deletion_date: None,
        }
    );
}

// --- which credentials a lookup uses ----------------------------------------

#[tokio::test]
async fn the_template_role_reads_the_central_accounts_repositories_and_keys() {
    let s = Stack::start(with_roles(template())).await;
    let central = seed_central(&s.moto).await;

    assert_judged_from_the_central_account(&s, &central).await;

    // A first lookup in another account costs GetCallerIdentity (once per
    // process) and AssumeRole (once per role and session) on top of the
    // ECR and KMS calls; the three repositories share one session.
    assert_eq!(s.proxy.count(GET_CALLER_IDENTITY), 1);
    assert_eq!(s.proxy.count(ASSUME_ROLE), 1);
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 3);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 2);
    assert_eq!(
        s.metric(r#"ecr_guard_aws_calls_total{api="AssumeRole",outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        s.metric(r#"ecr_guard_aws_calls_total{api="GetCallerIdentity",outcome="ok"}"#),
        1.0
    );
    let text = metrics_text(&s);
    assert!(
        !text.contains(CENTRAL) && !text.contains("role/"),
        "no account id or role ARN in a label:\n{text}"
    );
}

#[tokio::test]
async fn a_per_account_role_is_used_for_its_account_only() {
    let role = "arn:aws:iam::111111111111:role/central-reader";
    let roles = AssumeRoles::default()
        .with_account_roles(
            [AccountRole::parse(&format!("{CENTRAL}={role}")).expect("valid pair")],
        );
    let s = Stack::start(with_roles(roles)).await;
    let central = seed_central(&s.moto).await;
    let other = s
        .moto
        .as_account(OTHER)
        .await
        .create_repository(US, "other/app", Encryption::Aes256)
        .await;
    s.proxy.reset_counts();

    assert_judged_from_the_central_account(&s, &central).await;
    // No role for OTHER: its repository is looked up with ecr-guard's own
    // credentials, which cannot see it (on AWS: AccessDenied; moto: not found).
    assert_eq!(
        s.registry.lookup(&other, deadline()).await,
        Ok(RepositoryLookup::NotFound)
    );
    assert_eq!(s.proxy.count(ASSUME_ROLE), 1);
}

#[tokio::test]
async fn without_a_role_other_accounts_are_looked_up_as_today() {
    let s = Stack::start(RegistryConfig::default()).await;
    let central = seed_central(&s.moto).await;
    s.proxy.reset_counts();

    assert_eq!(
        s.registry.lookup(&central.rotating, deadline()).await,
        Ok(RepositoryLookup::NotFound)
    );
    assert_eq!(s.proxy.count(GET_CALLER_IDENTITY), 0, "no role, no STS");
    assert_eq!(s.proxy.count(ASSUME_ROLE), 0);
}

#[tokio::test]
async fn a_central_key_of_a_local_repository_is_described_through_the_role() {
    let s = Stack::start(with_roles(template())).await;
    let central = seed_central(&s.moto).await;
    let local = s
        .moto
        .create_repository(
            US,
            "team/uses-central-key",
            Encryption::Kms(central.rotating_key.arn.clone()),
        )
        .await;
    s.proxy.reset_counts();

    let facts = found(s.registry.lookup(&local, deadline()).await);

    assert_eq!(local.account, ACCOUNT);
    assert_eq!(known_key(&facts).rotation, Rotation::Enabled);
    assert_eq!(
        s.proxy.count(ASSUME_ROLE),
        1,
        "the key's account, not the repository's"
    );
}

#[tokio::test]
async fn fifty_concurrent_first_lookups_in_one_account_make_one_assume_role_call() {
    let s = Stack::start(with_roles(template())).await;
    let central = s.moto.as_account(CENTRAL).await;
    let mut repos = Vec::new();
    for i in 0..50 {
        repos.push(
            central
                .create_repository(US, &format!("central/app-{i}"), Encryption::Aes256)
                .await,
        );
    }
    s.proxy.reset_counts();

    let lookups = repos.iter().map(|repo| s.registry.lookup(repo, deadline()));
    let answers = futures::future::join_all(lookups).await;

    for answer in answers {
        assert_eq!(found(answer).encryption_type, EncryptionType::Aes256);
    }
    assert_eq!(s.proxy.count(ASSUME_ROLE), 1);
    assert_eq!(s.proxy.count(GET_CALLER_IDENTITY), 1);
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 50);
}

#[tokio::test]
async fn assumed_credentials_are_reused_then_refreshed_before_they_expire() {
    let s = Stack::start(with_roles(template())).await;
    let central = s.moto.as_account(CENTRAL).await;
    let mut repos = Vec::new();
    for name in ["central/a", "central/b", "central/c"] {
        repos.push(
            central
                .create_repository(US, name, Encryption::Aes256)
                .await,
        );
    }
    // Sessions of 13 s instead of an hour. The SDK's identity cache treats
    // credentials as expired 10 s (less up to 5 s of jitter) before their
    // expiry: reused for at least 3 s, replaced by 8 s.
    s.proxy.set_fault_for(
        ASSUME_ROLE,
        Fault::ExpireCredentialsIn(Duration::from_secs(13)),
    );

    found(s.registry.lookup(&repos[0], deadline()).await);
    found(s.registry.lookup(&repos[1], deadline()).await);
    assert_eq!(s.proxy.count(ASSUME_ROLE), 1, "reused across lookups");

    tokio::time::sleep(Duration::from_secs(9)).await;
    // The first session has 4 s left: the next call assumes the role again.
    found(s.registry.lookup(&repos[2], deadline()).await);
    assert_eq!(s.proxy.count(ASSUME_ROLE), 2, "refreshed before expiry");
}

// --- a role that cannot be assumed ------------------------------------------

#[tokio::test]
async fn a_refused_assume_role_fails_the_lookup_naming_the_role_for_the_negative_ttl_only() {
    let s = Stack::start(RegistryConfig {
        negative_cache_ttl: Duration::from_secs(2),
        ..with_roles(template())
    })
    .await;
    let central = seed_central(&s.moto).await;
    s.proxy.reset_counts();
    s.proxy
        .set_fault_for(ASSUME_ROLE, Fault::assume_role_denied(CENTRAL_READER));

    let failure = s
        .registry
        .lookup(&central.aes, deadline())
        .await
        .expect_err("AssumeRole is refused");
    let LookupFailure::AssumeRole {
        role,
        refused,
        external_id,
        ..
    } = &failure
    else {
        panic!("expected an AssumeRole failure, got {failure:?}");
    };
    assert_eq!(role, CENTRAL_READER);
    assert!(*refused);
    assert!(!*external_id);
    let message = failure.to_string();
    assert!(
        message.starts_with(&format!(
            "could not assume role {CENTRAL_READER}: STS denied"
        )),
        "{message}"
    );
    assert!(
        message.contains("not authorized to perform: sts:AssumeRole"),
        "{message}"
    );
    assert_eq!(
        s.metric(r#"ecr_guard_aws_calls_total{api="AssumeRole",outcome="access_denied"}"#),
        1.0
    );

    // Within the negative TTL, another repository of the account fails the
    // same way without asking STS again.
    let again = s.registry.lookup(&central.rotating, deadline()).await;
    assert!(
        matches!(again, Err(LookupFailure::AssumeRole { .. })),
        "{again:?}"
    );
    assert_eq!(s.proxy.count(ASSUME_ROLE), 1);
    assert_eq!(
        s.proxy.count(DESCRIBE_REPOSITORIES),
        0,
        "no ECR call without credentials"
    );

    // Past it, STS is asked again; the trust policy now allows ecr-guard.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.proxy.clear_faults();
    let facts = found(s.registry.lookup(&central.rotating, deadline()).await);
    assert_eq!(known_key(&facts).rotation, Rotation::Enabled);
    assert_eq!(s.proxy.count(ASSUME_ROLE), 2);
}

// --- the command line -------------------------------------------------------

const CENTRAL_HOST: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com";

fn check(endpoint: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecr-guard"));
    cmd.arg("check")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", US)
        .envs(env.iter().copied());
    if let Some(endpoint) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", endpoint);
    }
    cmd.output().expect("run ecr-guard check")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn policy_file(dir: &Path, on_lookup_failure: &str) -> String {
    let path = dir.join(format!("policy-{on_lookup_failure}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {{name: central}}\n\
             spec:\n  mode: Enforce\n  images: ['*']\n  rules: {{allowedEncryptionTypes: [KMS]}}\n  \
             onLookupFailure: {on_lookup_failure}\n"
        ),
    )
    .expect("write policy");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_judges_a_central_image_through_the_role() {
    let moto = Moto::start().await;
    let central = seed_central(&moto).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy_file(dir.path(), "Deny");
    let image = format!("{CENTRAL_HOST}/{}:1", central.rotating.name);
    let args = [
        "--policy-file",
        &policy,
        "--namespace-labels",
        "default:kubernetes.io/metadata.name=default",
        "--image",
        &image,
    ];

    let out = check(
        Some(moto.endpoint()),
        &[&args[..], &["--assume-role-template", TEMPLATE]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The same flag as an environment variable.
    let out = check(
        Some(moto.endpoint()),
        &args,
        &[("ECR_GUARD_ASSUME_ROLE_TEMPLATE", TEMPLATE)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Without a role the repository cannot be seen: denied, as today.
    let out = check(Some(moto.endpoint()), &args, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_assume_role_is_decided_by_on_lookup_failure() {
    let moto = Moto::start().await;
    let central = seed_central(&moto).await;
    let proxy = Proxy::start(moto.endpoint()).await;
    proxy.set_fault_for(ASSUME_ROLE, Fault::assume_role_denied(CENTRAL_READER));
    let dir = tempfile::tempdir().expect("temp dir");
    let image = format!("{CENTRAL_HOST}/{}:1", central.rotating.name);

    let deny = policy_file(dir.path(), "Deny");
    let out = check(
        Some(proxy.endpoint()),
        &[
            "--policy-file",
            &deny,
            "--namespace-labels",
            "default:kubernetes.io/metadata.name=default",
            "--image",
            &image,
            "--assume-role-template",
            TEMPLATE,
            "--assume-role-external-id",
            "tenant-42",
        ],
        &[],
    );
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("could not assume role {CENTRAL_READER}")),
        "{output}"
    );
    assert!(
        output.contains("trust policy must allow sts:AssumeRole")
            && output.contains("sts:ExternalId"),
        "the hint says what the trust policy must allow: {output}"
    );

    let allow = policy_file(dir.path(), "Allow");
    let out = check(
        Some(proxy.endpoint()),
        &[
            "--policy-file",
            &allow,
            "--namespace-labels",
            "default:kubernetes.io/metadata.name=default",
            "--image",
            &image,
            "--assume-role-template",
            TEMPLATE,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(proxy.count(ASSUME_ROLE), 2, "one per check run");
}

#[test]
fn malformed_role_settings_are_usage_errors_saying_what_is_expected() {
    // Flags, environment, what the message says.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--assume-role-template", "arn:aws:iam::111111111111:role/r"],
            vec![],
            "does not contain {account} exactly once",
        ),
        (
            vec!["--assume-role-template", "ecr-guard-reader-{account}"],
            vec![],
            "is not an IAM role ARN",
        ),
        (
            vec!["--assume-role-template", "arn:aws:iam::{account}:user/r"],
            vec![],
            "expected an IAM role ARN with {account} as its account",
        ),
        (
            vec![],
            vec![("ECR_GUARD_ASSUME_ROLE_TEMPLATE", "arn:aws:s3:::{account}")],
            "expected an IAM role ARN",
        ),
        (
            vec![
                "--assume-role",
                "11111111111=arn:aws:iam::111111111111:role/r",
            ],
            vec![],
            "is not an AWS account id: 12 digits",
        ),
        (
            vec!["--assume-role", "111111111111"],
            vec![],
            "expected ACCOUNT=ROLE_ARN",
        ),
        (
            vec![
                "--assume-role",
                "111111111111=arn:aws:iam::111111111111:policy/r",
            ],
            vec![],
            "is not an IAM role ARN",
        ),
        (
            vec!["--assume-role-external-id", "x"],
            vec![],
            "is not an STS external id",
        ),
    ];
    for (args, env, expected) in cases {
        let all = [&args[..], &["--image", "nginx"]].concat();
        let out = check(None, &all, &env);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {env:?}: {}",
            text(&out)
        );
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
    }
}

#[test]
fn the_readme_gives_the_reader_roles_policies_as_valid_json() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Central registry accounts\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a section on central registry accounts");
    let policies: Vec<serde_json::Value> = section
        .split("```json\n")
        .skip(1)
        .map(|block| {
            let json = block.split("```").next().unwrap_or_default();
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}:\n{json}"))
        })
        .collect();
    let all = serde_json::Value::Array(policies).to_string();
    for action in [
        "ecr:DescribeRepositories",
        "ecr:DescribePullThroughCacheRules",
        "ecr:DescribeRepositoryCreationTemplates",
        "kms:DescribeKey",
        "kms:GetKeyRotationStatus",
        "sts:AssumeRole",
        "sts:ExternalId",
    ] {
        assert!(all.contains(action), "{action} in the README's policies");
    }
}

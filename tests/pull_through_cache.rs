//! Pull-through cache repositories before their first pull, against moto with
//! the proxy answering `DescribePullThroughCacheRules` and
//! `DescribeRepositoryCreationTemplates` in moto's place (moto implements
//! neither; `support/pull_through.rs` answers like ECR and checks every
//! request's shape). Keys are moto's, described through the proxy as usual.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ecr_guard::policy::facts::{
    EncryptionType, KeyLookup, KeyManager, KeyState, Lookup, LookupFailure, PlannedRepository,
    PullThroughCause, RepositoryLookup, Rotation,
};
use ecr_guard::policy::{
    EcrEncryptionPolicySpec, ImageUse, Options, Policy, Reason, Slot, applicable, evaluate,
};
use ecr_guard::registry::roles::AccountRole;
use ecr_guard::registry::{AssumeRoles, RegistryConfig};
use tokio::time::Instant;

use support::moto::{ACCOUNT, Encryption, Key, repository};
use support::proxy::{
    ASSUME_ROLE, DESCRIBE_KEY, DESCRIBE_PULL_THROUGH_CACHE_RULES, DESCRIBE_REPOSITORIES,
    DESCRIBE_REPOSITORY_CREATION_TEMPLATES, Fault, GET_KEY_ROTATION_STATUS,
};
use support::{Stack, deadline};

const US: &str = "us-east-1";
const PTC: &[&str] = &["PULL_THROUGH_CACHE"];
const NGINX: &str = "docker-hub/library/nginx";

/// moto and the proxy, with the rule `docker-hub` in moto's account.
async fn stack_with(config: RegistryConfig) -> Stack {
    let s = Stack::start(config).await;
    s.proxy
        .pull_through()
        .add_rule(ACCOUNT, "docker-hub", "registry-1.docker.io");
    s
}

async fn stack() -> Stack {
    stack_with(RegistryConfig::default()).await
}

async fn rotating_key(s: &Stack) -> Key {
    let key = s.moto.create_key(US).await;
    s.moto.enable_key_rotation(&key).await;
    key
}

fn planned(lookup: Lookup) -> PlannedRepository {
    match lookup {
        Ok(RepositoryLookup::ToBeCreated(plan)) => plan,
        other => panic!("expected a repository to be created, got {other:?}"),
    }
}

async fn plan_of(s: &Stack, name: &str) -> PlannedRepository {
    planned(
        s.registry
            .lookup(&repository(ACCOUNT, US, name), deadline())
            .await,
    )
}

fn no_shape_errors(s: &Stack) {
    assert_eq!(s.proxy.pull_through().shape_errors(), Vec::<String>::new());
}

// --- which template, and what it gives --------------------------------------

#[tokio::test]
async fn a_covered_image_is_judged_by_its_templates_rotating_customer_key() {
    let s = stack().await;
    let key = rotating_key(&s).await;
    s.proxy
        .pull_through()
        .add_template("docker-hub", PTC, "KMS", Some(&key.arn));

    let plan = plan_of(&s, NGINX).await;

    assert_eq!(plan.rule, "docker-hub");
    assert_eq!(plan.upstream, "registry-1.docker.io");
    assert_eq!(plan.template.as_deref(), Some("docker-hub"));
    assert_eq!(plan.facts.encryption_type, EncryptionType::Kms);
    let Some(KeyLookup::Known(described)) = &plan.facts.kms_key else {
        panic!("{plan:?}");
    };
    assert_eq!(described.arn, key.arn);
    assert_eq!(described.manager, KeyManager::Customer);
    assert_eq!(described.rotation, Rotation::Enabled);
    assert_eq!(
        judge(
            "rules: {requireCustomerManagedKey: true, requireKeyRotation: true}",
            &s,
            NGINX
        )
        .await,
        Vec::<Reason>::new(),
        "allowed"
    );
    no_shape_errors(&s);
}

#[tokio::test]
async fn an_aes256_template_is_denied_under_a_kms_policy_with_the_template_named() {
    let s = stack().await;
    s.proxy
        .pull_through()
        .add_template("docker-hub", PTC, "AES256", None);

    let plan = plan_of(&s, NGINX).await;
    assert_eq!(plan.facts.encryption_type, EncryptionType::Aes256);
    assert_eq!(plan.template.as_deref(), Some("docker-hub"));

    let (reasons, messages) =
        judge_with_messages("rules: {allowedEncryptionTypes: [KMS]}", &s, NGINX).await;
    assert_eq!(reasons, vec![Reason::EncryptionType]);
    assert!(
        messages[0].contains(
            "repository docker-hub/library/nginx does not exist yet; pull-through cache rule \
             docker-hub will create it with template docker-hub (AES256)"
        ),
        "{messages:?}"
    );
    no_shape_errors(&s);
}

#[tokio::test]
async fn without_a_specific_template_root_applies_and_without_any_aes256() {
    let s = stack().await;
    assert_eq!(
        plan_of(&s, NGINX).await.template,
        None,
        "no template at all"
    );
    assert_eq!(
        plan_of(&s, NGINX).await.facts.encryption_type,
        EncryptionType::Aes256
    );

    let s = stack().await;
    s.proxy
        .pull_through()
        .add_template("ROOT", PTC, "KMS", None);
    s.proxy
        .pull_through()
        .add_template("quay", PTC, "AES256", None);
    let plan = plan_of(&s, NGINX).await;
    assert_eq!(plan.template.as_deref(), Some("ROOT"));
    assert_eq!(plan.facts.encryption_type, EncryptionType::Kms);
    // KMS without a key: the registry's AWS-managed aws/ecr key, not described
    // (describing the alias would create it).
    let Some(KeyLookup::Known(key)) = &plan.facts.kms_key else {
        panic!("{plan:?}");
    };
    assert_eq!(key.arn, "arn:aws:kms:us-east-1:123456789012:alias/aws/ecr");
    assert_eq!(key.manager, KeyManager::Aws);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 0);
    no_shape_errors(&s);
}

#[tokio::test]
async fn templates_not_applied_for_pull_through_cache_are_not_used() {
    let s = stack().await;
    let key = rotating_key(&s).await;
    {
        let mut pull_through = s.proxy.pull_through();
        pull_through.add_template("docker-hub", &["REPLICATION"], "KMS", Some(&key.arn));
        pull_through.add_template("ROOT", &["CREATE_ON_PUSH", "REPLICATION"], "KMS", None);
    }

    let plan = plan_of(&s, NGINX).await;
    assert_eq!(plan.template, None);
    assert_eq!(plan.facts.encryption_type, EncryptionType::Aes256);
    no_shape_errors(&s);
}

#[tokio::test]
async fn prefixes_match_whole_segments_and_the_longest_template_wins() {
    let s = stack().await;
    let key = rotating_key(&s).await;
    {
        let mut pull_through = s.proxy.pull_through();
        pull_through.add_rule(ACCOUNT, "prod", "public.ecr.aws");
        pull_through.add_template("prod", PTC, "KMS", Some(&key.arn));
        pull_through.add_template("production", PTC, "AES256", None);
        pull_through.add_template("docker-hub", PTC, "AES256", None);
        pull_through.add_template("docker-hub/library", PTC, "KMS_DSSE", Some(&key.arn));
    }

    assert_eq!(
        plan_of(&s, "prod/app").await.template.as_deref(),
        Some("prod")
    );
    // No rule covers production/app: "does not exist", as before.
    assert_eq!(
        s.registry
            .lookup(&repository(ACCOUNT, US, "production/app"), deadline())
            .await,
        Ok(RepositoryLookup::NotFound)
    );
    let plan = plan_of(&s, NGINX).await;
    assert_eq!(plan.template.as_deref(), Some("docker-hub/library"));
    assert_eq!(plan.facts.encryption_type, EncryptionType::KmsDsse);
    assert_eq!(
        plan_of(&s, "docker-hub/bitnami/redis")
            .await
            .template
            .as_deref(),
        Some("docker-hub")
    );
    no_shape_errors(&s);
}

#[tokio::test]
async fn a_template_key_disabled_or_pending_deletion_gives_the_usual_key_findings() {
    let s = stack().await;
    let disabled = rotating_key(&s).await;
    s.moto.disable_key(&disabled).await;
    let deleted = rotating_key(&s).await;
    s.moto.schedule_key_deletion(&deleted).await;
    {
        let mut pull_through = s.proxy.pull_through();
        pull_through.add_template("docker-hub/library", PTC, "KMS", Some(&disabled.arn));
        pull_through.add_template("docker-hub", PTC, "KMS", Some(&deleted.arn));
    }

    let state = |plan: PlannedRepository| match plan.facts.kms_key {
        Some(KeyLookup::Known(key)) => key.state,
        other => panic!("{other:?}"),
    };
    assert_eq!(state(plan_of(&s, NGINX).await), KeyState::Disabled);
    assert_eq!(
        state(plan_of(&s, "docker-hub/bitnami/redis").await),
        KeyState::PendingDeletion
    );
    assert_eq!(judge("{}", &s, NGINX).await, vec![Reason::KeyUnusable]);
    assert_eq!(
        judge("{}", &s, "docker-hub/bitnami/redis").await,
        vec![Reason::KeyUnusable]
    );
    no_shape_errors(&s);
}

// --- the repository appears -------------------------------------------------

#[tokio::test]
async fn once_the_first_pull_creates_the_repository_it_is_judged_by_itself() {
    let s = stack_with(RegistryConfig {
        negative_cache_ttl: Duration::from_millis(500),
        ..RegistryConfig::default()
    })
    .await;
    s.proxy
        .pull_through()
        .add_template("docker-hub", PTC, "AES256", None);
    assert_eq!(
        plan_of(&s, NGINX).await.facts.encryption_type,
        EncryptionType::Aes256
    );

    // The first pull creates it; then the template changes: the repository
    // itself is the truth from now on.
    let key = rotating_key(&s).await;
    let repo = s
        .moto
        .create_repository(US, NGINX, Encryption::Kms(key.arn.clone()))
        .await;
    s.proxy.pull_through().clear_templates();
    s.proxy
        .pull_through()
        .add_template("docker-hub", PTC, "AES256", None);
    tokio::time::sleep(Duration::from_millis(700)).await;

    match s.registry.lookup(&repo, deadline()).await {
        Ok(RepositoryLookup::Found(facts)) => {
            assert_eq!(facts.encryption_type, EncryptionType::Kms);
        }
        other => panic!("expected the repository itself, got {other:?}"),
    }
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 2);
    assert_eq!(s.proxy.count(DESCRIBE_PULL_THROUGH_CACHE_RULES), 1);
    no_shape_errors(&s);
}

// --- rules or templates that cannot be read ----------------------------------

#[tokio::test]
async fn denied_rules_are_a_lookup_failure_under_both_on_lookup_failure_values() {
    let s = stack().await;
    s.proxy.set_fault_for(
        DESCRIBE_PULL_THROUGH_CACHE_RULES,
        Fault::kms_access_denied(
            "ecr:DescribePullThroughCacheRules",
            "arn:aws:ecr:us-east-1:123456789012:registry/*",
        ),
    );
    let repo = repository(ACCOUNT, US, NGINX);

    let failure = s.registry.lookup(&repo, deadline()).await.unwrap_err();
    let LookupFailure::PullThrough(failure) = &failure else {
        panic!("{failure:?}");
    };
    assert_eq!(failure.permission, "ecr:DescribePullThroughCacheRules");
    assert!(
        matches!(
            &failure.cause,
            PullThroughCause::Call(LookupFailure::AccessDenied(_))
        ),
        "{failure:?}"
    );

    let (reasons, messages) = judge_with_messages("{}", &s, NGINX).await;
    assert_eq!(reasons, vec![Reason::LookupFailed]);
    assert!(
        messages[0].contains("ecr:DescribePullThroughCacheRules in account 123456789012"),
        "{messages:?}"
    );
    let (reasons, notes) = judge_with_messages("onLookupFailure: Allow", &s, NGINX).await;
    assert_eq!(reasons, Vec::<Reason>::new());
    assert!(notes[0].contains("not verified"), "{notes:?}");
    assert!(
        notes[0].contains("ecr:DescribePullThroughCacheRules"),
        "{notes:?}"
    );
    assert_eq!(
        s.metric(r#"ecr_guard_aws_calls_total{api="DescribePullThroughCacheRules",outcome="access_denied"}"#),
        3.0,
        "one call per lookup: failures are not cached"
    );
}

#[tokio::test]
async fn denied_or_throttled_templates_are_a_lookup_failure_naming_their_permission() {
    let s = stack().await;
    s.proxy.set_fault_for(
        DESCRIBE_REPOSITORY_CREATION_TEMPLATES,
        Fault::access_denied(),
    );
    let failure = s
        .registry
        .lookup(&repository(ACCOUNT, US, NGINX), deadline())
        .await
        .unwrap_err();
    assert!(
        failure
            .to_string()
            .contains("ecr:DescribeRepositoryCreationTemplates in account 123456789012, region us-east-1 failed: access denied"),
        "{failure}"
    );

    s.proxy.clear_faults();
    s.proxy
        .set_fault_for(DESCRIBE_REPOSITORY_CREATION_TEMPLATES, Fault::throttling());
    let failure = s
        .registry
        .lookup(&repository(ACCOUNT, US, NGINX), deadline())
        .await
        .unwrap_err();
    let LookupFailure::PullThrough(failure) = failure else {
        panic!("{failure:?}");
    };
    assert_eq!(
        failure.cause,
        PullThroughCause::Call(LookupFailure::Throttled)
    );
}

#[tokio::test]
async fn templates_of_another_account_are_unknown_without_a_role_there() {
    let s = stack().await;
    s.proxy
        .pull_through()
        .add_rule("210987654321", "docker-hub", "registry-1.docker.io");
    s.proxy
        .pull_through()
        .add_template("docker-hub", PTC, "KMS", None);

    let failure = s
        .registry
        .lookup(&repository("210987654321", US, NGINX), deadline())
        .await
        .unwrap_err();
    let LookupFailure::PullThrough(failure) = &failure else {
        panic!("{failure:?}");
    };
    assert_eq!(
        failure.permission,
        "ecr:DescribeRepositoryCreationTemplates"
    );
    assert_eq!(
        failure.cause,
        PullThroughCause::OtherAccount {
            own: Some(ACCOUNT.to_owned())
        }
    );
    assert!(
        failure
            .to_string()
            .contains("a role in account 210987654321 is needed")
    );
    no_shape_errors(&s);
}

/// Issue 16 with issue 17: with a role for account B, B's pull-through images
/// are judged by B's templates, read with the role's credentials (the templates
/// call has no registry id). The proxy answers the templates of the account
/// the request's credentials act as: moto's, or the role's account for keys
/// it saw `AssumeRole` hand out (moto makes those act as the role's account).
#[tokio::test]
async fn with_a_role_there_another_accounts_templates_judge_its_pull_through_images() {
    const CENTRAL: &str = "210987654321";
    const OTHER: &str = "222222222222";
    let role = format!("{CENTRAL}=arn:aws:iam::{CENTRAL}:role/ecr-guard-reader");
    let roles =
        AssumeRoles::default().with_account_roles([AccountRole::parse(&role).expect("valid pair")]);
    let s = stack_with(RegistryConfig {
        assume_roles: roles,
        ..RegistryConfig::default()
    })
    .await;
    let central = s.moto.as_account(CENTRAL).await;
    let key = central.create_key(US).await;
    central.enable_key_rotation(&key).await;
    {
        let mut pull_through = s.proxy.pull_through();
        pull_through.add_rule(CENTRAL, "docker-hub", "registry-1.docker.io");
        pull_through.add_rule(OTHER, "docker-hub", "registry-1.docker.io");
        // ecr-guard's own template says AES256: it must not decide for CENTRAL.
        pull_through.add_template("docker-hub", PTC, "AES256", None);
        pull_through.add_template_in(CENTRAL, "docker-hub", PTC, "KMS", Some(&key.arn));
    }

    let plan = planned(
        s.registry
            .lookup(&repository(CENTRAL, US, NGINX), deadline())
            .await,
    );
    assert_eq!(plan.rule, "docker-hub");
    assert_eq!(plan.template.as_deref(), Some("docker-hub"));
    assert_eq!(plan.facts.encryption_type, EncryptionType::Kms);
    let Some(KeyLookup::Known(described)) = &plan.facts.kms_key else {
        panic!("{plan:?}");
    };
    assert_eq!(described.arn, key.arn);
    assert_eq!(described.manager, KeyManager::Customer);
    assert_eq!(described.rotation, Rotation::Enabled);
    assert_eq!(s.proxy.count(ASSUME_ROLE), 1, "one session for CENTRAL");

    // No role for OTHER: its templates cannot be read, and the failure says
    // which role is needed.
    let failure = s
        .registry
        .lookup(&repository(OTHER, US, NGINX), deadline())
        .await
        .unwrap_err();
    let LookupFailure::PullThrough(failure) = &failure else {
        panic!("{failure:?}");
    };
    assert_eq!(
        failure.cause,
        PullThroughCause::OtherAccount {
            own: Some(ACCOUNT.to_owned())
        }
    );
    assert!(
        failure
            .to_string()
            .contains(&format!("a role in account {OTHER} is needed")),
        "{failure}"
    );
    assert_eq!(s.proxy.count(ASSUME_ROLE), 1, "no role, no AssumeRole");
    no_shape_errors(&s);
}

// --- calls: once per registry, every page -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_reviews_of_uncached_covered_images_make_one_call_to_each_api() {
    // Room for moto answering 100 DescribeRepositories on a loaded machine.
    let s = stack_with(RegistryConfig {
        lookup_timeout: Duration::from_secs(20),
        ..RegistryConfig::default()
    })
    .await;
    let key = rotating_key(&s).await;
    s.proxy
        .pull_through()
        .add_template("docker-hub", PTC, "KMS", Some(&key.arn));

    let deadline = Instant::now() + Duration::from_secs(30);
    let lookups: Vec<_> = (0..100)
        .map(|i| {
            let registry = s.registry.clone();
            let repo = repository(ACCOUNT, US, &format!("docker-hub/library/image-{i}"));
            tokio::spawn(async move { registry.lookup(&repo, deadline).await })
        })
        .collect();
    for lookup in lookups {
        let plan = planned(lookup.await.expect("lookup task"));
        assert_eq!(plan.template.as_deref(), Some("docker-hub"));
    }

    assert_eq!(
        s.proxy.count(DESCRIBE_REPOSITORIES),
        100,
        "one per repository"
    );
    assert_eq!(s.proxy.count(DESCRIBE_PULL_THROUGH_CACHE_RULES), 1);
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORY_CREATION_TEMPLATES), 1);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 1);
    assert_eq!(s.proxy.count(GET_KEY_ROTATION_STATUS), 1);
    assert_eq!(
        s.metric(
            r#"ecr_guard_aws_calls_total{api="DescribeRepositoryCreationTemplates",outcome="ok"}"#
        ),
        1.0
    );

    // Within the TTLs: no call at all.
    plan_of(&s, "docker-hub/library/image-7").await;
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 100);
    assert_eq!(s.proxy.count(DESCRIBE_PULL_THROUGH_CACHE_RULES), 1);
    assert!(
        s.metric(r#"ecr_guard_cache_requests_total{cache="pull_through_rules",result="hit"}"#)
            >= 1.0
    );
    no_shape_errors(&s);
}

#[tokio::test]
async fn every_page_of_rules_and_templates_is_read() {
    let s = stack().await;
    {
        let mut pull_through = s.proxy.pull_through();
        pull_through.set_page_limit(1);
        pull_through.add_rule(ACCOUNT, "quay", "quay.io");
        pull_through.add_rule(ACCOUNT, "ghcr", "ghcr.io");
        pull_through.add_template("quay", PTC, "AES256", None);
        pull_through.add_template("ghcr", PTC, "AES256", None);
        pull_through.add_template("docker-hub", PTC, "KMS_DSSE", None);
    }

    let plan = plan_of(&s, NGINX).await;
    assert_eq!(plan.rule, "docker-hub", "the rule on the last page");
    assert_eq!(
        plan.template.as_deref(),
        Some("docker-hub"),
        "the template on the last page"
    );
    assert_eq!(s.proxy.count(DESCRIBE_PULL_THROUGH_CACHE_RULES), 3);
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORY_CREATION_TEMPLATES), 3);
    no_shape_errors(&s);
}

// --- judging ------------------------------------------------------------------

/// The reasons `yaml`'s policy finds for an image of `name`, and the violation
/// messages (or, when none, the verdict's notes).
async fn judge_with_messages(yaml: &str, s: &Stack, name: &str) -> (Vec<Reason>, Vec<String>) {
    let spec: EcrEncryptionPolicySpec = serde_saphyr::from_str(yaml).expect("policy parses");
    let policy = Policy::compile("p", &spec);
    let repo = repository(ACCOUNT, US, name);
    let image = format!("{ACCOUNT}.dkr.ecr.{US}.amazonaws.com/{name}:1.27");
    let uses = vec![ImageUse::new(Slot::Container, "app", image)];
    let facts = HashMap::from([(repo.clone(), s.registry.lookup(&repo, deadline()).await)]);
    let policies = [policy];
    let applicable = applicable(&policies, &BTreeMap::new());
    let verdict = evaluate(&applicable, &uses, &facts, Options::default());
    let reasons = verdict.violations.iter().map(|v| v.reason).collect();
    let messages = if verdict.violations.is_empty() {
        verdict.notes.clone()
    } else {
        verdict.violations.iter().map(|v| v.message()).collect()
    };
    (reasons, messages)
}

async fn judge(yaml: &str, s: &Stack, name: &str) -> Vec<Reason> {
    judge_with_messages(yaml, s, name).await.0
}

/// The same through the webhook: 100 concurrent AdmissionReviews over HTTPS,
/// each a Pod running another uncached covered image of one registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_admission_reviews_make_one_call_to_each_pull_through_api() {
    use support::https::post_review;
    use support::reviews::{HOST, STRICT, workload_review};
    use support::webhook::{Settings, Webhook};

    let s = stack().await;
    let key = rotating_key(&s).await;
    s.proxy
        .pull_through()
        .add_template("docker-hub", PTC, "KMS", Some(&key.arn));
    let mut settings = Settings::new(STRICT).namespace("demo:tier=regulated");
    // Room for moto answering 100 DescribeRepositories on a loaded machine.
    settings.lookup_timeout = Duration::from_secs(20);
    let hook = Webhook::start(s.proxy.endpoint(), settings).await;

    let reviews: Vec<_> = (0..100)
        .map(|i| {
            let image = format!("{HOST}/docker-hub/library/image-{i}:1.0");
            let review = workload_review("", "Pod", "pods", &image);
            let (addr, ca) = (hook.addr, hook.ca.clone());
            tokio::spawn(async move { post_review(addr, &ca, &review).await })
        })
        .collect();
    for review in reviews {
        let answer = review.await.expect("review task");
        assert_eq!(answer.status, 200);
        let response = &answer.json()["response"];
        assert_eq!(response["allowed"], true, "{response}");
    }

    assert_eq!(
        s.proxy.count(DESCRIBE_REPOSITORIES),
        100,
        "one per repository"
    );
    assert_eq!(s.proxy.count(DESCRIBE_PULL_THROUGH_CACHE_RULES), 1);
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORY_CREATION_TEMPLATES), 1);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 1);
    assert_eq!(s.proxy.count(GET_KEY_ROTATION_STATUS), 1);
    no_shape_errors(&s);
    hook.shutdown().await;
}

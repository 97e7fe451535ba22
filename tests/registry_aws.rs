//! The registry against a real ECR/KMS API: moto, seeded through the AWS API,
//! with a counting, fault-injecting proxy in between. Each test starts its own
//! moto (about a second), so tests share nothing.

mod support;

use std::time::Duration;

use ecr_guard::policy::facts::{
    EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, LookupFailure, RepositoryLookup,
    Rotation, Unlearnt,
};
use ecr_guard::registry::{Registry, RegistryConfig, RegistryMetrics};
use tokio::time::Instant;

use support::moto::{ACCOUNT, Encryption, Moto, aws_ecr_key_metadata, repository};
use support::proxy::{DESCRIBE_KEY, DESCRIBE_REPOSITORIES, Fault, GET_KEY_ROTATION_STATUS, Proxy};
use support::{Stack, deadline, found, known_key};

const US: &str = "us-east-1";
const EU: &str = "eu-west-1";

async fn stack() -> Stack {
    Stack::start(RegistryConfig::default()).await
}

/// Room for the SDK's three attempts and their back-off (up to ~3 s) when a
/// test wants to see the answer after retries rather than a timeout.
fn patient() -> RegistryConfig {
    RegistryConfig {
        lookup_timeout: Duration::from_secs(12),
        ..RegistryConfig::default()
    }
}

// --- what a repository is encrypted with -----------------------------------

#[tokio::test]
async fn aes256_repository_reports_aes256_without_a_key() {
    let s = stack().await;
    let repo = s
        .moto
        .create_repository(US, "team/aes", Encryption::Aes256)
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(facts.encryption_type, EncryptionType::Aes256);
    assert_eq!(facts.kms_key, None);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 0, "no key, no KMS call");
}

#[tokio::test]
async fn repository_created_without_encryption_settings_reports_aes256() {
    let s = stack().await;
    let repo = s
        .moto
        .create_repository(US, "team/plain", Encryption::Unspecified)
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(facts.encryption_type, EncryptionType::Aes256);
    assert_eq!(facts.kms_key, None);
}

#[tokio::test]
async fn repository_reported_without_an_encryption_configuration_is_aes256() {
    // moto always reports a configuration; ECR may leave it out, which means
    // AES256. The proxy gives that answer in moto's place.
    let s = stack().await;
    let repo = repository(ACCOUNT, US, "team/legacy");
    let answer = serde_json::json!({
        "repositories": [{
            "repositoryArn": format!("arn:aws:ecr:{US}:{ACCOUNT}:repository/team/legacy"),
            "registryId": ACCOUNT,
            "repositoryName": "team/legacy",
            "repositoryUri": format!("{ACCOUNT}.dkr.ecr.{US}.amazonaws.com/team/legacy"),
            "createdAt": 1.5e9,
            "imageTagMutability": "MUTABLE"
        }]
    });
    s.proxy.set_fault_for(
        DESCRIBE_REPOSITORIES,
        Fault::Answer {
            status: 200,
            body: answer.to_string(),
        },
    );

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(facts.encryption_type, EncryptionType::Aes256);
    assert_eq!(facts.kms_key, None);
}

#[tokio::test]
async fn kms_repository_with_rotating_customer_key_reports_rotation_enabled() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    s.moto.enable_key_rotation(&key).await;
    let repo = s
        .moto
        .create_repository(US, "team/cmk", Encryption::Kms(key.arn.clone()))
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(facts.encryption_type, EncryptionType::Kms);
    assert_eq!(
        known_key(&facts),
        &KeyFacts {
            arn: key.arn,
            manager: KeyManager::Customer,
            state: KeyState::Enabled,
            rotation: Rotation::Enabled,
            deletion_date: None,
        }
    );
}

#[tokio::test]
async fn kms_repository_with_non_rotating_customer_key_reports_rotation_disabled() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    let repo = s
        .moto
        .create_repository(US, "team/cmk", Encryption::Kms(key.arn.clone()))
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    let key_facts = known_key(&facts);
    assert_eq!(key_facts.manager, KeyManager::Customer);
    assert_eq!(key_facts.rotation, Rotation::Disabled);
}

#[tokio::test]
async fn kms_repository_with_disabled_key_reports_the_key_disabled() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    s.moto.enable_key_rotation(&key).await;
    s.moto.disable_key(&key).await;
    let repo = s
        .moto
        .create_repository(US, "team/disabled", Encryption::Kms(key.arn.clone()))
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    let key_facts = known_key(&facts);
    assert_eq!(key_facts.state, KeyState::Disabled);
    assert!(!key_facts.state.is_usable());
    assert_eq!(
        key_facts.rotation,
        Rotation::Enabled,
        "rotation status still readable"
    );
}

#[tokio::test]
async fn kms_repository_with_key_pending_deletion_reports_pending_deletion() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    s.moto.schedule_key_deletion(&key).await;
    let repo = s
        .moto
        .create_repository(US, "team/doomed", Encryption::Kms(key.arn.clone()))
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    let key_facts = known_key(&facts);
    assert_eq!(key_facts.state, KeyState::PendingDeletion);
    assert!(!key_facts.state.is_usable());
    // DescribeKey's DeletionDate, as KMS (moto) reported it: 7 days ahead.
    let described = s
        .moto
        .kms(US)
        .describe_key()
        .key_id(&key.id)
        .send()
        .await
        .unwrap();
    let reported = described
        .key_metadata()
        .and_then(|m| m.deletion_date().copied())
        .unwrap();
    assert_eq!(
        key_facts.deletion_date,
        Some(std::time::SystemTime::try_from(reported).unwrap())
    );
    let left = ecr_guard::policy::facts::days_until(
        key_facts.deletion_date.unwrap(),
        std::time::SystemTime::now(),
    );
    assert_eq!(left, 7);
}

#[tokio::test]
async fn kms_dsse_repository_with_customer_key_reports_kms_dsse_and_the_key() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    s.moto.enable_key_rotation(&key).await;
    let repo = s
        .moto
        .create_repository(US, "team/dsse", Encryption::KmsDsse(key.arn.clone()))
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(facts.encryption_type, EncryptionType::KmsDsse);
    let key_facts = known_key(&facts);
    assert_eq!(key_facts.arn, key.arn);
    assert_eq!(key_facts.rotation, Rotation::Enabled);
}

#[tokio::test]
async fn kms_repository_with_the_default_key_reports_an_unknown_key_under_moto() {
    // moto gap: on AWS, ECR names the AWS-managed aws/ecr key, DescribeKey says
    // KeyManager=AWS and the registry reports Rotation::AwsManaged. moto instead
    // names a random key ARN that its own KMS does not have, so what we can check
    // here is the "key cannot be described" path — by ARN, never by alias.
    let s = stack().await;
    let repo = s
        .moto
        .create_repository(US, "team/default-kms", Encryption::KmsDefaultKey)
        .await;
    let reported = s
        .moto
        .reported_kms_key(&repo)
        .await
        .expect("moto names a key ARN");

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(facts.encryption_type, EncryptionType::Kms);
    match facts.kms_key {
        Some(KeyLookup::Unknown { arn, reason, cause }) => {
            assert_eq!(cause, Unlearnt::NotFound);
            assert_eq!(arn, reported);
            assert!(reason.contains("no such key"), "{reason}");
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 1, "described by its ARN");
    assert_eq!(s.proxy.count(GET_KEY_ROTATION_STATUS), 0);
}

#[tokio::test]
async fn aws_managed_key_reports_aws_managed_rotation_without_asking_for_rotation_status() {
    // moto gap: its KMS has no AWS-managed keys. The proxy answers DescribeKey
    // for the key ECR names with the metadata AWS returns for aws/ecr; the rest
    // (ECR, the SDK's parsing, our logic) is real.
    let s = stack().await;
    let repo = s
        .moto
        .create_repository(US, "team/aws-managed", Encryption::KmsDefaultKey)
        .await;
    let arn = s
        .moto
        .reported_kms_key(&repo)
        .await
        .expect("moto names a key ARN");
    s.proxy.set_fault_for(
        DESCRIBE_KEY,
        Fault::Answer {
            status: 200,
            body: aws_ecr_key_metadata(&arn),
        },
    );

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(
        known_key(&facts),
        &KeyFacts {
            arn,
            manager: KeyManager::Aws,
            state: KeyState::Enabled,
            rotation: Rotation::AwsManaged,
            deletion_date: None,
        }
    );
    assert_eq!(
        s.proxy.count(GET_KEY_ROTATION_STATUS),
        0,
        "not asked for AWS-managed keys"
    );
}

#[tokio::test]
async fn kms_dsse_repository_without_a_named_key_reports_the_aws_managed_default_as_unknown() {
    // moto leaves kmsKey out for KMS_DSSE without a key (AWS names aws/ecr). The
    // registry must not guess or describe the alias: an explicit unknown key.
    let s = stack().await;
    let repo = s
        .moto
        .create_repository(US, "team/default-dsse", Encryption::KmsDsseDefaultKey)
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert_eq!(facts.encryption_type, EncryptionType::KmsDsse);
    match facts.kms_key {
        Some(KeyLookup::Unknown { arn, reason, cause }) => {
            assert_eq!(cause, Unlearnt::NotNamed);
            assert!(arn.contains("aws/ecr"), "{arn}");
            assert!(reason.contains("without naming the key"), "{reason}");
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }
    assert_eq!(
        s.proxy.count(DESCRIBE_KEY),
        0,
        "never DescribeKey on an alias"
    );
}

#[tokio::test]
async fn key_that_cannot_be_described_is_an_unknown_key_not_a_failure() {
    // A key in another account whose key policy does not let us in. AWS answers
    // AccessDeniedException; moto, which has no such account, NotFoundException.
    let s = stack().await;
    let foreign = "arn:aws:kms:us-east-1:999999999999:key/11111111-2222-3333-4444-555555555555";
    let repo = s
        .moto
        .create_repository(US, "team/foreign-key", Encryption::Kms(foreign.into()))
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    assert!(matches!(&facts.kms_key, Some(KeyLookup::Unknown { arn, .. }) if arn == foreign));
}

#[tokio::test]
async fn key_whose_key_policy_denies_describe_key_is_an_unknown_key() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    let repo = s
        .moto
        .create_repository(US, "team/denied-key", Encryption::Kms(key.arn.clone()))
        .await;
    s.proxy.set_fault_for(DESCRIBE_KEY, Fault::access_denied());

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    match facts.kms_key {
        Some(KeyLookup::Unknown { arn, reason, cause }) => {
            assert_eq!(cause, Unlearnt::Denied);
            assert_eq!(arn, key.arn);
            assert!(reason.contains("denied"), "{reason}");
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }
}

#[tokio::test]
async fn rotation_status_that_cannot_be_read_is_unknown_rotation() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    let repo = s
        .moto
        .create_repository(
            US,
            "team/no-rotation-read",
            Encryption::Kms(key.arn.clone()),
        )
        .await;
    s.proxy
        .set_fault_for(GET_KEY_ROTATION_STATUS, Fault::access_denied());

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    let key_facts = known_key(&facts);
    assert_eq!(key_facts.state, KeyState::Enabled);
    assert!(
        matches!(&key_facts.rotation, Rotation::Unknown(reason, Unlearnt::Denied) if reason.contains("denied")),
        "{:?}",
        key_facts.rotation
    );
}

/// DescribeKey's answer for `arn` as KMS gives it for a customer-managed key,
/// its KeyMetadata then changed by `edit`.
fn customer_key_metadata(arn: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut answer: serde_json::Value = serde_json::from_str(&aws_ecr_key_metadata(arn)).unwrap();
    let metadata = &mut answer["KeyMetadata"];
    metadata["KeyManager"] = "CUSTOMER".into();
    metadata["Description"] = "".into();
    edit(metadata);
    answer.to_string()
}

/// Issue 14, fault 8, at the registry: a fact AWS leaves out of its answer (the
/// key state or manager, the rotation status), or
/// gives in a form this version does not know, is unknown (or the lookup fails),
/// never a default value. The proxy answers DescribeKey or DescribeRepositories
/// in AWS's place with an edited answer; ECR, the SDK's parsing and the rest are
/// real. (What each unknown is judged as: `policy::tests::a_fact_not_learnt_has_its_own_reason_and_hint`.)
#[tokio::test]
async fn a_fact_aws_leaves_out_or_words_unknowably_is_unknown_never_a_default() {
    // Nothing cached: each case below is a fresh lookup.
    let s = Stack::start(RegistryConfig {
        cache_ttl: Duration::ZERO,
        negative_cache_ttl: Duration::ZERO,
        stale_ttl: Duration::ZERO,
        ..RegistryConfig::default()
    })
    .await;
    let key = s.moto.create_key(US).await;
    s.moto.enable_key_rotation(&key).await;
    let repo = s
        .moto
        .create_repository(US, "team/edited", Encryption::Kms(key.arn.clone()))
        .await;
    // Each case replaces the last (the proxy's first matching rule wins).
    let describe_key_answers = |edit: fn(&mut serde_json::Value)| {
        s.proxy.clear_faults();
        s.proxy.set_fault_for(
            DESCRIBE_KEY,
            Fault::Answer {
                status: 200,
                body: customer_key_metadata(&key.arn, edit),
            },
        );
    };

    // The unedited answer: every fact known (the baseline the cases change).
    describe_key_answers(|_| {});
    let facts = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(
        known_key(&facts),
        &KeyFacts {
            arn: key.arn.clone(),
            manager: KeyManager::Customer,
            state: KeyState::Enabled,
            rotation: Rotation::Enabled,
            deletion_date: None,
        }
    );

    // No KeyState: the state is unreported, not Enabled and not unusable.
    describe_key_answers(|m| {
        m.as_object_mut().unwrap().remove("KeyState");
    });
    let facts = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(known_key(&facts).state, KeyState::Unreported);

    // A state this version has no name for is kept verbatim (and is not Enabled).
    describe_key_answers(|m| m["KeyState"] = "Updating".into());
    let facts = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(known_key(&facts).state, KeyState::Other("Updating".into()));

    // No KeyManager, or one this version does not know: not "customer", not
    // "AWS" (which would skip the rotation question), but an unknown key.
    for (edit, said) in [
        (
            (|m: &mut serde_json::Value| {
                m.as_object_mut().unwrap().remove("KeyManager");
            }) as fn(&mut serde_json::Value),
            "no KeyManager",
        ),
        (|m| m["KeyManager"] = "PARTNER".into(), "\"PARTNER\""),
    ] {
        describe_key_answers(edit);
        let facts = found(s.registry.lookup(&repo, deadline()).await);
        match facts.kms_key {
            Some(KeyLookup::Unknown { arn, reason, cause }) => {
                assert_eq!(cause, Unlearnt::Unreported, "{said}");
                assert_eq!(arn, key.arn);
                assert!(reason.contains(said), "{said}: {reason}");
            }
            other => panic!("{said}: expected an unknown key, got {other:?}"),
        }
    }

    // GetKeyRotationStatus without KeyRotationEnabled: the SDK reads `false`,
    // but nothing was said, so rotation is unknown, not disabled. Said, it is read.
    for (answer, expected) in [
        (
            serde_json::json!({"KeyId": key.arn}),
            "KMS answered GetKeyRotationStatus without KeyRotationEnabled",
        ),
        (
            serde_json::json!({"KeyId": key.arn, "KeyRotationEnabled": false}),
            "disabled",
        ),
    ] {
        s.proxy.clear_faults();
        s.proxy.set_fault_for(
            GET_KEY_ROTATION_STATUS,
            Fault::Answer {
                status: 200,
                body: answer.to_string(),
            },
        );
        let facts = found(s.registry.lookup(&repo, deadline()).await);
        let rotation = &known_key(&facts).rotation;
        match expected {
            "disabled" => assert_eq!(rotation, &Rotation::Disabled),
            reason => assert_eq!(
                rotation,
                &Rotation::Unknown(reason.to_owned(), Unlearnt::Unreported)
            ),
        }
    }

    // No KeyMetadata at all: an answer that cannot be read fails the lookup.
    s.proxy.clear_faults();
    s.proxy.set_fault_for(
        DESCRIBE_KEY,
        Fault::Answer {
            status: 200,
            body: "{}".into(),
        },
    );
    match s.registry.lookup(&repo, deadline()).await {
        Err(LookupFailure::Unrecognised(message)) => {
            assert!(message.contains("without key metadata"), "{message}")
        }
        other => panic!("expected an unrecognised answer, got {other:?}"),
    }

    // An encryption type ECR may add later is not read as any type we know.
    s.proxy.clear_faults();
    s.proxy.set_fault_for(
        DESCRIBE_REPOSITORIES,
        Fault::Answer {
            status: 200,
            body: serde_json::json!({"repositories": [{
                "repositoryArn": format!("arn:aws:ecr:{US}:{ACCOUNT}:repository/team/edited"),
                "registryId": ACCOUNT,
                "repositoryName": "team/edited",
                "repositoryUri": format!("{ACCOUNT}.dkr.ecr.{US}.amazonaws.com/team/edited"),
                "createdAt": 1.7e9,
                "imageTagMutability": "MUTABLE",
                "encryptionConfiguration": {"encryptionType": "AES512"},
            }]})
            .to_string(),
        },
    );
    match s.registry.lookup(&repo, deadline()).await {
        Err(LookupFailure::Unrecognised(message)) => {
            assert!(message.contains("\"AES512\""), "{message}")
        }
        other => panic!("expected an unrecognised answer, got {other:?}"),
    }
}

// --- where the repository and key live --------------------------------------

#[tokio::test]
async fn missing_repository_is_not_found_and_cached_only_for_the_negative_ttl() {
    let s = Stack::start(RegistryConfig {
        negative_cache_ttl: Duration::from_millis(500),
        ..RegistryConfig::default()
    })
    .await;
    let repo = repository(ACCOUNT, US, "team/not-yet-pulled");

    assert_eq!(
        s.registry.lookup(&repo, deadline()).await,
        Ok(RepositoryLookup::NotFound)
    );
    assert_eq!(
        s.registry.lookup(&repo, deadline()).await,
        Ok(RepositoryLookup::NotFound)
    );
    assert_eq!(
        s.proxy.count(DESCRIBE_REPOSITORIES),
        1,
        "second answer from the cache"
    );

    // A pull-through cache creates the repository on first pull.
    s.moto
        .create_repository(US, "team/not-yet-pulled", Encryption::Aes256)
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(facts.encryption_type, EncryptionType::Aes256);
    assert_eq!(
        s.proxy.count(DESCRIBE_REPOSITORIES),
        2,
        "asked again after the negative TTL"
    );
    // The refreshed answer is positive, so it is kept for the (long) positive TTL.
    tokio::time::sleep(Duration::from_millis(700)).await;
    found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 2);
}

#[tokio::test]
async fn repository_and_key_in_another_region_are_looked_up_in_that_region() {
    let s = stack().await;
    let key = s.moto.create_key(EU).await;
    s.moto.enable_key_rotation(&key).await;
    let repo = s
        .moto
        .create_repository(EU, "team/eu", Encryption::Kms(key.arn.clone()))
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(known_key(&facts).arn, key.arn);
    assert_eq!(known_key(&facts).rotation, Rotation::Enabled);

    // Regions are separate: the same name in us-east-1 does not exist.
    let elsewhere = repository(ACCOUNT, US, "team/eu");
    assert_eq!(
        s.registry.lookup(&elsewhere, deadline()).await,
        Ok(RepositoryLookup::NotFound)
    );
}

#[tokio::test]
async fn key_in_another_region_than_the_repository_is_described_in_the_key_region() {
    let s = stack().await;
    let key = s.moto.create_key(EU).await;
    let repo = s
        .moto
        .create_repository(
            US,
            "team/cross-region-key",
            Encryption::Kms(key.arn.clone()),
        )
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);

    // moto's regions are separate backends: a us-east-1 KMS client would not
    // find this key.
    assert_eq!(known_key(&facts).arn, key.arn);
    assert_eq!(known_key(&facts).state, KeyState::Enabled);
}

#[tokio::test]
async fn repository_in_another_account_is_looked_up_with_its_registry_id() {
    let s = stack().await;
    let repo = s
        .moto
        .create_repository_in("111122223333", US, "shared/base", Encryption::Aes256)
        .await;

    let facts = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(facts.encryption_type, EncryptionType::Aes256);

    // Same name, another registry: moto answers with an empty list, which is
    // "not found" too.
    let other_account = repository("222233334444", US, "shared/base");
    assert_eq!(
        s.registry.lookup(&other_account, deadline()).await,
        Ok(RepositoryLookup::NotFound)
    );
    let own_account = repository(ACCOUNT, US, "shared/base");
    assert_eq!(
        s.registry.lookup(&own_account, deadline()).await,
        Ok(RepositoryLookup::NotFound)
    );
}

// --- caching and coalescing --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_lookups_of_one_repository_make_one_call_per_api() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    s.moto.enable_key_rotation(&key).await;
    let repo = s
        .moto
        .create_repository(US, "team/popular", Encryption::Kms(key.arn.clone()))
        .await;

    let deadline = deadline();
    let lookups: Vec<_> = (0..50)
        .map(|_| {
            let registry = s.registry.clone();
            let repo = repo.clone();
            tokio::spawn(async move { registry.lookup(&repo, deadline).await })
        })
        .collect();
    for lookup in lookups {
        let facts = found(lookup.await.expect("lookup task"));
        assert_eq!(known_key(&facts).rotation, Rotation::Enabled);
    }
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 1);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 1);
    assert_eq!(s.proxy.count(GET_KEY_ROTATION_STATUS), 1);

    // Within the TTL: no call at all.
    found(
        s.registry
            .lookup(&repo, Instant::now() + Duration::from_secs(1))
            .await,
    );
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 1);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 1);
    assert!(s.metric(r#"ecr_guard_cache_requests_total{cache="repository",result="hit"}"#) >= 1.0);
    assert_eq!(
        s.metric(r#"ecr_guard_aws_calls_total{api="DescribeRepositories",outcome="ok"}"#),
        1.0
    );
}

#[tokio::test]
async fn repositories_sharing_a_key_share_one_describe_key_call() {
    let s = stack().await;
    let key = s.moto.create_key(US).await;
    let api = s
        .moto
        .create_repository(US, "team/api", Encryption::Kms(key.arn.clone()))
        .await;
    let web = s
        .moto
        .create_repository(US, "team/web", Encryption::KmsDsse(key.arn.clone()))
        .await;

    let answers = s
        .registry
        .lookup_all([api.clone(), web.clone(), api.clone()], deadline())
        .await;

    assert_eq!(answers.len(), 2, "deduplicated");
    assert_eq!(known_key(&found(answers[&api].clone())).arn, key.arn);
    assert_eq!(known_key(&found(answers[&web].clone())).arn, key.arn);
    assert_eq!(s.proxy.count(DESCRIBE_REPOSITORIES), 2);
    assert_eq!(s.proxy.count(DESCRIBE_KEY), 1);
    assert_eq!(s.proxy.count(GET_KEY_ROTATION_STATUS), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_aws_calls_are_capped() {
    // A cap of 4 keeps 1 for KMS calls: repository lookups alone reach 3.
    let s = Stack::start(RegistryConfig {
        max_concurrent_calls: 4,
        ..RegistryConfig::default()
    })
    .await;
    let mut repos = Vec::new();
    for i in 0..6 {
        repos.push(
            s.moto
                .create_repository(US, &format!("team/capped-{i}"), Encryption::Aes256)
                .await,
        );
    }
    s.proxy.set_fault_for(
        DESCRIBE_REPOSITORIES,
        Fault::Delay(Duration::from_millis(200)),
    );

    let answers = s.registry.lookup_all(repos, deadline()).await;

    assert_eq!(answers.len(), 6);
    assert!(
        answers
            .values()
            .all(|a| matches!(a, Ok(RepositoryLookup::Found(_))))
    );
    assert_eq!(s.proxy.max_in_flight(), 3);
}

#[tokio::test]
async fn expired_answer_is_served_while_aws_fails_and_fresh_data_returns_after_recovery() {
    let s = Stack::start(RegistryConfig {
        // Wide margins: this machine is shared and slow under a full test run.
        cache_ttl: Duration::from_millis(1500),
        stale_ttl: Duration::from_secs(60),
        ..RegistryConfig::default()
    })
    .await;
    let key = s.moto.create_key(US).await;
    let repo = s
        .moto
        .create_repository(US, "team/stale", Encryption::Kms(key.arn.clone()))
        .await;
    let before = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(known_key(&before).state, KeyState::Enabled);

    // AWS goes down; meanwhile the key is disabled behind our back.
    s.proxy.set_fault(Fault::service_unavailable());
    s.moto.disable_key(&key).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let during = s
        .registry
        .lookup(&repo, Instant::now() + Duration::from_secs(2))
        .await;
    assert_eq!(found(during), before, "the expired answer is served");
    assert_eq!(
        s.metric(r#"ecr_guard_cache_requests_total{cache="repository",result="stale"}"#),
        1.0
    );
    assert!(s.metric(r#"ecr_guard_cache_requests_total{cache="key",result="stale"}"#) >= 1.0);
    // The failing refresh runs in its own task (the stale answer may be served at
    // the deadline while SDK retries still go on under load): wait for it to end.
    // Both refreshes (the repository's and the key's) must have ended: a key
    // refresh still retrying when AWS recovers would fail on its earlier
    // attempts and serve the stale key once more.
    let failed = |api: &str| {
        s.metric(&format!(
            r#"ecr_guard_aws_calls_total{{api="{api}",outcome="error"}}"#
        )) + s.metric(&format!(
            r#"ecr_guard_aws_calls_total{{api="{api}",outcome="timeout"}}"#
        ))
    };
    for api in ["DescribeRepositories", "DescribeKey"] {
        let waited = Instant::now();
        while failed(api) < 1.0 && waited.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(failed(api) >= 1.0, "the failed {api} refresh is counted");
    }

    // AWS recovers: fresh data again.
    s.proxy.clear_faults();
    let after = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(known_key(&after).state, KeyState::Disabled);
}

#[tokio::test]
async fn failed_lookup_is_not_cached() {
    let s = stack().await;
    let repo = s
        .moto
        .create_repository(US, "team/flaky", Encryption::Aes256)
        .await;
    s.proxy
        .set_fault_for(DESCRIBE_REPOSITORIES, Fault::access_denied());

    let denied = s.registry.lookup(&repo, deadline()).await;
    assert!(
        matches!(&denied, Err(LookupFailure::AccessDenied(m)) if m.contains("AccessDeniedException")),
        "{denied:?}"
    );

    s.proxy.clear_faults();
    let facts = found(s.registry.lookup(&repo, deadline()).await);
    assert_eq!(facts.encryption_type, EncryptionType::Aes256);
    assert_eq!(
        s.proxy.count(DESCRIBE_REPOSITORIES),
        2,
        "the failure was not cached"
    );
}

// --- failures ----------------------------------------------------------------

#[tokio::test]
async fn blackholed_aws_times_out_within_the_deadline() {
    let s = stack().await;
    let repo = s
        .moto
        .create_repository(US, "team/blackholed", Encryption::Aes256)
        .await;
    s.proxy.set_fault(Fault::Hang);

    let budget = Duration::from_secs(1);
    let started = Instant::now();
    let answer = s.registry.lookup(&repo, started + budget).await;

    assert_eq!(answer, Err(LookupFailure::Timeout));
    // A correctness bound (the deadline is honoured), not a performance target.
    assert!(
        started.elapsed() < budget + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The call runs in its own task, shared with any caller that joins it, so
    // it runs to the registry's --lookup-timeout (3 s here), not to this
    // caller's 1 s, and records its timeout then: give it that long.
    let timeouts = r#"ecr_guard_aws_calls_total{api="DescribeRepositories",outcome="timeout"}"#;
    for _ in 0..250 {
        if s.metric(timeouts) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.metric(timeouts), 1.0);
}

#[tokio::test]
async fn throttling_after_sdk_retries_is_reported_as_throttled() {
    let s = Stack::start(patient()).await;
    let repo = s
        .moto
        .create_repository(US, "team/throttled", Encryption::Aes256)
        .await;
    s.proxy.set_fault(Fault::throttling());

    let answer = s
        .registry
        .lookup(&repo, Instant::now() + Duration::from_secs(15))
        .await;

    assert_eq!(answer, Err(LookupFailure::Throttled));
    assert_eq!(
        s.proxy.count(DESCRIBE_REPOSITORIES),
        3,
        "standard retry mode: 3 attempts"
    );
}

#[tokio::test]
async fn http_429_is_reported_as_throttled() {
    let s = Stack::start(patient()).await;
    let repo = s
        .moto
        .create_repository(US, "team/too-many", Encryption::Aes256)
        .await;
    s.proxy.set_fault(Fault::error(429, "SomethingUnusual"));

    let answer = s
        .registry
        .lookup(&repo, Instant::now() + Duration::from_secs(15))
        .await;

    assert_eq!(answer, Err(LookupFailure::Throttled));
}

#[tokio::test]
async fn server_errors_are_reported_with_a_short_message() {
    let s = Stack::start(patient()).await;
    let repo = s
        .moto
        .create_repository(US, "team/broken", Encryption::Aes256)
        .await;
    s.proxy.set_fault(Fault::service_unavailable());

    let answer = s
        .registry
        .lookup(&repo, Instant::now() + Duration::from_secs(15))
        .await;

    match answer {
        Err(LookupFailure::Aws(message)) => {
            assert!(message.contains("ServiceUnavailableException"), "{message}");
            assert!(message.len() < 200, "short, not a Debug dump: {message}");
        }
        other => panic!("expected an AWS error, got {other:?}"),
    }
}

#[tokio::test]
async fn dropped_connections_are_reported_as_aws_errors() {
    let s = Stack::start(patient()).await;
    let repo = s
        .moto
        .create_repository(US, "team/reset", Encryption::Aes256)
        .await;
    s.proxy.set_fault(Fault::CloseConnection);

    let answer = s
        .registry
        .lookup(&repo, Instant::now() + Duration::from_secs(15))
        .await;

    match answer {
        Err(LookupFailure::Aws(message)) => {
            assert!(!message.contains("DispatchFailure {"), "{message}");
            assert!(message.len() < 400, "{message}");
        }
        other => panic!("expected an AWS error, got {other:?}"),
    }
}

// --- Registry::from_env ------------------------------------------------------
//
// Environment variables are process-global and tests run on parallel threads,
// so from_env runs in a child process: this test binary re-invoked to run only
// `from_env_child`, with a clean environment.

const CHILD_MODE: &str = "ECR_GUARD_TEST_FROM_ENV_MODE";
const CHILD_REPOSITORY: &str = "ECR_GUARD_TEST_REPOSITORY";
const CHILD_DONE: &str = "from_env child: done";

async fn run_from_env_child(env: Vec<(&'static str, String)>) {
    let exe = std::env::current_exe().expect("test binary path");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "from_env_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env)
            .output()
            .expect("run the child")
    })
    .await
    .expect("child runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(CHILD_DONE),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}

#[tokio::test]
async fn from_env_uses_the_standard_endpoint_and_credential_variables() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(moto.endpoint()).await;
    let key = moto.create_key(US).await;
    moto.enable_key_rotation(&key).await;
    moto.create_repository(US, "team/from-env", Encryption::Kms(key.arn.clone()))
        .await;

    run_from_env_child(vec![
        (CHILD_MODE, "lookup".into()),
        (CHILD_REPOSITORY, "team/from-env".into()),
        ("AWS_ENDPOINT_URL", proxy.endpoint().into()),
        // KMS straight to moto: the service-specific variable wins.
        ("AWS_ENDPOINT_URL_KMS", moto.endpoint().into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", US.into()),
    ])
    .await;

    assert_eq!(proxy.count(DESCRIBE_REPOSITORIES), 1);
    assert_eq!(
        proxy.count(DESCRIBE_KEY),
        0,
        "KMS went to AWS_ENDPOINT_URL_KMS"
    );
}

#[tokio::test]
async fn from_env_without_credentials_fails_and_names_the_chain_it_tried() {
    run_from_env_child(vec![
        (CHILD_MODE, "no-credentials".into()),
        ("AWS_REGION", US.into()),
        ("AWS_CONFIG_FILE", "/nonexistent/ecr-guard/config".into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/ecr-guard/credentials".into(),
        ),
    ])
    .await;
}

/// Runs only as the child of the two tests above; a no-op otherwise.
#[tokio::test]
async fn from_env_child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let result = Registry::from_env(RegistryConfig::default(), RegistryMetrics::default()).await;
    match mode.as_str() {
        "lookup" => {
            let registry = result.expect("from_env with static credentials");
            let name = std::env::var(CHILD_REPOSITORY).expect("repository name");
            let facts = found(
                registry
                    .lookup(&repository(ACCOUNT, US, &name), deadline())
                    .await,
            );
            assert_eq!(facts.encryption_type, EncryptionType::Kms);
            assert_eq!(known_key(&facts).rotation, Rotation::Enabled);
        }
        "no-credentials" => {
            let error = result.expect_err("no credentials anywhere");
            let message = error.to_string();
            assert!(
                message.starts_with("failed to find AWS credentials: looked in"),
                "{message}"
            );
            assert!(
                message.contains("IRSA") && message.contains("IMDS"),
                "{message}"
            );
            // What every lookup then reports: plainly none found, where they
            // were looked for, in one line; a credentials failure (whose hint
            // says what to set), not an AWS error to retry.
            let failure = error.lookup_failure();
            assert_eq!(failure.kind(), "credentials");
            let line = failure.to_string();
            assert!(
                line.starts_with("no AWS credentials were found (looked in environment variables (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), the shared config and credentials files (AWS_PROFILE), a web identity token (IRSA"),
                "{line}"
            );
            assert!(!line.contains('\n') && line.len() < 500, "{line}");
        }
        other => panic!("unknown mode {other}"),
    }
    println!("{CHILD_DONE}");
}

//! AdmissionReview bodies → decode → pod specs → evaluation → response, with
//! fixed policies and made-up repository facts (no AWS). Never panics; a
//! readable review is answered with its uid, and it is allowed exactly when no
//! enforced policy failed.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ecr_guard::admission::Admission;
use ecr_guard::image::EcrRepository;
use ecr_guard::inventory::compile_all;
use ecr_guard::inventory::files::StaticInventory;
use ecr_guard::judging::{FixedFacts, Judge};
use ecr_guard::metrics::AdmissionMetrics;
use ecr_guard::policy::facts::{
    EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, Lookup, LookupFailure,
    RepositoryFacts, RepositoryLookup, Rotation, Unlearnt,
};
use ecr_guard::policy::{EcrEncryptionPolicy, Options};
use libfuzzer_sys::fuzz_target;

/// Facts chosen by a hash of the repository name: every kind of answer occurs.
fn made_up(repo: &EcrRepository) -> Lookup {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    repo.hash(&mut h);
    let key = |state: KeyState, rotation: Rotation| {
        Some(KeyLookup::Known(KeyFacts {
            arn: format!("arn:aws:kms:{}:{}:key/k", repo.region, repo.account),
            manager: KeyManager::Customer,
            state,
            rotation,
            deletion_date: None,
        }))
    };
    let found = |encryption_type, kms_key| {
        Ok(RepositoryLookup::Found(RepositoryFacts {
            encryption_type,
            kms_key,
        }))
    };
    match h.finish() % 10 {
        0 => found(EncryptionType::Aes256, None),
        1 => found(
            EncryptionType::Kms,
            key(KeyState::Enabled, Rotation::Enabled),
        ),
        2 => found(
            EncryptionType::KmsDsse,
            key(KeyState::Disabled, Rotation::Disabled),
        ),
        3 => found(
            EncryptionType::Kms,
            Some(KeyLookup::Unknown {
                arn: "arn:aws:kms:us-east-1:1:key/x".into(),
                reason: "denied".into(),
                cause: Unlearnt::Denied,
            }),
        ),
        4 => Ok(RepositoryLookup::NotFound),
        5 => Err(LookupFailure::Throttled),
        6 => found(
            EncryptionType::Kms,
            key(
                KeyState::Enabled,
                Rotation::Unknown("denied".into(), Unlearnt::Denied),
            ),
        ),
        7 => found(
            EncryptionType::Kms,
            key(KeyState::Unreported, Rotation::Enabled),
        ),
        8 => Err(LookupFailure::Credentials(
            "no AWS credentials were found".into(),
        )),
        _ => Err(LookupFailure::Timeout),
    }
}

fn policy(name: &str, spec: serde_json::Value) -> EcrEncryptionPolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ecrguard.io/v1alpha1",
        "kind": "EcrEncryptionPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a valid policy object")
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    admission: Admission,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let policies = [
            policy(
                "strict",
                serde_json::json!({
                    "namespaceSelector": {"matchLabels": {"tier": "regulated"}},
                    "rules": {"allowedEncryptionTypes": ["KMS", "KMS_DSSE"],
                              "requireCustomerManagedKey": true, "requireKeyRotation": true},
                    "nonEcrImages": "Deny",
                }),
            ),
            policy(
                "warn-all",
                serde_json::json!({"mode": "Warn", "images": ["*/team/*"],
                                   "rules": {"allowedEncryptionTypes": ["KMS"]},
                                   "onLookupFailure": "Allow"}),
            ),
            policy(
                "dry-run",
                serde_json::json!({"mode": "DryRun", "excludeImages": ["docker.io/*"],
                                   "rules": {"allowedKmsKeys": ["arn:aws:kms:*:123456789012:key/*"]}}),
            ),
            policy(
                "broken",
                serde_json::json!({"namespaceSelector": {"matchLabels": {"tier": "broken"}},
                                   "images": ["[unclosed"]}),
            ),
        ];
        let namespaces = HashMap::from([
            (
                "regulated".to_string(),
                BTreeMap::from([("tier".to_string(), "regulated".to_string())]),
            ),
            (
                "broken".to_string(),
                BTreeMap::from([("tier".to_string(), "broken".to_string())]),
            ),
        ]);
        let inventory = Arc::new(StaticInventory::new(compile_all(&policies), namespaces));
        let judge = Judge::new(
            Arc::new(FixedFacts::by_rule(made_up)),
            Options::default(),
            Duration::from_secs(3),
        );
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a tokio runtime"),
            admission: Admission::new(inventory, judge, AdmissionMetrics::default()),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let request_uid = ecr_guard::admission::decode(data)
        .ok()
        .map(|r| r.uid.into_owned());
    let Ok(outcome) = h.runtime.block_on(h.admission.review(data)) else {
        assert!(request_uid.is_none(), "decoded, yet refused");
        return;
    };
    let response = &outcome.review.response;
    assert_eq!(Some(&response.uid), request_uid.as_ref());
    if let Some(verdict) = &outcome.verdict {
        assert_eq!(response.allowed, !verdict.is_denied());
    }
    serde_json::to_vec(&outcome.review).expect("the answer serialises");
});

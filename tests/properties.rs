//! Property tests (proptest, bounded case counts so `cargo test` stays quick):
//! image parsing and review → verdict never panic, ECR hosts classify the same
//! in any case or port spelling, and a non-compliant ECR image is denied however
//! the request around it is dressed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ecr_guard::admission::Admission;
use ecr_guard::image::{self, EcrRepository};
use ecr_guard::inventory::compile_all;
use ecr_guard::inventory::files::StaticInventory;
use ecr_guard::judging::{FixedFacts, Judge};
use ecr_guard::metrics::AdmissionMetrics;
use ecr_guard::policy::facts::{
    EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, Lookup, LookupFailure,
    RepositoryFacts, RepositoryLookup, Rotation,
};
use ecr_guard::policy::{EcrEncryptionPolicy, Options};
use proptest::prelude::*;
use serde_json::{Value, json};

const CASES: u32 = 256;

// --- image parsing -------------------------------------------------------------

const REGIONS: &[&str] = &[
    "us-east-1",
    "eu-west-2",
    "ap-southeast-3",
    "cn-north-1",
    "us-gov-west-1",
];

/// `(host, account, region)` in one of ECR's host forms, canonical spelling.
fn ecr_host() -> impl Strategy<Value = (String, String, String)> {
    (
        "[0-9]{12}",
        prop::sample::select(REGIONS),
        prop::sample::select(vec![
            "dkr.ecr.{r}.amazonaws.com",
            "dkr.ecr-fips.{r}.amazonaws.com",
            "dkr.ecr.{r}.amazonaws.com.cn",
            "dkr-ecr.{r}.on.aws",
        ]),
    )
        .prop_map(|(account, region, form)| {
            let host = format!("{account}.{}", form.replace("{r}", region));
            (host, account, region.to_string())
        })
}

/// A name ECR can hold: components matching its `repositoryName` pattern, at
/// least 2 characters in all.
fn repository_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]{1,8}([._-][a-z0-9]{1,4})?", 1..4)
        .prop_map(|c| c.join("/"))
        .prop_filter("ECR names have at least 2 characters", |p| p.len() >= 2)
}

fn suffix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}".prop_map(|t| format!(":{t}")),
        "[0-9a-f]{64}".prop_map(|d| format!("@sha256:{d}")),
        ("[a-z0-9]{1,8}", "[0-9a-f]{64}").prop_map(|(t, d)| format!(":{t}@sha256:{d}")),
    ]
}

/// The host with each letter's case flipped by `flips`, and a port spelling.
fn respell(host: &str, flips: &[bool], port: &str) -> String {
    let cased: String = host
        .chars()
        .zip(flips.iter().cycle())
        .map(|(c, &flip)| if flip { c.to_ascii_uppercase() } else { c })
        .collect();
    format!("{cased}{port}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn parsing_any_string_never_panics(s in any::<String>()) {
        let _ = image::parse(&s);
    }

    #[test]
    fn parsing_reference_shaped_strings_never_panics(
        s in "[a-zA-Z0-9./:@_-]{0,80}",
    ) {
        if let Ok(parsed) = image::parse(&s) {
            // Whatever is accepted has a lower-case host and no `:443`.
            let host = parsed.name.split('/').next().unwrap_or_default();
            prop_assert_eq!(host, host.to_ascii_lowercase());
            prop_assert!(!host.ends_with(":443"));
        }
    }

    #[test]
    fn ecr_hosts_classify_the_same_in_any_case_and_port_spelling(
        (host, account, region) in ecr_host(),
        path in repository_path(),
        suffix in suffix(),
        flips in prop::collection::vec(any::<bool>(), 1..16),
        port in prop::sample::select(vec!["", ":443", ":0443", ":00443"]),
    ) {
        let canonical = image::parse(&format!("{host}/{path}{suffix}"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = EcrRepository { account, region, name: path.clone() };
        prop_assert_eq!(canonical.ecr_repository(), Some(&expected));

        let written = format!("{}/{path}{suffix}", respell(&host, &flips, port));
        let respelled = image::parse(&written).map_err(|e| TestCaseError::fail(format!("{written}: {e}")))?;
        prop_assert_eq!(respelled.ecr_repository(), Some(&expected), "{}", written);
        prop_assert_eq!(&respelled.name, &canonical.name);
    }
}

// --- review → verdict ------------------------------------------------------------

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// `plain*` repositories are AES256, `gone*` do not exist, `slow*` time out,
/// everything else is KMS with a rotating customer key.
fn fact(repo: &EcrRepository) -> Lookup {
    let found = |encryption_type, kms_key| {
        Ok(RepositoryLookup::Found(RepositoryFacts {
            encryption_type,
            kms_key,
        }))
    };
    if repo.name.starts_with("plain") {
        found(EncryptionType::Aes256, None)
    } else if repo.name.starts_with("gone") {
        Ok(RepositoryLookup::NotFound)
    } else if repo.name.starts_with("slow") {
        Err(LookupFailure::Timeout)
    } else {
        found(
            EncryptionType::Kms,
            Some(KeyLookup::Known(KeyFacts {
                arn: format!("arn:aws:kms:{}:{}:key/k", repo.region, repo.account),
                manager: KeyManager::Customer,
                state: KeyState::Enabled,
                rotation: Rotation::Enabled,
                deletion_date: None,
            })),
        )
    }
}

fn admission() -> Admission {
    let policies: Vec<EcrEncryptionPolicy> = [
        json!({"metadata": {"name": "strict"}, "spec": {
            "namespaceSelector": {"matchLabels": {"tier": "regulated"}},
            "rules": {"allowedEncryptionTypes": ["KMS", "KMS_DSSE"], "requireKeyRotation": true}}}),
        json!({"metadata": {"name": "warn"}, "spec": {"mode": "Warn",
            "rules": {"allowedEncryptionTypes": ["KMS"]}, "onLookupFailure": "Allow"}}),
    ]
    .into_iter()
    .map(|mut p| {
        p["apiVersion"] = json!("ecrguard.io/v1alpha1");
        p["kind"] = json!("EcrEncryptionPolicy");
        serde_json::from_value(p).unwrap()
    })
    .collect();
    let namespaces = HashMap::from([(
        "regulated".to_string(),
        BTreeMap::from([("tier".to_string(), "regulated".to_string())]),
    )]);
    Admission::new(
        Arc::new(StaticInventory::new(compile_all(&policies), namespaces)),
        Judge::new(
            Arc::new(FixedFacts::by_rule(fact)),
            Options::default(),
            Duration::from_secs(3),
        ),
        AdmissionMetrics::default(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Images from a pool with every kind of answer, in various spellings, and junk.
fn any_image() -> impl Strategy<Value = Value> {
    let ecr = (
        prop::sample::select(vec!["secure", "plain", "gone", "slow", "plain/nested"]),
        prop::sample::select(vec![
            ECR.to_string(),
            ECR.to_uppercase(),
            format!("{ECR}:443"),
        ]),
    )
        .prop_map(|(repo, host)| json!(format!("{host}/{repo}:1")));
    prop_oneof![
        4 => ecr,
        1 => Just(json!("nginx:1.27")),
        1 => Just(json!("")),
        1 => any::<String>().prop_map(|s| json!(s)),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(|n| json!(n)),
    ]
}

fn containers() -> impl Strategy<Value = Value> {
    prop::collection::vec(any_image(), 0..6).prop_map(|images| {
        images
            .into_iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect()
    })
}

fn review(namespace: &str, kind: &str, operation: &str, spec: Value, old: Option<Value>) -> Value {
    let (group, pod_spec_holder) = match kind {
        "Pod" => ("", spec),
        "Deployment" => ("apps", json!({"template": {"spec": spec}})),
        _ => (
            "batch",
            json!({"jobTemplate": {"spec": {"template": {"spec": spec}}}}),
        ),
    };
    let gvk = json!({"group": group, "version": "v1", "kind": kind});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "prop", "kind": gvk, "resource": {"group": group, "version": "v1", "resource": "x"},
            "name": "x", "namespace": namespace, "operation": operation, "userInfo": {},
            "object": {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}, "spec": pod_spec_holder},
            "oldObject": old.map(|o| json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}, "spec": o})),
            "dryRun": false
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_bytes_get_an_answer_or_a_clean_refusal(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let admission = admission();
        let _ = runtime().block_on(admission.review(&body));
    }

    #[test]
    fn any_review_gets_a_consistent_verdict(
        namespace in prop::sample::select(vec!["regulated", "other"]),
        kind in prop::sample::select(vec!["Pod", "Deployment", "CronJob"]),
        operation in prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
        containers in containers(),
        init in containers(),
        old in prop::option::of(containers()),
    ) {
        let admission = admission();
        let spec = json!({"containers": containers, "initContainers": init});
        let old = old.map(|c| json!({"containers": c}));
        let body = serde_json::to_vec(&review(namespace, kind, operation, spec, old)).unwrap();
        let outcome = runtime()
            .block_on(admission.review(&body))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let response = outcome.review.response;
        prop_assert_eq!(&response.uid, "prop");
        if let Some(verdict) = &outcome.verdict {
            prop_assert_eq!(response.allowed, !verdict.is_denied());
        }
    }

    #[test]
    fn a_non_compliant_ecr_image_is_denied_however_it_is_dressed(
        kind in prop::sample::select(vec!["Pod", "Deployment", "CronJob"]),
        mut containers in prop::collection::vec(
            prop::sample::select(vec!["secure", "secure/x"]).prop_map(|r| format!("{ECR}/{r}:1")), 0..5),
        bad in prop::sample::select(vec!["plain", "gone", "slow"]),
        flips in prop::collection::vec(any::<bool>(), 1..16),
        port in prop::sample::select(vec!["", ":443", ":0443"]),
        at in any::<prop::sample::Index>(),
        in_init in any::<bool>(),
    ) {
        let admission = admission();
        let bad_image = format!("{}/{bad}:1", respell(ECR, &flips, port));
        let position = at.index(containers.len() + 1);
        containers.insert(position, bad_image.clone());
        let list: Vec<Value> = containers
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect();
        let spec = if in_init {
            json!({"containers": [{"name": "main", "image": format!("{ECR}/secure:1")}], "initContainers": list})
        } else {
            json!({"containers": list})
        };
        let body = serde_json::to_vec(&review("regulated", kind, "CREATE", spec, None)).unwrap();
        let outcome = runtime()
            .block_on(admission.review(&body))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let response = outcome.review.response;
        prop_assert!(!response.allowed, "{} admitted in a {}", bad_image, kind);
        prop_assert!(response.status.message.contains(&bad_image), "{}", response.status.message);
    }
}

// --- inputs the fuzzers found (fuzz/README.md) --------------------------------
//
// Both once made the image_parse target's own assertions fail, when the
// 255-character limit counted the host too: a longer spelling of the same image
// (`:443`, `DOCKER.IO`, `docker.io/` spelled out) could be refused as too
// long. The limit is on the repository path after the host (as in
// distribution/reference v0.6 and oci-spec), so a respelling of the host
// changes nothing, and the harness now asserts exactly that.

#[test]
fn fuzz_found_a_name_that_a_respelt_host_made_too_long_which_it_no_longer_does() {
    let input = include_str!("data/fuzz-regressions/image_parse-length-after-respelling");
    let parsed = image::parse(input).unwrap();
    let respelled = format!("DOCKER.IO:443/library/{input}:latest");
    assert_eq!(image::parse(&respelled).unwrap(), parsed);

    // The same with an ECR host: a 255-character path is ECR however the host
    // is spelled, and 256 is refused (fails closed), never "not ECR".
    let path = "a".repeat(255);
    let at_limit = image::parse(&format!("{ECR}/{path}:1")).unwrap();
    assert!(at_limit.ecr_repository().is_some());
    let respelled = image::parse(&format!("{}:443/{path}:1", ECR.to_uppercase())).unwrap();
    assert_eq!(respelled, at_limit);
    let err = image::parse(&format!("{ECR}/{path}a:1")).unwrap_err();
    assert!(
        err.to_string()
            .contains("must not be more than 255 characters"),
        "{err}"
    );
}

#[test]
fn fuzz_found_a_docker_hub_name_that_normalising_made_too_long_which_it_no_longer_does() {
    let input = include_str!("data/fuzz-regressions/image_parse-length-after-normalising");
    let parsed = image::parse(input).unwrap();
    assert!(parsed.ecr_repository().is_none());
    assert!(parsed.name.starts_with("docker.io/"));
    // `docker.io/` does not count; the normalised name is a fixed point.
    let again = image::parse(&parsed.name).unwrap();
    assert_eq!(again.name, parsed.name);
}

/// A real one: `host:PORT:443` parsed (the `:443` dropped, leaving a host with a
/// port), and for an ECR host that meant "not ECR" — admitted under
/// `nonEcrImages: Allow`. Two ports are now an invalid reference: denied.
#[test]
fn fuzz_found_a_host_with_two_ports_which_is_now_invalid() {
    let input = include_str!("data/fuzz-regressions/image_parse-two-ports");
    assert!(image::parse(input).is_err(), "{input}");
    for written in [
        format!("{ECR}:5000:443/team/plain:1"),
        format!("{}:1:443/team/plain:1", ECR.to_uppercase()),
    ] {
        let err = image::parse(&written).unwrap_err().to_string();
        assert!(err.contains("more than one port"), "{written}: {err}");
    }
    // One port and plain ECR hosts are unaffected.
    assert!(
        image::parse(&format!("{ECR}:443/team/plain:1"))
            .unwrap()
            .ecr_repository()
            .is_some()
    );
    assert!(image::parse("registry.example:5000/team/app:1").is_ok());
}

//! Per-operation costs of the warm path, without network:
//! - `image_parse`: one image reference → `ImageRef` (ECR or not);
//! - `evaluate`: a 10-container Pod against 20 policies, facts in hand;
//! - `review`: AdmissionReview bytes → decode → verdict (facts from the
//!   registry's warm cache) → encoded response bytes, as `POST /validate` does,
//!   for a 1- and a 10-container Pod and for the load test's 500 mixed Pods;
//! - `decode`: the review's first step alone, beside serde_json reading the
//!   same bytes and keeping nothing (the least any serde_json reader pays).
//!
//! `cargo bench --bench hot_path`; under `cargo test --all-targets` each runs once.

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ecr_guard::admission::Admission;
use ecr_guard::inventory::Inventory;
use ecr_guard::inventory::files::{self, StaticInventory};
use ecr_guard::judging::Judge;
use ecr_guard::metrics::AdmissionMetrics;
use ecr_guard::policy::{self, ImageUse, Options, Policy, Slot};
use ecr_guard::registry::{Registry, RegistryConfig, RegistryMetrics};

fn image_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("image_parse");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("ecr_tag", fixtures::ecr_image("payments/api", "1.4.2")),
        (
            "ecr_tag_and_digest",
            format!(
                "{}/platform/envoy:1.30@sha256:{}",
                fixtures::ecr_host(),
                "ab".repeat(32)
            ),
        ),
        ("docker_hub_short", "nginx:1.27".to_string()),
        (
            "other_registry",
            "quay.io/prometheus/statsd-exporter:v0.26.0".to_string(),
        ),
    ];
    for (name, reference) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| ecr_guard::image::parse(black_box(reference)))
        });
    }
    // What a review pays for a reference it has seen before.
    let (_, ecr) = &cases[0];
    group.bench_function("ecr_tag_cached", |b| {
        b.iter(|| ecr_guard::image::parse_cached(black_box(ecr)))
    });
    group.finish();
}

fn compile(yaml: &str) -> Arc<[Policy]> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, yaml).expect("write policies");
    let policies = files::load_policies(&[path]).expect("bench policies load");
    ecr_guard::inventory::compile_all(&policies)
}

fn evaluate(c: &mut Criterion) {
    let policies = compile(&fixtures::many_policies(20));
    assert!(
        policies.iter().all(Policy::is_valid),
        "bench policies valid"
    );
    let labels = BTreeMap::from([
        ("compliance".to_string(), "regulated".to_string()),
        ("env".to_string(), "prod".to_string()),
        (
            "kubernetes.io/metadata.name".to_string(),
            "payments".to_string(),
        ),
    ]);
    let containers = fixtures::ten_container_pod();
    let image_uses: Vec<ImageUse> = containers
        .iter()
        .map(|(name, image)| ImageUse::new(Slot::Container, name, image))
        .collect();
    let facts: HashMap<_, _> = fixtures::REPOSITORIES
        .iter()
        .map(|(name, enc)| (fixtures::repository(name), Ok(fixtures::facts(*enc))))
        .collect();
    let applicable = policy::applicable(&policies, &labels);
    assert_eq!(applicable.len(), 20, "every bench policy applies");
    let verdict = policy::evaluate(&applicable, &image_uses, &facts, Options::default());
    assert!(!verdict.is_denied(), "{:?}", verdict.denial_message());

    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pod_10_containers_20_policies", |b| {
        b.iter(|| {
            let applicable = policy::applicable(black_box(&policies), black_box(&labels));
            policy::evaluate(
                &applicable,
                black_box(&image_uses),
                &facts,
                Options::default(),
            )
        })
    });
    group.bench_function("subjects_10_containers", |b| {
        b.iter(|| {
            black_box(&containers)
                .iter()
                .map(|(name, image)| ImageUse::new(Slot::Container, name, image))
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

/// A registry with no AWS behind it (nothing is fetched: its cache is seeded).
fn warm_registry(runtime: &tokio::runtime::Runtime) -> Registry {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new(fixtures::REGION))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "bench", "bench", None, None, "bench",
        )))
        .build();
    let registry =
        Registry::from_sdk_config(RegistryConfig::default(), &sdk, RegistryMetrics::default());
    runtime.block_on(async {
        for (name, enc) in fixtures::REPOSITORIES {
            registry
                .seed_for_bench(fixtures::repository(name), fixtures::facts(*enc))
                .await;
        }
    });
    registry
}

/// The bodies `review` measures: a 1-container and a 10-container Pod.
fn review_bodies() -> [(&'static str, Vec<u8>); 2] {
    let pods: [(&str, Vec<(String, String)>); 2] = [
        (
            "pod_1_container",
            vec![("api".into(), fixtures::ecr_image("payments/api", "1.4"))],
        ),
        ("pod_10_containers", fixtures::ten_container_pod()),
    ];
    pods.map(|(name, containers)| {
        let body = serde_json::to_vec(&fixtures::pod_review(
            "2b0d8d62-5b8e-4c1a-9f57-1d2c3b4a5e6f",
            "payments",
            "api-7d9f8c6b5-x7k2p",
            &containers,
            0,
        ))
        .expect("encode review");
        (name, body)
    })
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, body) in review_bodies() {
        ecr_guard::admission::decode(&body).expect("the bench review decodes");
        group.bench_function(format!("review_{name}_{}B", body.len()), |b| {
            b.iter(|| ecr_guard::admission::decode(black_box(&body)).expect("decodes"))
        });
        group.bench_function(format!("serde_skip_{name}_{}B", body.len()), |b| {
            b.iter(|| serde_skip(black_box(&body)))
        });
    }
    let mixed = mixed_bodies();
    let mut next = mixed.iter().cycle();
    group.bench_function("review_mixed_500_load_test_pods", |b| {
        b.iter(|| ecr_guard::admission::decode(next.next().expect("cycles")).expect("decodes"))
    });
    group.bench_function("serde_skip_mixed_500_load_test_pods", |b| {
        b.iter(|| serde_skip(next.next().expect("cycles")))
    });
    group.finish();
}

/// serde_json reading a body and keeping nothing.
fn serde_skip(body: &[u8]) -> serde::de::IgnoredAny {
    let text = std::str::from_utf8(body).expect("UTF-8");
    serde_json::from_str(text).expect("JSON")
}

/// The load test's 500 mixed Pod reviews, encoded.
fn mixed_bodies() -> Vec<Vec<u8>> {
    fixtures::mixed_reviews(500)
        .iter()
        .map(|review| serde_json::to_vec(review).expect("encode review"))
        .collect()
}

fn review(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = warm_registry(&runtime);
    let namespaces = fixtures::NAMESPACES
        .iter()
        .map(|spec| files::parse_namespace_labels(spec).expect("namespace spec"))
        .collect();
    let inventory: Arc<dyn Inventory> = Arc::new(StaticInventory::new(
        compile(&fixtures::load_test_policies()),
        namespaces,
    ));
    let judge = Judge::new(
        Arc::new(registry),
        Options::default(),
        Duration::from_secs(3),
    );
    let admission = Admission::new(inventory, judge, AdmissionMetrics::default());

    let mut group = c.benchmark_group("review");
    group.throughput(Throughput::Elements(1));
    for (name, body) in review_bodies() {
        let outcome = runtime.block_on(admission.review(&body)).expect("review");
        assert!(
            outcome.verdict.is_some_and(|v| !v.is_denied()),
            "the bench pod is allowed"
        );
        group.bench_function(format!("{name}_{}B", body.len()), |b| {
            b.to_async(&runtime).iter_batched(
                || body.clone(),
                |body| answer(&admission, body),
                BatchSize::SmallInput,
            )
        });
    }
    // The load test's 500 mixed Pods, one after another: what the server's
    // CPU per request is measured against (BENCHMARKS.md, round 5).
    let mixed = mixed_bodies();
    let mut next = mixed.iter().cycle();
    group.bench_function("mixed_500_load_test_pods", |b| {
        b.to_async(&runtime).iter_batched(
            || next.next().expect("cycles").clone(),
            |body| answer(&admission, body),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// What `POST /validate` does with a body: review it, encode the answer.
async fn answer(admission: &Admission, body: Vec<u8>) -> Vec<u8> {
    let outcome = admission.review(&body).await.expect("review");
    serde_json::to_vec(&outcome.review).expect("encode")
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = image_parse, evaluate, decode, review
}
criterion_main!(benches);

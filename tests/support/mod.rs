//! Shared by the integration tests: a moto server seeded through the AWS API, a
//! counting, fault-injecting proxy in front of it, and a `Registry` wired to
//! them. Each test binary uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod api_server;
pub mod https;
pub mod moto;
pub mod ports;
pub mod proxy;
pub mod pull_through;
pub mod reviews;
pub mod webhook;

use ecr_guard::policy::facts::{KeyFacts, KeyLookup, Lookup, RepositoryFacts, RepositoryLookup};
use ecr_guard::registry::{Registry, RegistryConfig, RegistryMetrics};
use prometheus_client::encoding::text::encode;

pub use ports::free_port;

use moto::Moto;
use proxy::Proxy;

/// A registry whose ECR and KMS endpoints are `endpoint` (moto or a proxy),
/// with static test credentials. Env vars are process-global, so tests use this
/// rather than `Registry::from_env`.
pub fn registry(endpoint: &str, config: RegistryConfig, metrics: RegistryMetrics) -> Registry {
    Registry::from_sdk_config(config, &moto::sdk_config(endpoint), metrics)
}

/// moto, a proxy in front of it, and a registry talking through the proxy, its
/// metrics registered in `prometheus`.
pub struct Stack {
    pub moto: Moto,
    pub proxy: Proxy,
    pub registry: Registry,
    pub prometheus: prometheus_client::registry::Registry,
}

impl Stack {
    pub async fn start(config: RegistryConfig) -> Self {
        let moto = Moto::start().await;
        let proxy = Proxy::start(moto.endpoint()).await;
        let metrics = RegistryMetrics::default();
        let mut prometheus = prometheus_client::registry::Registry::default();
        metrics.register(&mut prometheus);
        let registry = registry(proxy.endpoint(), config, metrics);
        Self {
            moto,
            proxy,
            registry,
            prometheus,
        }
    }

    /// The value of one exposed series, e.g.
    /// `ecr_guard_cache_requests_total{cache="repository",result="stale"}`; 0 when
    /// it has not been exposed yet.
    pub fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        encode(&mut text, &self.prometheus).expect("encode metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().expect("a number"))
            .unwrap_or(0.0)
    }
}

/// A lookup deadline generous enough for moto on a loaded CI machine.
pub fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(10)
}

/// The facts of a repository the lookup found; panics on anything else.
pub fn found(lookup: Lookup) -> RepositoryFacts {
    match lookup {
        Ok(RepositoryLookup::Found(facts)) => facts,
        other => panic!("expected a found repository, got {other:?}"),
    }
}

/// The facts of the repository's described key; panics on anything else.
pub fn known_key(facts: &RepositoryFacts) -> &KeyFacts {
    match &facts.kms_key {
        Some(KeyLookup::Known(key)) => key,
        other => panic!("expected a described key, got {other:?}"),
    }
}

//! Prometheus metrics for AWS calls and the repository/key caches.
//!
//! Labels are low-cardinality on purpose: API names, outcomes and cache names,
//! never repository names or key ARNs.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The AWS operations the registry calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Api {
    DescribeRepositories,
    DescribeKey,
    GetKeyRotationStatus,
    /// STS, for the credentials of a role in another account.
    AssumeRole,
    /// STS, once at start when roles are configured: ecr-guard's own account.
    GetCallerIdentity,
    DescribePullThroughCacheRules,
    DescribeRepositoryCreationTemplates,
}

impl Api {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::DescribeRepositories => "DescribeRepositories",
            Self::DescribeKey => "DescribeKey",
            Self::GetKeyRotationStatus => "GetKeyRotationStatus",
            Self::AssumeRole => "AssumeRole",
            Self::GetCallerIdentity => "GetCallerIdentity",
            Self::DescribePullThroughCacheRules => "DescribePullThroughCacheRules",
            Self::DescribeRepositoryCreationTemplates => "DescribeRepositoryCreationTemplates",
        }
    }
}

/// How one AWS call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    Ok,
    NotFound,
    Throttled,
    AccessDenied,
    /// No credentials, or AWS refused them (invalid or expired).
    Credentials,
    Timeout,
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Throttled => "throttled",
            Self::AccessDenied => "access_denied",
            Self::Credentials => "credentials",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// Which cache answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CacheName {
    Repository,
    Key,
    /// A registry's pull-through cache rules.
    PullThroughRules,
    /// A registry's repository creation templates.
    CreationTemplates,
}

impl CacheName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Repository => "repository",
            Self::Key => "key",
            Self::PullThroughRules => "pull_through_rules",
            Self::CreationTemplates => "creation_templates",
        }
    }
}

/// What the cache did for one request: a fresh entry (`hit`), a call to AWS
/// (`miss`, whether it succeeded or not), or an expired entry served because
/// AWS failed (`stale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CacheResult {
    Hit,
    Miss,
    Stale,
}

impl CacheResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}

macro_rules! label_value_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value_as_str!(Api, Outcome, CacheName, CacheResult);

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    api: Api,
    outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    api: Api,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    cache: CacheName,
    result: CacheResult,
}

type DurationFamily = Family<ApiLabels, Histogram, fn() -> Histogram>;

fn call_duration_histogram() -> Histogram {
    // 5 ms … ~10 s: the lookup budget is a few seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// Metrics of the registry. Cheap to clone (the metric families are shared);
/// `RegistryMetrics::default()` works without being registered anywhere, for
/// callers that do not export metrics.
#[derive(Clone, Debug)]
pub struct RegistryMetrics {
    calls: Family<CallLabels, Counter>,
    call_duration: DurationFamily,
    cache_requests: Family<CacheLabels, Counter>,
}

impl Default for RegistryMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            call_duration: Family::new_with_constructor(call_duration_histogram),
            cache_requests: Family::default(),
        }
    }
}

impl RegistryMetrics {
    /// Adds these metrics to `registry` under their full names
    /// (`ecr_guard_aws_calls_total`, `ecr_guard_aws_call_duration_seconds`,
    /// `ecr_guard_cache_requests_total`), so register them on an unprefixed registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ecr_guard_aws_calls",
            "AWS API calls made to look up repositories and keys, by API and outcome",
            self.calls.clone(),
        );
        registry.register_with_unit(
            "ecr_guard_aws_call_duration",
            "Duration of AWS API calls, including SDK retries",
            Unit::Seconds,
            self.call_duration.clone(),
        );
        registry.register(
            "ecr_guard_cache_requests",
            "Repository, key, pull-through rule and creation template cache requests: hit (fresh), miss (asked AWS), stale (expired entry served because AWS failed)",
            self.cache_requests.clone(),
        );
    }

    pub(crate) fn observe_call(&self, api: Api, outcome: Outcome, duration: Duration) {
        self.calls.get_or_create(&CallLabels { api, outcome }).inc();
        self.call_duration
            .get_or_create(&ApiLabels { api })
            .observe(duration.as_secs_f64());
    }

    pub(crate) fn cache_request(&self, cache: CacheName, result: CacheResult) {
        self.cache_requests
            .get_or_create(&CacheLabels { cache, result })
            .inc();
    }

    /// How many cache requests of `cache` ended in `result`.
    #[cfg(test)]
    pub(crate) fn cache_requests(&self, cache: CacheName, result: CacheResult) -> u64 {
        self.cache_requests
            .get_or_create(&CacheLabels { cache, result })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exposes_the_documented_names_and_labels() {
        let metrics = RegistryMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.observe_call(
            Api::DescribeKey,
            Outcome::AccessDenied,
            Duration::from_millis(20),
        );
        metrics.cache_request(CacheName::Repository, CacheResult::Stale);

        let mut text = String::new();
        encode(&mut text, &registry).expect("encoding to a String cannot fail");
        assert!(
            text.contains(
                r#"ecr_guard_aws_calls_total{api="DescribeKey",outcome="access_denied"} 1"#
            )
        );
        assert!(text.contains(r#"ecr_guard_aws_call_duration_seconds_count{api="DescribeKey"} 1"#));
        assert!(
            text.contains(r#"ecr_guard_cache_requests_total{cache="repository",result="stale"} 1"#)
        );
    }
}

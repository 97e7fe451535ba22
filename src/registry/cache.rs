//! A coalescing, stale-if-error cache in front of an AWS lookup.
//!
//! Two moka caches per kind of fact:
//! - `fresh` holds answers for their TTL (positive answers for `cache_ttl`,
//!   negative ones, "not found"/"unknown key", for `negative_cache_ttl`).
//!   Misses go through `try_get_with`, so concurrent misses for one key make one
//!   AWS call, and errors are never stored.
//! - `stale` holds the same answers for `stale_ttl` longer. It is read only when
//!   a refresh fails, to serve the last known answer instead of the failure.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use moka::Expiry;
use moka::future::Cache;
use tokio::time::{Instant, timeout_at};

use super::facts::LookupFailure;
use super::metrics::{CacheName, CacheResult, RegistryMetrics};

/// How long past the deadline a fetch may run before it is cut off.
const FETCH_GRACE: Duration = Duration::from_millis(250);

/// How long an answer lives, depending on whether it is a negative one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ttl {
    pub positive: Duration,
    pub negative: Duration,
}

/// Answers that may be negative ("not found"), which are cached more briefly.
pub(crate) trait Answer: Clone + Send + Sync + 'static {
    fn is_negative(&self) -> bool;
}

/// Per-entry expiry: the TTL of the answer plus `extra` (zero for the fresh
/// cache, `stale_ttl` for the stale one). Applied on insert *and* on update,
/// since a refresh overwrites an entry that moka may still hold.
struct ExpireAfterWrite {
    ttl: Ttl,
    extra: Duration,
}

impl ExpireAfterWrite {
    fn duration<V: Answer>(&self, value: &V) -> Duration {
        let ttl = if value.is_negative() {
            self.ttl.negative
        } else {
            self.ttl.positive
        };
        ttl.saturating_add(self.extra)
    }
}

impl<K, V: Answer> Expiry<K, V> for ExpireAfterWrite {
    fn expire_after_create(&self, _: &K, value: &V, _: StdInstant) -> Option<Duration> {
        Some(self.duration(value))
    }

    fn expire_after_update(
        &self,
        _: &K,
        value: &V,
        _: StdInstant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.duration(value))
    }
}

pub(crate) struct FactCache<K, V> {
    name: CacheName,
    fresh: Cache<K, V>,
    stale: Cache<K, V>,
    metrics: RegistryMetrics,
}

impl<K, V> FactCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Answer,
{
    pub(crate) fn new(
        name: CacheName,
        ttl: Ttl,
        stale_ttl: Duration,
        max_entries: u64,
        metrics: RegistryMetrics,
    ) -> Self {
        let build = |extra: Duration| {
            Cache::builder()
                .name(name.as_str())
                .max_capacity(max_entries)
                .expire_after(ExpireAfterWrite { ttl, extra })
                .build()
        };
        Self {
            name,
            fresh: build(Duration::ZERO),
            stale: build(stale_ttl),
            metrics,
        }
    }

    /// Stores `value` as if `fetch` had just answered it (fresh and stale).
    /// Only for [`Registry::seed_for_bench`](super::Registry::seed_for_bench).
    pub(crate) async fn insert(&self, key: K, value: V) {
        self.stale.insert(key.clone(), value.clone()).await;
        self.fresh.insert(key, value).await;
    }

    /// The cached answer for `key`, or `fetch`'s answer, or — when `fetch` fails
    /// or the deadline passes — the last answer within the stale window.
    ///
    /// `fetch` runs in its own task so that a caller giving up at its deadline
    /// does not cancel the call other callers are waiting on (moka would then
    /// restart it for them); `fetch` is expected to respect `deadline` itself.
    pub(crate) async fn get<F>(
        &self,
        key: &K,
        deadline: Instant,
        fetch: impl FnOnce() -> F,
    ) -> Result<V, LookupFailure>
    where
        F: Future<Output = Result<V, LookupFailure>> + Send + 'static,
    {
        if let Some(value) = self.fresh.get(key).await {
            self.metrics.cache_request(self.name, CacheResult::Hit);
            return Ok(value);
        }

        let fresh = self.fresh.clone();
        let stale = self.stale.clone();
        let owned_key = key.clone();
        let fetch = fetch();
        let coalesced = tokio::spawn(async move {
            let stale_key = owned_key.clone();
            fresh
                .try_get_with(owned_key, async move {
                    // A safety net: `fetch` gives up at the deadline itself (and
                    // records why); this only stops a task that would not.
                    let value = timeout_at(deadline + FETCH_GRACE, fetch)
                        .await
                        .unwrap_or(Err(LookupFailure::Timeout))?;
                    stale.insert(stale_key, value.clone()).await;
                    Ok::<_, LookupFailure>(value)
                })
                .await
        });
        let failure = match timeout_at(deadline, coalesced).await {
            Ok(Ok(Ok(value))) => {
                self.metrics.cache_request(self.name, CacheResult::Miss);
                return Ok(value);
            }
            Ok(Ok(Err(shared))) => Arc::unwrap_or_clone(shared),
            Ok(Err(join_error)) => {
                LookupFailure::Aws(format!("the lookup task failed: {join_error}"))
            }
            Err(_elapsed) => LookupFailure::Timeout,
        };

        if let Some(value) = self.stale.get(key).await {
            self.metrics.cache_request(self.name, CacheResult::Stale);
            tracing::debug!(
                cache = self.name.as_str(),
                %failure,
                "AWS lookup failed; serving the expired cached answer"
            );
            return Ok(value);
        }
        self.metrics.cache_request(self.name, CacheResult::Miss);
        Err(failure)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Fact {
        Found(u32),
        Missing,
    }

    impl Answer for Fact {
        fn is_negative(&self) -> bool {
            matches!(self, Self::Missing)
        }
    }

    // Wide margins between these and the sleeps below, for loaded CI machines.
    const TTL: Ttl = Ttl {
        positive: Duration::from_millis(1000),
        negative: Duration::from_millis(50),
    };

    fn cache(stale_ttl: Duration) -> FactCache<&'static str, Fact> {
        FactCache::new(
            CacheName::Repository,
            TTL,
            stale_ttl,
            100,
            RegistryMetrics::default(),
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    /// A fetch that counts its calls, waits a little and answers `answer`.
    fn fetch(
        calls: &Arc<AtomicUsize>,
        answer: Result<Fact, LookupFailure>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<Fact, LookupFailure>> + Send>>
    {
        let calls = Arc::clone(calls);
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                answer
            })
        }
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_key_fetch_once() {
        let cache = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let answers = futures::future::join_all(
            (0..20).map(|_| cache.get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(1))))),
        )
        .await;
        assert!(answers.iter().all(|a| a == &Ok(Fact::Found(1))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn answers_are_kept_for_their_ttl_and_negative_ones_more_briefly() {
        let cache = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"found", soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        cache
            .get(&"missing", soon(), fetch(&calls, Ok(Fact::Missing)))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;
        cache
            .get(&"found", soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "positive answer still fresh"
        );
        cache
            .get(&"missing", soon(), fetch(&calls, Ok(Fact::Missing)))
            .await
            .ok();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "negative answer expired");
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let failed = cache
            .get(
                &"repo",
                soon(),
                fetch(&calls, Err(LookupFailure::Throttled)),
            )
            .await;
        assert_eq!(failed, Err(LookupFailure::Throttled));
        let answer = cache
            .get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(2))))
            .await;
        assert_eq!(answer, Ok(Fact::Found(2)));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_expired_answer_is_served_when_the_refresh_fails_within_the_stale_window() {
        let cache = FactCache::new(
            CacheName::Repository,
            Ttl {
                positive: Duration::from_millis(100),
                negative: Duration::from_millis(100),
            },
            Duration::from_millis(1000),
            100,
            RegistryMetrics::default(),
        );
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let stale = cache
            .get(&"repo", soon(), fetch(&calls, Err(LookupFailure::Timeout)))
            .await;
        assert_eq!(stale, Ok(Fact::Found(1)));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a refresh was attempted");

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let gone = cache
            .get(&"repo", soon(), fetch(&calls, Err(LookupFailure::Timeout)))
            .await;
        assert_eq!(gone, Err(LookupFailure::Timeout), "past the stale window");
    }

    #[tokio::test]
    async fn a_caller_giving_up_does_not_cancel_the_fetch_others_wait_for() {
        let cache = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let slow = {
            let calls = Arc::clone(&calls);
            move || {
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(Fact::Found(7))
                })
                    as std::pin::Pin<Box<dyn Future<Output = Result<Fact, LookupFailure>> + Send>>
            }
        };
        let impatient = cache.get(
            &"repo",
            Instant::now() + Duration::from_millis(50),
            slow.clone(),
        );
        let patient = cache.get(&"repo", soon(), slow);
        let (impatient, patient) = tokio::join!(impatient, patient);
        assert_eq!(impatient, Err(LookupFailure::Timeout));
        assert_eq!(patient, Ok(Fact::Found(7)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

//! A coalescing, stale-if-error cache in front of an AWS lookup.
//!
//! One moka cache per kind of fact holds each answer with the instant it stops
//! being fresh: `cache_ttl` for positive answers, `negative_cache_ttl` for
//! negative ones ("not found", "unknown key"). moka keeps it `stale_ttl` longer,
//! so that when the refresh of an expired answer fails, the last known answer
//! can be served instead of the failure. Errors are never stored.
//!
//! Concurrent fetches of one key are coalesced by `try_get_with` on a second,
//! always-empty moka cache (`in_flight`): it stores nothing that can be read
//! (time to live zero), so only its "one init, every caller waits for it" part
//! is used, and an answer lives in one place only.

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

/// How long an answer is fresh, depending on whether it is a negative one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ttl {
    pub positive: Duration,
    pub negative: Duration,
}

impl Ttl {
    fn of(&self, value: &impl Answer) -> Duration {
        if value.is_negative() {
            self.negative
        } else {
            self.positive
        }
    }
}

/// Answers that may be negative ("not found"), which are cached more briefly.
pub(crate) trait Answer: Clone + Send + Sync + 'static {
    fn is_negative(&self) -> bool;
}

/// An answer and the instant it stops being fresh.
#[derive(Clone)]
struct Stored<V> {
    value: V,
    fresh_until: StdInstant,
}

impl<V: Answer> Stored<V> {
    fn new(value: V, ttl: Ttl) -> Self {
        let fresh_until = StdInstant::now() + ttl.of(&value);
        Self { value, fresh_until }
    }

    fn is_fresh(&self) -> bool {
        StdInstant::now() < self.fresh_until
    }
}

/// Per-entry expiry: the answer's TTL plus the stale window. Applied on insert
/// *and* on update, since a refresh overwrites an entry that is still held.
struct FreshThenStale {
    ttl: Ttl,
    stale_ttl: Duration,
}

impl FreshThenStale {
    fn duration<V: Answer>(&self, stored: &Stored<V>) -> Duration {
        self.ttl.of(&stored.value).saturating_add(self.stale_ttl)
    }
}

impl<K, V: Answer> Expiry<K, Stored<V>> for FreshThenStale {
    fn expire_after_create(&self, _: &K, stored: &Stored<V>, _: StdInstant) -> Option<Duration> {
        Some(self.duration(stored))
    }

    fn expire_after_update(
        &self,
        _: &K,
        stored: &Stored<V>,
        _: StdInstant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.duration(stored))
    }
}

pub(crate) struct FactCache<K, V> {
    name: CacheName,
    ttl: Ttl,
    answers: Cache<K, Stored<V>>,
    /// Only for `try_get_with`: what it stores expires at once.
    in_flight: Cache<K, V>,
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
        Self {
            name,
            ttl,
            answers: Cache::builder()
                .name(name.as_str())
                .max_capacity(max_entries)
                .expire_after(FreshThenStale { ttl, stale_ttl })
                .build(),
            in_flight: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(Duration::ZERO)
                .build(),
            metrics,
        }
    }

    /// Stores `value` as if a fetch had just answered it.
    /// Only for [`Registry::seed_for_bench`](super::Registry::seed_for_bench).
    pub(crate) async fn insert(&self, key: K, value: V) {
        self.answers.insert(key, Stored::new(value, self.ttl)).await;
    }

    /// The stored answer for `key`, fresh or not, without fetching or counting
    /// a request.
    pub(crate) async fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.answers.get(key).await.map(|stored| stored.value)
    }

    /// The fresh answer for `key`, or `fetch`'s answer, or — when `fetch` fails
    /// or the deadline passes — the expired answer if it is within the stale
    /// window.
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
        let expired = match self.answers.get(key).await {
            Some(stored) if stored.is_fresh() => {
                self.metrics.cache_request(self.name, CacheResult::Hit);
                return Ok(stored.value);
            }
            stored => stored.map(|stored| stored.value),
        };

        let fetched = tokio::spawn(self.fetch_once(key.clone(), deadline, fetch()));
        let failure = match timeout_at(deadline, fetched).await {
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

        if let Some(value) = expired {
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

    /// Runs `fetch` and stores its answer, unless another caller's fetch of
    /// `key` is running (then its outcome is shared) or has just stored a fresh
    /// answer (then that is returned).
    fn fetch_once<F>(
        &self,
        key: K,
        deadline: Instant,
        fetch: F,
    ) -> impl Future<Output = Result<V, Arc<LookupFailure>>> + Send + 'static
    where
        F: Future<Output = Result<V, LookupFailure>> + Send + 'static,
    {
        let answers = self.answers.clone();
        let in_flight = self.in_flight.clone();
        let ttl = self.ttl;
        async move {
            in_flight
                .try_get_with(key.clone(), async move {
                    // This caller found no fresh answer, but another caller's
                    // fetch may have stored one since.
                    if let Some(stored) = answers.get(&key).await
                        && stored.is_fresh()
                    {
                        return Ok(stored.value);
                    }
                    // A safety net: `fetch` gives up at the deadline itself (and
                    // records why); this only stops a task that would not.
                    let value = timeout_at(deadline + FETCH_GRACE, fetch)
                        .await
                        .unwrap_or(Err(LookupFailure::Timeout))?;
                    answers.insert(key, Stored::new(value.clone(), ttl)).await;
                    Ok(value)
                })
                .await
        }
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

    /// Answers fresh for 100 ms, then stale for 1 s.
    fn quickly_stale(metrics: &RegistryMetrics) -> FactCache<&'static str, Fact> {
        FactCache::new(
            CacheName::Repository,
            Ttl {
                positive: Duration::from_millis(100),
                negative: Duration::from_millis(100),
            },
            Duration::from_millis(1000),
            100,
            metrics.clone(),
        )
    }

    /// How many repository cache requests `metrics` counted with `result`.
    fn requests(metrics: &RegistryMetrics, result: &str) -> u64 {
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series =
            format!(r#"ecr_guard_cache_requests_total{{cache="repository",result="{result}"}} "#);
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |count| count.parse().unwrap())
    }

    #[tokio::test]
    async fn an_expired_answer_is_served_when_the_refresh_fails_within_the_stale_window() {
        let cache = quickly_stale(&RegistryMetrics::default());
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

    #[tokio::test]
    async fn an_expired_answer_is_refreshed_once_for_concurrent_callers_and_not_served() {
        let metrics = RegistryMetrics::default();
        let cache = quickly_stale(&metrics);
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let answers = futures::future::join_all(
            (0..20).map(|_| cache.get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(2))))),
        )
        .await;
        assert!(answers.iter().all(|a| a == &Ok(Fact::Found(2))));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
        assert_eq!(requests(&metrics, "stale"), 0);
        assert_eq!(requests(&metrics, "miss"), 21);

        let again = cache
            .get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(3))))
            .await;
        assert_eq!(again, Ok(Fact::Found(2)), "the refreshed answer is fresh");
        assert_eq!(requests(&metrics, "hit"), 1);
    }

    #[tokio::test]
    async fn concurrent_callers_share_a_failed_refresh_and_are_served_the_expired_answer() {
        let metrics = RegistryMetrics::default();
        let cache = quickly_stale(&metrics);
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let answers = futures::future::join_all((0..20).map(|_| {
            cache.get(
                &"repo",
                soon(),
                fetch(&calls, Err(LookupFailure::Throttled)),
            )
        }))
        .await;
        assert!(answers.iter().all(|a| a == &Ok(Fact::Found(1))));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
        assert_eq!(requests(&metrics, "stale"), 20);
    }

    #[tokio::test]
    async fn an_expired_answer_is_served_when_the_refresh_misses_the_deadline() {
        let cache = quickly_stale(&RegistryMetrics::default());
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(Fact::Found(2))
        };
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(cache.get(&"repo", deadline, slow).await, Ok(Fact::Found(1)));
    }

    #[tokio::test]
    async fn a_fetch_finding_an_answer_stored_since_the_caller_looked_does_not_call_aws() {
        let cache = cache(Duration::ZERO);
        cache.insert("repo", Fact::Found(1)).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = fetch(&calls, Ok(Fact::Found(2)))();
        let answer = cache.fetch_once("repo", soon(), fetch).await;
        assert_eq!(answer, Ok(Fact::Found(1)));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn answers_are_held_once() {
        let cache = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        cache.answers.run_pending_tasks().await;
        cache.in_flight.run_pending_tasks().await;
        assert_eq!(cache.answers.entry_count(), 1);
        assert_eq!(cache.in_flight.entry_count(), 0);
    }
}

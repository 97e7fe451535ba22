//! A coalescing, stale-if-error cache in front of an AWS lookup.
//!
//! One quick_cache cache per kind of fact holds each answer with the instant it
//! stops being fresh: `cache_ttl` for positive answers, `negative_cache_ttl` for
//! negative ones ("not found", "unknown key"). An answer stays usable
//! `stale_ttl` longer, so that when the refresh of an expired answer fails, the
//! last known answer can be served instead of the failure; past that it counts
//! as absent and is removed when next seen. quick_cache has no expiry of its
//! own, so answers nobody asks for again stay until evicted: memory is bounded
//! by `max_entries`, not by time. Errors are never stored.
//!
//! quick_cache rather than moka for the answers because moka's per-entry
//! bookkeeping (timer wheel, access-order deques, several small allocations)
//! costs ~450 bytes an entry against ~170, which is most of the webhook's memory
//! with 100,000 repositories cached.
//!
//! Concurrent fetches of one key are coalesced by moka's `try_get_with` on a
//! second, always-empty cache (`in_flight`): it stores nothing that can be read
//! (time to live zero), so only its "one init, every caller waits for it and
//! shares its outcome, errors included" part is used, and an answer lives in one
//! place only. (quick_cache's own placeholder guard does not share errors.)

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use quick_cache::Equivalent;
use tokio::time::{Instant, timeout_at};

use super::metrics::{CacheName, CacheResult, RegistryMetrics};
use crate::policy::facts::LookupFailure;

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

    /// Fresh, or expired for less than `stale_ttl`: may still be served if a
    /// refresh fails.
    fn is_usable(&self, stale_ttl: Duration) -> bool {
        let now = StdInstant::now();
        now < self.fresh_until || now.duration_since(self.fresh_until) < stale_ttl
    }
}

/// The stored answers, each usable until `stale_ttl` after it stops being
/// fresh. quick_cache evicts by capacity only, so the stale window is enforced
/// on read.
struct Answers<K, V> {
    held: quick_cache::sync::Cache<K, Stored<V>>,
    stale_ttl: Duration,
}

impl<K, V> Answers<K, V>
where
    K: Hash + Eq,
    V: Answer,
{
    /// The answer for `key` unless it is past its stale window (then it is
    /// removed, so that memory is not held for it until eviction).
    fn get<Q>(&self, key: &Q) -> Option<Stored<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let stored = self.held.get(key)?;
        if stored.is_usable(self.stale_ttl) {
            return Some(stored);
        }
        // `remove_if`, not `remove`: a fetch may have stored a fresh answer since.
        self.held
            .remove_if(key, |stored| !stored.is_usable(self.stale_ttl));
        None
    }

    fn insert(&self, key: K, stored: Stored<V>) {
        self.held.insert(key, stored);
    }
}

pub(crate) struct FactCache<K, V> {
    name: CacheName,
    ttl: Ttl,
    /// In an `Arc` for the fetch task, which outlives the caller's borrow.
    answers: Arc<Answers<K, V>>,
    /// Only for `try_get_with`: what it stores expires at once.
    in_flight: moka::future::Cache<K, V>,
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
        // Unit weight: at most `max_entries` answers (quick_cache splits them
        // between shards, each evicting on its own).
        let capacity = usize::try_from(max_entries).unwrap_or(usize::MAX);
        Self {
            name,
            ttl,
            answers: Arc::new(Answers {
                held: quick_cache::sync::Cache::new(capacity),
                stale_ttl,
            }),
            in_flight: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(Duration::ZERO)
                .build(),
            metrics,
        }
    }

    /// Stores `value` as if a fetch had just answered it.
    /// Only for [`Registry::seed_for_bench`](super::Registry::seed_for_bench).
    pub(crate) fn insert(&self, key: K, value: V) {
        self.answers.insert(key, Stored::new(value, self.ttl));
    }

    /// The fresh answer for `key`, without fetching or counting a request (see
    /// [`count_hit`](Self::count_hit)). The warm path: no future, no task.
    pub(crate) fn fresh<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.answers
            .get(key)
            .filter(Stored::is_fresh)
            .map(|stored| stored.value)
    }

    /// Counts a request answered by [`fresh`](Self::fresh).
    pub(crate) fn count_hit(&self) {
        self.metrics.cache_request(self.name, CacheResult::Hit);
    }

    /// The stored answer for `key`, fresh or within the stale window, without
    /// fetching or counting a request.
    pub(crate) fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.answers.get(key).map(|stored| stored.value)
    }

    /// The fresh answer for `key`, or `fetch`'s answer, or — when `fetch` fails
    /// or the deadline passes — the expired answer if it is within the stale
    /// window.
    ///
    /// `fetch` runs in its own task so that a caller giving up at its deadline
    /// does not cancel the call other callers are waiting on (moka would then
    /// restart it for them). The caller waits until `deadline`; the fetch may
    /// run until `fetch_deadline` (which it is expected to respect itself), so
    /// a caller with little time left — the API server's `?timeout=` is per
    /// review — never cuts short the call that callers with more time joined.
    pub(crate) async fn get<F>(
        &self,
        key: &K,
        deadline: Instant,
        fetch_deadline: Instant,
        fetch: impl FnOnce() -> F,
    ) -> Result<V, LookupFailure>
    where
        F: Future<Output = Result<V, LookupFailure>> + Send + 'static,
    {
        let expired = match self.answers.get(key) {
            Some(stored) if stored.is_fresh() => {
                self.metrics.cache_request(self.name, CacheResult::Hit);
                return Ok(stored.value);
            }
            stored => stored.map(|stored| stored.value),
        };

        let fetched =
            tokio::spawn(self.fetch_once(key.clone(), fetch_deadline.max(deadline), fetch()));
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
        let answers = Arc::clone(&self.answers);
        let in_flight = self.in_flight.clone();
        let ttl = self.ttl;
        async move {
            in_flight
                .try_get_with(key.clone(), async move {
                    // This caller found no fresh answer, but another caller's
                    // fetch may have stored one since.
                    if let Some(stored) = answers.get(&key)
                        && stored.is_fresh()
                    {
                        return Ok(stored.value);
                    }
                    // A safety net: `fetch` gives up at the deadline itself (and
                    // records why); this only stops a task that would not.
                    let value = timeout_at(deadline + FETCH_GRACE, fetch)
                        .await
                        .unwrap_or(Err(LookupFailure::Timeout))?;
                    answers.insert(key, Stored::new(value.clone(), ttl));
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
            (0..20).map(|_| cache.get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))),
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
            .get(&"found", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        cache
            .get(&"missing", soon(), soon(), fetch(&calls, Ok(Fact::Missing)))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;
        cache
            .get(&"found", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "positive answer still fresh"
        );
        cache
            .get(&"missing", soon(), soon(), fetch(&calls, Ok(Fact::Missing)))
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
                soon(),
                fetch(&calls, Err(LookupFailure::Throttled)),
            )
            .await;
        assert_eq!(failed, Err(LookupFailure::Throttled));
        let answer = cache
            .get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(2))))
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
    fn requests(metrics: &RegistryMetrics, result: CacheResult) -> u64 {
        metrics.cache_requests(CacheName::Repository, result)
    }

    #[tokio::test]
    async fn an_expired_answer_is_served_when_the_refresh_fails_within_the_stale_window() {
        let cache = quickly_stale(&RegistryMetrics::default());
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let stale = cache
            .get(
                &"repo",
                soon(),
                soon(),
                fetch(&calls, Err(LookupFailure::Timeout)),
            )
            .await;
        assert_eq!(stale, Ok(Fact::Found(1)));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a refresh was attempted");

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let gone = cache
            .get(
                &"repo",
                soon(),
                soon(),
                fetch(&calls, Err(LookupFailure::Timeout)),
            )
            .await;
        assert_eq!(gone, Err(LookupFailure::Timeout), "past the stale window");
    }

    #[tokio::test]
    async fn an_answer_past_its_stale_window_is_neither_served_nor_peeked() {
        let cache = quickly_stale(&RegistryMetrics::default());
        cache.insert("fetched", Fact::Found(1));
        cache.insert("peeked", Fact::Found(2));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cache.peek("peeked"), Some(Fact::Found(2)), "stale, kept");

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let failed = cache
            .get(
                &"fetched",
                soon(),
                soon(),
                fetch(&calls, Err(LookupFailure::Throttled)),
            )
            .await;
        assert_eq!(failed, Err(LookupFailure::Throttled));
        assert_eq!(cache.peek("peeked"), None);
        assert!(cache.answers.held.is_empty(), "both removed when seen");
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_capacity() {
        const CAPACITY: u64 = 100;
        let cache = FactCache::new(
            CacheName::Repository,
            TTL,
            Duration::ZERO,
            CAPACITY,
            RegistryMetrics::default(),
        );
        for key in 0..3 * CAPACITY {
            cache.insert(key, Fact::Found(1));
        }
        let held = cache.answers.held.len();
        assert!(held <= CAPACITY as usize, "{held} answers held");
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
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Ok(Fact::Found(7))
                })
                    as std::pin::Pin<Box<dyn Future<Output = Result<Fact, LookupFailure>> + Send>>
            }
        };
        // The impatient caller starts the fetch: its short wait must not bound
        // the fetch the patient caller joins (the sleep outlasts its deadline
        // plus FETCH_GRACE).
        let impatient = cache.get(
            &"repo",
            Instant::now() + Duration::from_millis(50),
            soon(),
            slow.clone(),
        );
        let patient = cache.get(&"repo", soon(), soon(), slow);
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
            .get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let answers = futures::future::join_all(
            (0..20).map(|_| cache.get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(2))))),
        )
        .await;
        assert!(answers.iter().all(|a| a == &Ok(Fact::Found(2))));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
        assert_eq!(requests(&metrics, CacheResult::Stale), 0);
        assert_eq!(requests(&metrics, CacheResult::Miss), 21);

        let again = cache
            .get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(3))))
            .await;
        assert_eq!(again, Ok(Fact::Found(2)), "the refreshed answer is fresh");
        assert_eq!(requests(&metrics, CacheResult::Hit), 1);
    }

    #[tokio::test]
    async fn concurrent_callers_share_a_failed_refresh_and_are_served_the_expired_answer() {
        let metrics = RegistryMetrics::default();
        let cache = quickly_stale(&metrics);
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let answers = futures::future::join_all((0..20).map(|_| {
            cache.get(
                &"repo",
                soon(),
                soon(),
                fetch(&calls, Err(LookupFailure::Throttled)),
            )
        }))
        .await;
        assert!(answers.iter().all(|a| a == &Ok(Fact::Found(1))));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
        assert_eq!(requests(&metrics, CacheResult::Stale), 20);
    }

    #[tokio::test]
    async fn an_expired_answer_is_served_when_the_refresh_misses_the_deadline() {
        let cache = quickly_stale(&RegistryMetrics::default());
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(Fact::Found(2))
        };
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            cache.get(&"repo", deadline, deadline, slow).await,
            Ok(Fact::Found(1))
        );
    }

    #[tokio::test]
    async fn a_fetch_finding_an_answer_stored_since_the_caller_looked_does_not_call_aws() {
        let cache = cache(Duration::ZERO);
        cache.insert("repo", Fact::Found(1));
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
            .get(&"repo", soon(), soon(), fetch(&calls, Ok(Fact::Found(1))))
            .await
            .ok();
        cache.in_flight.run_pending_tasks().await;
        assert_eq!(cache.answers.held.len(), 1);
        assert_eq!(cache.in_flight.entry_count(), 0);
    }
}

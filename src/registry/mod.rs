//! Facts about ECR repositories and their KMS keys, fetched from AWS and cached.
//!
//! [`Registry::lookup`] answers "how is this repository encrypted, and what is
//! its key like?" with ECR `DescribeRepositories` (one repository per call, in
//! the account and region of the image host) and KMS `DescribeKey` +
//! `GetKeyRotationStatus` (by key ARN, in the key's region). A repository that
//! does not exist but that a pull-through cache rule will create on its first
//! pull is answered with the repository its creation template describes
//! (`pull_through`: `DescribePullThroughCacheRules`,
//! `DescribeRepositoryCreationTemplates`, cached per registry). Answers are cached
//! (see `cache`), concurrent misses coalesce into one call, and every lookup is
//! bounded by the caller's deadline.

mod accounts;
mod assume_role;
mod aws;
mod cache;
mod call_error;
mod credentials;
mod error;
mod field_reported;
mod listing;
mod metrics;
mod pull_through;
pub mod roles;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use tokio::time::Instant;

pub use error::Error;
pub use listing::{ListedKey, ListedRepository, PullThroughRule};
pub use metrics::RegistryMetrics;
pub use roles::AssumeRoles;

use crate::policy::facts::{
    self, EncryptionType, KeyLookup, Lookup, LookupFailure, RepositoryFacts, RepositoryLookup,
};
use aws::{Aws, KmsKey, RepositoryRecord, UNNAMED_KEY_ARN, UNNAMED_KEY_REASON};
use cache::{Answer, FactCache, Ttl};
use metrics::CacheName;
use pull_through::{Rules, Templates};

use crate::image::EcrRepository;
use crate::judging::FactSource;
use futures::future::BoxFuture;

/// How the registry caches and calls AWS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// How long a repository's or key's facts are used before asking AWS again.
    pub cache_ttl: Duration,
    /// How long "repository not found" and "key cannot be described" are cached.
    pub negative_cache_ttl: Duration,
    /// How long past its TTL an answer may still be served when AWS fails to
    /// refresh it (stale-if-error).
    pub stale_ttl: Duration,
    /// Upper bound of one AWS call, SDK retries included; lookups are bounded by
    /// the caller's deadline as well.
    pub lookup_timeout: Duration,
    /// Most repositories (and, separately, keys) kept in the cache.
    pub max_entries: u64,
    /// Most AWS calls in flight at once (a quarter of them, at least one, kept
    /// for KMS calls; see `aws::CallLimits`).
    pub max_concurrent_calls: usize,
    /// Roles to assume for repositories and keys of other accounts (none by
    /// default: every call with ecr-guard's own credentials).
    pub assume_roles: AssumeRoles,
    /// Attempts per AWS call (the SDK's standard retry mode, exponential
    /// backoff with jitter on throttling and transient errors): 3 for the
    /// webhook, whose deadline is short; `scan` uses more.
    pub max_attempts: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(10 * 60),
            negative_cache_ttl: Duration::from_secs(30),
            stale_ttl: Duration::from_secs(60 * 60),
            lookup_timeout: Duration::from_secs(3),
            max_entries: 50_000,
            max_concurrent_calls: 32,
            assume_roles: AssumeRoles::default(),
            max_attempts: 3,
        }
    }
}

/// Cached, coalesced access to repository and key facts. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    aws: Arc<Aws>,
    repositories: FactCache<RepositoryKey, RepositoryRecord>,
    keys: FactCache<Arc<str>, KeyRecord>,
    /// Pull-through cache rules and creation templates, per registry.
    rules: FactCache<RegistryKey, Rules>,
    templates: FactCache<RegistryKey, Templates>,
}

/// The rules and templates caches' key: a registry, `ACCOUNT/REGION`.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RegistryKey(Box<str>);

impl RegistryKey {
    fn new(repo: &EcrRepository) -> Self {
        Self([repo.account.as_str(), &repo.region].join("/").into())
    }
}

/// The repository cache's key: account, region and name in one allocation
/// instead of an [`EcrRepository`]'s three, since the cache holds up to
/// `max_entries` of them. Joined with `/`, which neither an account (12
/// digits) nor a region (a DNS label) contains, so distinct repositories never
/// share a key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RepositoryKey(Box<str>);

impl RepositoryKey {
    fn new(repo: &EcrRepository) -> Self {
        // `join`, not `format!`: this runs for every warm lookup, and the
        // formatting machinery cost more than the copy itself.
        Self(
            [repo.account.as_str(), &repo.region, &repo.name]
                .join("/")
                .into(),
        )
    }
}

/// What the key cache holds: KMS's answer, and the key's ARN as the records of
/// repositories using the key share it (see [`Registry::share_arn`]).
#[derive(Clone)]
struct KeyRecord {
    arn: Arc<str>,
    lookup: KeyLookup,
}

impl Answer for RepositoryRecord {
    fn is_negative(&self) -> bool {
        matches!(self, Self::NotFound)
    }
}

impl Answer for KeyRecord {
    fn is_negative(&self) -> bool {
        matches!(self.lookup, KeyLookup::Unknown { .. })
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// `filter` (tracing `EnvFilter` directives) with the AWS SDK's configuration
/// loader held to errors, unless the filter names `aws_config` itself. Where
/// no credentials are found, `aws-config` warns once per source it tried, each
/// line a `Debug` dump of an HTTP response (~600 characters); ecr-guard says the
/// same in one line of its own (see [`Error::lookup_failure`]).
pub fn quiet_sdk_logs(filter: &str) -> String {
    if filter.contains("aws_config") {
        return filter.to_owned();
    }
    match filter.trim() {
        "" => "aws_config=error".to_owned(),
        filter => format!("{filter},aws_config=error"),
    }
}

impl Registry {
    /// Loads the AWS configuration the standard way (environment, profile, IRSA
    /// web identity, EKS Pod Identity / container credentials, IMDS; endpoints
    /// from `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_KMS`),
    /// with an HTTPS client on rustls + ring, and resolves credentials now so that
    /// the first lookup does not pay for it. With roles to assume, it also
    /// learns ecr-guard's own account now (`sts:GetCallerIdentity`, bounded by
    /// the lookup timeout).
    pub async fn from_env(config: RegistryConfig, metrics: RegistryMetrics) -> Result<Self, Error> {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            // Also used by the credential providers (STS, IMDS, container endpoint).
            .http_client(aws::https_client())
            .load()
            .await;
        let sdk = credentials::resolve_eagerly(sdk).await?;
        let registry = Self::from_sdk_config(config, &sdk, metrics);
        registry.inner.aws.prepare_default_region();
        registry.learn_own_account().await?;
        Ok(registry)
    }

    /// With roles to assume, learns ecr-guard's own account now rather than on
    /// the first lookup (`sts:GetCallerIdentity`, once); without, does nothing.
    ///
    /// Errors: [`Error::OwnAccount`] when STS cannot say by the lookup timeout.
    pub async fn learn_own_account(&self) -> Result<(), Error> {
        if self.inner.config.assume_roles.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.inner.config.lookup_timeout;
        match self.inner.aws.own_account(deadline).await {
            Ok(_) => Ok(()),
            Err(failure) => Err(Error::OwnAccount(failure)),
        }
    }

    /// A registry using an SDK configuration built by the caller (tests point it
    /// at an emulator). Retries (standard, 3 attempts) and timeouts are set here;
    /// without an HTTP client in `sdk`, the rustls + ring one is used.
    /// Credentials are resolved on first use.
    pub fn from_sdk_config(
        config: RegistryConfig,
        sdk: &SdkConfig,
        metrics: RegistryMetrics,
    ) -> Self {
        let ttl = Ttl {
            positive: config.cache_ttl,
            negative: config.negative_cache_ttl,
        };
        let inner = Inner {
            aws: Arc::new(Aws::new(
                sdk,
                config.max_concurrent_calls,
                config.lookup_timeout,
                metrics.clone(),
                config.assume_roles.clone(),
                config.negative_cache_ttl,
                config.max_attempts,
            )),
            repositories: FactCache::new(
                CacheName::Repository,
                ttl,
                config.stale_ttl,
                config.max_entries,
                metrics.clone(),
            ),
            keys: FactCache::new(
                CacheName::Key,
                ttl,
                config.stale_ttl,
                config.max_entries,
                metrics.clone(),
            ),
            rules: FactCache::new(
                CacheName::PullThroughRules,
                ttl,
                config.stale_ttl,
                config.max_entries,
                metrics.clone(),
            ),
            templates: FactCache::new(
                CacheName::CreationTemplates,
                ttl,
                config.stale_ttl,
                config.max_entries,
                metrics,
            ),
            config,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The facts of one repository: from the cache, or from AWS (one call per
    /// repository and per key however many callers ask at once), answered by
    /// `deadline` at the latest (then `LookupFailure::Timeout`, unless an expired
    /// answer can be served).
    pub async fn lookup(&self, repo: &EcrRepository, deadline: Instant) -> Lookup {
        match self.lookup_fresh(repo) {
            Some(lookup) => Ok(lookup),
            None => self.lookup_or_fetch(repo, deadline).await,
        }
    }

    /// [`lookup`](Self::lookup) for many repositories at once, each asked once,
    /// all concurrently and bounded by the same deadline.
    pub async fn lookup_all(
        &self,
        repos: impl IntoIterator<Item = EcrRepository>,
        deadline: Instant,
    ) -> HashMap<EcrRepository, Lookup> {
        // Sorted rather than hashed: a review names a few repositories, and
        // the judge passes them already sorted and unique.
        let mut unique: Vec<EcrRepository> = repos.into_iter().collect();
        unique.sort_unstable();
        unique.dedup();
        let mut answers = HashMap::with_capacity(unique.len());
        let mut misses = Vec::new();
        for repo in unique {
            match self.lookup_fresh(&repo) {
                Some(lookup) => {
                    answers.insert(repo, Ok(lookup));
                }
                None => misses.push(repo),
            }
        }
        if misses.is_empty() {
            return answers;
        }
        let fetches = misses.into_iter().map(|repo| async move {
            let lookup = self.lookup_or_fetch(&repo, deadline).await;
            (repo, lookup)
        });
        answers.extend(futures::future::join_all(fetches).await);
        answers
    }

    /// The facts of `repo` when the cache holds fresh answers for both the
    /// repository and its key, counted as hits; otherwise `None` and nothing
    /// counted. Warm reviews are answered here without building a future:
    /// the async path cost ~10% of the server's CPU under load, mostly moving
    /// its state around.
    fn lookup_fresh(&self, repo: &EcrRepository) -> Option<RepositoryLookup> {
        let repositories = &self.inner.repositories;
        let lookup = match repositories.fresh(&RepositoryKey::new(repo))? {
            RepositoryRecord::NotFound => {
                // Not found is the answer only where no pull-through cache rule
                // covers the name; a covered one takes the slow path.
                let rules = self.inner.rules.fresh(&RegistryKey::new(repo))?;
                if pull_through::covering_rule(&rules.0, &repo.name).is_some() {
                    return None;
                }
                self.inner.rules.count_hit();
                RepositoryLookup::NotFound
            }
            RepositoryRecord::Found {
                encryption_type,
                kms_key,
            } => {
                let kms_key = match kms_key {
                    KmsKey::None => None,
                    KmsKey::Unnamed => Some(unnamed_key()),
                    KmsKey::Arn(arn) => {
                        let key = self.inner.keys.fresh(&arn)?;
                        self.inner.keys.count_hit();
                        Some(key.lookup)
                    }
                };
                found(encryption_type, kms_key)
            }
        };
        repositories.count_hit();
        tracing::debug!(
            repository = %repo.name,
            account = %repo.account,
            region = %repo.region,
            facts = ?lookup,
            "repository looked up (cached)"
        );
        Some(lookup)
    }

    /// [`lookup`](Self::lookup) past the fresh cache: coalesced AWS calls,
    /// stale-if-error.
    #[tracing::instrument(
        name = "registry_lookup",
        level = "debug",
        skip_all,
        fields(repository = %repo.name, account = %repo.account, region = %repo.region)
    )]
    async fn lookup_or_fetch(&self, repo: &EcrRepository, deadline: Instant) -> Lookup {
        let result = self.lookup_uninstrumented(repo, deadline).await;
        match &result {
            Ok(facts) => tracing::debug!(?facts, "repository looked up"),
            Err(failure) => tracing::debug!(%failure, "repository lookup failed"),
        }
        result
    }

    /// Benchmarks only: stores `lookup` for `repo` as if AWS had just answered
    /// it, in the caches a lookup fills (repository and key), so that the warm
    /// path can be measured without an AWS endpoint. Nothing in ecr-guard calls
    /// it.
    #[doc(hidden)]
    pub async fn seed_for_bench(&self, repo: EcrRepository, lookup: RepositoryLookup) {
        let record = match lookup {
            // A planned repository is seeded as what DescribeRepositories says of it.
            RepositoryLookup::NotFound | RepositoryLookup::ToBeCreated(_) => {
                RepositoryRecord::NotFound
            }
            RepositoryLookup::Found(facts) => {
                let kms_key = match facts.kms_key {
                    None => KmsKey::None,
                    Some(KeyLookup::Unknown { arn, .. }) if arn == UNNAMED_KEY_ARN => {
                        KmsKey::Unnamed
                    }
                    Some(lookup) => {
                        let arn = match self.known_arn(lookup.arn()) {
                            Some(known) => known,
                            None => lookup.arn().into(),
                        };
                        let record = KeyRecord {
                            arn: Arc::clone(&arn),
                            lookup,
                        };
                        self.inner.keys.insert(Arc::clone(&arn), record);
                        KmsKey::Arn(arn)
                    }
                };
                RepositoryRecord::Found {
                    encryption_type: facts.encryption_type,
                    kms_key,
                }
            }
        };
        self.inner
            .repositories
            .insert(RepositoryKey::new(&repo), record);
    }

    /// The key cache's copy of `arn`, if it has one.
    fn known_arn(&self, arn: &str) -> Option<Arc<str>> {
        self.inner.keys.peek(arn).map(|key| key.arn)
    }

    /// `record` with its key ARN replaced by the key cache's copy, if it has
    /// one, so that repositories using one key hold one ARN between them.
    fn share_arn(&self, record: RepositoryRecord) -> RepositoryRecord {
        let RepositoryRecord::Found {
            encryption_type,
            kms_key: KmsKey::Arn(arn),
        } = record
        else {
            return record;
        };
        let arn = self.known_arn(&arn).unwrap_or(arn);
        RepositoryRecord::Found {
            encryption_type,
            kms_key: KmsKey::Arn(arn),
        }
    }

    async fn lookup_uninstrumented(&self, repo: &EcrRepository, deadline: Instant) -> Lookup {
        // The caller waits until its own deadline, but a fetch it starts is shared
        // by every caller that joins it: it gets the full --lookup-timeout, so a
        // review with little time left (a short `?timeout=`) cannot make the
        // reviews waiting on the same repository or key fail with it.
        let fetch_deadline = deadline.max(Instant::now() + self.inner.config.lookup_timeout);
        let record = self
            .inner
            .repositories
            .get(&RepositoryKey::new(repo), deadline, fetch_deadline, || {
                let registry = self.clone();
                let repo = repo.clone();
                async move {
                    let record = registry
                        .inner
                        .aws
                        .describe_repository(&repo, fetch_deadline)
                        .await?;
                    Ok(registry.share_arn(record))
                }
            })
            .await?;
        let (encryption_type, kms_key) = match record {
            RepositoryRecord::NotFound => return self.plan(repo, deadline, fetch_deadline).await,
            RepositoryRecord::Found {
                encryption_type,
                kms_key,
            } => (encryption_type, kms_key),
        };
        let kms_key = match kms_key {
            KmsKey::None => None,
            KmsKey::Unnamed => Some(unnamed_key()),
            KmsKey::Arn(arn) => Some(self.key(arn, deadline, fetch_deadline).await?),
        };
        Ok(found(encryption_type, kms_key))
    }

    /// What KMS says of the key `arn`, through the key cache.
    async fn key(
        &self,
        arn: Arc<str>,
        deadline: Instant,
        fetch_deadline: Instant,
    ) -> Result<KeyLookup, LookupFailure> {
        let record = self
            .inner
            .keys
            .get(&arn, deadline, fetch_deadline, || {
                let aws = Arc::clone(&self.inner.aws);
                let arn = Arc::clone(&arn);
                async move {
                    let lookup = aws.describe_key(&arn, fetch_deadline).await?;
                    Ok(KeyRecord { arn, lookup })
                }
            })
            .await?;
        Ok(record.lookup)
    }
}

fn found(encryption_type: EncryptionType, kms_key: Option<KeyLookup>) -> RepositoryLookup {
    RepositoryLookup::Found(RepositoryFacts {
        encryption_type,
        kms_key,
    })
}

/// What is known of the key of a KMS repository whose key ECR did not name.
fn unnamed_key() -> KeyLookup {
    KeyLookup::Unknown {
        arn: UNNAMED_KEY_ARN.to_owned(),
        reason: UNNAMED_KEY_REASON.to_owned(),
        cause: facts::Unlearnt::NotNamed,
    }
}

/// The facts of the policies, from ECR and KMS through the caches.
impl FactSource for Registry {
    fn lookup_all(
        &self,
        repositories: BTreeSet<EcrRepository>,
        deadline: Instant,
    ) -> BoxFuture<'_, HashMap<EcrRepository, Lookup>> {
        Box::pin(Registry::lookup_all(self, repositories, deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facts::{KeyFacts, KeyManager, KeyState, Rotation};
    use metrics::CacheResult;

    const ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/1111";

    /// A registry whose caches are filled by `seed_for_bench`; it never calls AWS.
    fn registry() -> Registry {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        Registry::from_sdk_config(RegistryConfig::default(), &sdk, RegistryMetrics::default())
    }

    fn repository(name: &str) -> EcrRepository {
        EcrRepository {
            account: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            name: name.to_owned(),
        }
    }

    fn encrypted_with(arn: &str) -> RepositoryLookup {
        RepositoryLookup::Found(RepositoryFacts {
            encryption_type: EncryptionType::Kms,
            kms_key: Some(KeyLookup::Known(KeyFacts {
                arn: arn.to_owned(),
                manager: KeyManager::Customer,
                state: KeyState::Enabled,
                rotation: Rotation::Enabled,
                deletion_date: None,
            })),
        })
    }

    #[tokio::test]
    async fn cached_facts_are_found_by_repository() {
        let registry = registry();
        let other_arn = "arn:aws:kms:us-east-1:123456789012:key/2222";
        registry
            .seed_for_bench(repository("team/a"), encrypted_with(ARN))
            .await;
        registry
            .seed_for_bench(repository("team/b"), encrypted_with(other_arn))
            .await;
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            registry.lookup(&repository("team/a"), deadline).await,
            Ok(encrypted_with(ARN))
        );
        assert_eq!(
            registry.lookup(&repository("team/b"), deadline).await,
            Ok(encrypted_with(other_arn))
        );
    }

    #[tokio::test]
    async fn a_warm_lookup_counts_one_hit_in_each_cache() {
        let metrics = RegistryMetrics::default();
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        let registry = Registry::from_sdk_config(RegistryConfig::default(), &sdk, metrics.clone());
        registry
            .seed_for_bench(repository("team/a"), encrypted_with(ARN))
            .await;
        let deadline = Instant::now() + Duration::from_secs(1);
        let answers = registry
            .lookup_all([repository("team/a"), repository("team/a")], deadline)
            .await;
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[&repository("team/a")], Ok(encrypted_with(ARN)));
        for cache in [CacheName::Repository, CacheName::Key] {
            assert_eq!(
                metrics.cache_requests(cache, CacheResult::Hit),
                1,
                "{cache:?}"
            );
            assert_eq!(
                metrics.cache_requests(cache, CacheResult::Miss),
                0,
                "{cache:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_fresh_repository_with_an_uncached_key_is_counted_once() {
        let metrics = RegistryMetrics::default();
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            // Nothing listens on port 9: the key lookup fails.
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let registry = Registry::from_sdk_config(RegistryConfig::default(), &sdk, metrics.clone());
        let record = RepositoryRecord::Found {
            encryption_type: EncryptionType::Kms,
            kms_key: KmsKey::Arn(ARN.into()),
        };
        registry
            .inner
            .repositories
            .insert(RepositoryKey::new(&repository("team/a")), record);
        let deadline = Instant::now() + Duration::from_millis(500);
        let answer = registry.lookup(&repository("team/a"), deadline).await;
        assert!(answer.is_err(), "{answer:?}");
        // The fast path saw the repository but not the key, and counted nothing;
        // the fetch path counted the repository hit and the key miss.
        assert_eq!(
            metrics.cache_requests(CacheName::Repository, CacheResult::Hit),
            1
        );
        assert_eq!(metrics.cache_requests(CacheName::Key, CacheResult::Miss), 1);
        assert_eq!(metrics.cache_requests(CacheName::Key, CacheResult::Hit), 0);
    }

    #[tokio::test]
    async fn repositories_using_one_key_share_its_arn() {
        let registry = registry();
        registry
            .seed_for_bench(repository("team/a"), encrypted_with(ARN))
            .await;
        let fetched = RepositoryRecord::Found {
            encryption_type: EncryptionType::Kms,
            kms_key: KmsKey::Arn(ARN.into()),
        };
        let RepositoryRecord::Found {
            kms_key: KmsKey::Arn(arn),
            ..
        } = registry.share_arn(fetched)
        else {
            panic!("share_arn changed the record's shape");
        };
        let cached = registry.inner.keys.peek(ARN).expect("seeded key");
        assert!(Arc::ptr_eq(&arn, &cached.arn));
    }
}

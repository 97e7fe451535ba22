//! The AWS side: the three ECR and KMS calls we make, with the clients of the
//! right account and region (`accounts`), and how their answers and errors
//! become facts or `LookupFailure`s. No caching here.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::types::KeyManagerType;
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::ProvideErrorKind;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use super::accounts::{Accounts, ClientSet, RegionClients};
use super::call_error::{CallError, classify};
use super::field_reported::FieldReported;
use super::metrics::{Api, Outcome, RegistryMetrics};
use super::roles::AssumeRoles;
use crate::image::EcrRepository;
use crate::policy::facts::{
    EncryptionType, KeyArn, KeyArnKind, KeyFacts, KeyLookup, KeyManager, KeyState, LookupFailure,
    Rotation, Unlearnt,
};

/// The HTTPS client for ECR and KMS: rustls with the *ring* provider (the crate
/// is built without aws-lc), trusting the platform's root certificates.
pub(crate) fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// What `DescribeRepositories` said about one repository, before its key is
/// described. This is what the repository cache holds; key facts have their own
/// cache so that repositories sharing a key share one `DescribeKey`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RepositoryRecord {
    NotFound,
    Found {
        encryption_type: EncryptionType,
        kms_key: KmsKey,
    },
}

/// The key ECR named for a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KmsKey {
    /// AES256: no KMS key.
    None,
    /// Shared by the records of every repository using the key (see
    /// `Registry::share_arn`): 100,000 repositories often use a handful of keys.
    Arn(Arc<str>),
    /// KMS or KMS_DSSE without a `kmsKey`. Real ECR reports the ARN of the
    /// AWS-managed `aws/ecr` key; moto leaves it out for KMS_DSSE.
    Unnamed,
}

/// The ARN shown for a key ECR did not name. It is a label, never sent to KMS:
/// describing `alias/aws/ecr` would create that key as a side effect.
pub(crate) const UNNAMED_KEY_ARN: &str = "aws/ecr (AWS-managed default key)";
pub(crate) const UNNAMED_KEY_REASON: &str = "ECR reported KMS encryption without naming the key (the AWS-managed aws/ecr key); \
     ecr-guard describes keys by ARN only, because describing the alias would create the key";

/// The cap on concurrent AWS calls, split in two pools so that KMS calls do not
/// queue behind repository calls: in a burst over many uncached repositories, a
/// key that hundreds of waiting reviews need would otherwise wait for every
/// `DescribeRepositories` queued before it. A quarter of the cap (at least one
/// call) is kept for KMS; with a cap of one, both share it.
#[derive(Debug)]
struct CallLimits {
    repositories: Arc<Semaphore>,
    keys: Arc<Semaphore>,
}

impl CallLimits {
    fn new(max_concurrent_calls: usize) -> Self {
        let total = max_concurrent_calls.max(1);
        if total == 1 {
            let shared = Arc::new(Semaphore::new(1));
            return Self {
                repositories: Arc::clone(&shared),
                keys: shared,
            };
        }
        let keys = (total / 4).max(1);
        Self {
            repositories: Arc::new(Semaphore::new(total - keys)),
            keys: Arc::new(Semaphore::new(keys)),
        }
    }

    fn for_api(&self, api: Api) -> &Semaphore {
        match api {
            Api::DescribeRepositories
            | Api::DescribePullThroughCacheRules
            | Api::DescribeRepositoryCreationTemplates => &self.repositories,
            Api::DescribeKey | Api::GetKeyRotationStatus => &self.keys,
            // STS: once at start, and once per role and session.
            Api::AssumeRole | Api::GetCallerIdentity => &self.repositories,
        }
    }
}

/// AWS access for the registry: lazily built per-region clients, a cap on
/// concurrent calls, and call metrics.
#[derive(Debug)]
pub(crate) struct Aws {
    /// Clients with ecr-guard's own credentials.
    pub(super) own: ClientSet,
    /// Roles to assume for other accounts, and their clients.
    pub(super) accounts: Accounts,
    limits: CallLimits,
    /// Upper bound of one call, retries included.
    call_timeout: Duration,
    pub(super) metrics: RegistryMetrics,
}

impl Aws {
    /// `roles` are assumed for other accounts, a failure to assume one
    /// remembered for `negative_ttl`.
    pub(crate) fn new(
        sdk: &SdkConfig,
        max_concurrent_calls: usize,
        lookup_timeout: Duration,
        metrics: RegistryMetrics,
        roles: AssumeRoles,
        negative_ttl: Duration,
        max_attempts: u32,
    ) -> Self {
        let mut builder = sdk
            .to_builder()
            // Standard mode (3 attempts for the webhook, more for `scan`); each
            // call's operation timeout is cut to what is left of the deadline
            // (see `call`), so retries never outlive it.
            .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(lookup_timeout)
                    .operation_timeout(lookup_timeout)
                    .build(),
            );
        if sdk.http_client().is_none() {
            builder = builder.http_client(https_client());
        }
        if sdk.time_source().is_none() {
            builder = builder.time_source(SharedTimeSource::default());
        }
        if sdk.sleep_impl().is_none() {
            builder.set_sleep_impl(default_async_sleep());
        }
        if sdk.identity_cache().is_none() {
            // One credentials cache for every per-region client.
            builder = builder.identity_cache(IdentityCache::lazy().build());
        }
        let sdk = builder.build();
        Self {
            accounts: Accounts::new(roles, &sdk, negative_ttl),
            own: ClientSet::new(sdk),
            limits: CallLimits::new(max_concurrent_calls),
            call_timeout: lookup_timeout,
            metrics,
        }
    }

    /// Builds (once) the clients of the SDK configuration's own region, if it
    /// has one, so that the first lookup there does not pay for it.
    pub(crate) fn prepare_default_region(&self) {
        if let Some(region) = self.own.sdk().region() {
            let _ = self.clients(region.as_ref());
        }
    }

    /// The clients of `region` with ecr-guard's own credentials. For calls
    /// about a given account (which may have a role to assume), use
    /// [`clients_for`](Self::clients_for).
    pub(crate) fn clients(&self, region: &str) -> RegionClients {
        self.own.clients(region)
    }

    /// `DescribeRepositories` for exactly this repository, in its registry
    /// (account) and region.
    pub(crate) async fn describe_repository(
        &self,
        repo: &EcrRepository,
        deadline: Instant,
    ) -> Result<RepositoryRecord, LookupFailure> {
        let ecr = self
            .clients_for(&repo.account, &repo.region, deadline)
            .await?
            .ecr;
        let answer = self
            .call(
                Api::DescribeRepositories,
                deadline,
                "RepositoryNotFoundException",
                |timeouts| {
                    ecr.describe_repositories()
                        .registry_id(&repo.account)
                        .repository_names(&repo.name)
                        .customize()
                        .config_override(
                            aws_sdk_ecr::config::Builder::default().timeout_config(timeouts),
                        )
                        .send()
                },
            )
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(CallError::NotFound(_)) => return Ok(RepositoryRecord::NotFound),
            Err(e) => return Err(e.into_failure()),
        };
        // With a registryId that has no such repository, ECR may answer with an
        // empty list instead of RepositoryNotFoundException (moto does).
        let Some(repository) = output.repositories().first() else {
            return Ok(RepositoryRecord::NotFound);
        };
        record_of(repository)
    }

    /// `DescribeKey` (by key ARN only, with the KMS client of the ARN's region)
    /// and, for customer-managed keys, `GetKeyRotationStatus`.
    pub(crate) async fn describe_key(
        &self,
        arn: &str,
        deadline: Instant,
    ) -> Result<KeyLookup, LookupFailure> {
        let unknown = |reason: String, cause: Unlearnt| KeyLookup::Unknown {
            arn: arn.to_owned(),
            reason,
            cause,
        };
        let Some((account, region)) = key_arn_account_and_region(arn) else {
            // Never describe an alias: DescribeKey on alias/aws/ecr creates the key.
            return Ok(unknown(
                format!(
                    "ECR named the key as {arn:?}, which is not a KMS key ARN; ecr-guard describes keys by ARN only"
                ),
                Unlearnt::NotNamed,
            ));
        };
        // The key's owner may be another account than the repository's.
        let kms = self.clients_for(account, region, deadline).await?.kms;

        let answer = self
            .call(
                Api::DescribeKey,
                deadline,
                "NotFoundException",
                |timeouts| {
                    kms.describe_key()
                        .key_id(arn)
                        .customize()
                        .config_override(
                            aws_sdk_kms::config::Builder::default().timeout_config(timeouts),
                        )
                        .send()
                },
            )
            .await;
        let output = match answer {
            Ok(output) => output,
            // The key may live in another account whose key policy does not let us
            // describe it: an explicit "unknown key", cached like any answer.
            Err(CallError::NotFound(m)) => {
                return Ok(unknown(
                    format!("KMS has no such key: {m}"),
                    Unlearnt::NotFound,
                ));
            }
            Err(CallError::AccessDenied(m)) => {
                return Ok(unknown(
                    format!("DescribeKey was denied: {m}"),
                    Unlearnt::Denied,
                ));
            }
            Err(CallError::Rejected { code, message }) => {
                return Ok(unknown(
                    format!("DescribeKey was rejected: {code}: {message}"),
                    Unlearnt::Rejected,
                ));
            }
            Err(e) => return Err(e.into_failure()),
        };
        let Some(metadata) = output.key_metadata() else {
            return Err(LookupFailure::Unrecognised(
                "KMS answered DescribeKey without key metadata".into(),
            ));
        };
        // Absent, the state is unknown: not a state, and not "unusable".
        let state = metadata
            .key_state()
            .map_or(KeyState::Unreported, |s| KeyState::from_aws(s.as_str()));
        let manager = match metadata.key_manager() {
            Some(KeyManagerType::Aws) => KeyManager::Aws,
            Some(KeyManagerType::Customer) => KeyManager::Customer,
            other => {
                return Ok(unknown(
                    match other {
                        Some(m) => format!(
                            "KMS reported key manager {:?}, which this version of ecr-guard does not know",
                            m.as_str()
                        ),
                        None => "KMS did not report who manages the key (no KeyManager)".to_owned(),
                    },
                    Unlearnt::Unreported,
                ));
            }
        };
        // The ARN KMS reports is canonical; ECR's should be the same.
        let arn = metadata.arn().unwrap_or(arn).to_owned();

        let rotation = match manager {
            // AWS-managed keys rotate yearly, and GetKeyRotationStatus is not for them.
            KeyManager::Aws => Rotation::AwsManaged,
            KeyManager::Customer => self.rotation(&kms, &arn, deadline).await?,
        };
        // Reported for PendingDeletion keys only; one we cannot read stays
        // unknown rather than becoming a made-up date.
        let deletion_date = metadata
            .deletion_date()
            .and_then(|date| std::time::SystemTime::try_from(*date).ok());
        Ok(KeyLookup::Known(KeyFacts {
            arn,
            manager,
            state,
            rotation,
            deletion_date,
        }))
    }

    async fn rotation(
        &self,
        kms: &aws_sdk_kms::Client,
        arn: &str,
        deadline: Instant,
    ) -> Result<Rotation, LookupFailure> {
        // The SDK reads an absent `KeyRotationEnabled` as false (the KMS model's
        // default): whether KMS sent it is seen in the answer itself.
        let reported = FieldReported::new("KeyRotationEnabled");
        let answer = self
            .call(
                Api::GetKeyRotationStatus,
                deadline,
                "NotFoundException",
                |timeouts| {
                    kms.get_key_rotation_status()
                        .key_id(arn)
                        .customize()
                        .config_override(
                            aws_sdk_kms::config::Builder::default().timeout_config(timeouts),
                        )
                        .interceptor(reported.clone())
                        .send()
                },
            )
            .await;
        match answer {
            Ok(_) if !reported.seen() => Ok(Rotation::Unknown(
                "KMS answered GetKeyRotationStatus without KeyRotationEnabled".into(),
                Unlearnt::Unreported,
            )),
            Ok(output) if output.key_rotation_enabled() => Ok(Rotation::Enabled),
            Ok(_) => Ok(Rotation::Disabled),
            // Definite answers (denied by the key policy, unsupported key spec…)
            // are facts about the key; transient failures fail the lookup.
            Err(CallError::AccessDenied(m)) => Ok(Rotation::Unknown(
                format!("GetKeyRotationStatus was denied: {m}"),
                Unlearnt::Denied,
            )),
            Err(CallError::NotFound(m)) => Ok(Rotation::Unknown(
                format!("GetKeyRotationStatus found no such key: {m}"),
                Unlearnt::NotFound,
            )),
            Err(CallError::Rejected { code, message }) => Ok(Rotation::Unknown(
                format!("GetKeyRotationStatus was rejected: {code}: {message}"),
                Unlearnt::Rejected,
            )),
            Err(e) => Err(e.into_failure()),
        }
    }

    /// Makes one AWS call: waits for a slot under the concurrency cap, gives the
    /// SDK an operation timeout of what is left until `deadline` (at most the
    /// lookup timeout), enforces the deadline itself as well (the SDK's timeout
    /// does not cover everything, e.g. the credentials exchange), classifies the
    /// error and records metrics.
    pub(super) async fn call<T, E, Fut>(
        &self,
        api: Api,
        deadline: Instant,
        not_found_code: &str,
        send: impl FnOnce(TimeoutConfig) -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + ProvideErrorKind + StdError + 'static,
    {
        let _permit = match timeout_at(deadline, self.limits.for_api(api).acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => {
                return Err(CallError::Failed("the AWS call limiter is closed".into()));
            }
            Err(_elapsed) => return Err(CallError::Timeout),
        };
        let started = Instant::now();
        let limit = deadline
            .saturating_duration_since(started)
            .min(self.call_timeout);
        // Only the operation timeout varies per call. The connect timeout is part
        // of the HTTP client's connector settings: a different value per call
        // made the SDK build (and keep) a new HTTPS connector, with its own root
        // store and connection pool, for every call — 25+ KB and a fresh TLS
        // connection per AWS call. The client-wide connect timeout (the lookup
        // timeout) stays.
        let timeouts = TimeoutConfig::builder().operation_timeout(limit).build();
        let result = match timeout_at(deadline, send(timeouts)).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(classify(&e, not_found_code)),
            Err(_elapsed) => Err(CallError::Timeout),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => e.outcome(),
        };
        let elapsed = started.elapsed();
        self.metrics.observe_call(api, outcome, elapsed);
        match &result {
            Ok(_) => tracing::debug!(api = api.as_str(), ?elapsed, "AWS call succeeded"),
            Err(error) if error.needs_an_operator(api) => {
                tracing::warn!(api = api.as_str(), ?elapsed, ?error, "AWS call failed")
            }
            Err(error) => tracing::debug!(api = api.as_str(), ?elapsed, ?error, "AWS call refused"),
        }
        result
    }
}

/// How ECR's description of one repository (`DescribeRepositories`) says it
/// is encrypted.
///
/// Errors: an encryption type this version does not know.
pub(crate) fn record_of(
    repository: &aws_sdk_ecr::types::Repository,
) -> Result<RepositoryRecord, LookupFailure> {
    let Some(config) = repository.encryption_configuration() else {
        // No configuration means ECR's default, AES256 ("By default, Amazon
        // ECR uses server-side encryption with Amazon S3-managed encryption
        // keys": ECR User Guide, encryption at rest; DESIGN.md). This is
        // ECR's documented meaning of the absence, not a guess.
        return Ok(RepositoryRecord::Found {
            encryption_type: EncryptionType::Aes256,
            kms_key: KmsKey::None,
        });
    };
    let reported = config.encryption_type().as_str();
    let Some(encryption_type) = EncryptionType::from_aws(reported) else {
        return Err(LookupFailure::Unrecognised(format!(
            "ECR reported encryption type {reported:?}, which this version of ecr-guard does not know"
        )));
    };
    let kms_key = match (encryption_type, config.kms_key()) {
        (EncryptionType::Aes256, _) => KmsKey::None,
        (_, Some(arn)) if !arn.is_empty() => KmsKey::Arn(arn.into()),
        (_, _) => KmsKey::Unnamed,
    };
    Ok(RepositoryRecord::Found {
        encryption_type,
        kms_key,
    })
}

/// The region of a KMS *key* ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`);
/// `None` for anything else, aliases included.
#[cfg(test)]
fn key_arn_region(arn: &str) -> Option<&str> {
    key_arn_account_and_region(arn).map(|(_, region)| region)
}

/// The account and region of a KMS *key* ARN; `None` for anything else,
/// aliases included.
fn key_arn_account_and_region(arn: &str) -> Option<(&str, &str)> {
    KeyArn::parse(arn)
        .ok()
        .filter(|key| key.kind() == KeyArnKind::Key)
        .map(|key| (key.account(), key.region()))
}

#[cfg(test)]
mod tests {
    #[rstest::rstest]
    #[case(1, 1, 1)]
    #[case(2, 1, 1)]
    #[case(4, 3, 1)]
    #[case(32, 24, 8)]
    fn the_call_cap_keeps_a_share_for_kms(
        #[case] cap: usize,
        #[case] repositories: usize,
        #[case] keys: usize,
    ) {
        let limits = CallLimits::new(cap);
        let repo = limits.for_api(Api::DescribeRepositories);
        assert_eq!(repo.available_permits(), repositories);
        assert_eq!(limits.for_api(Api::DescribeKey).available_permits(), keys);
        assert_eq!(
            limits
                .for_api(Api::GetKeyRotationStatus)
                .available_permits(),
            keys
        );
        // With a cap of one, the pools are one: the total is never exceeded.
        let _held = repo.try_acquire().expect("a permit");
        let total_left = if cap == 1 {
            repo.available_permits()
        } else {
            repo.available_permits() + limits.for_api(Api::DescribeKey).available_permits()
        };
        assert_eq!(total_left, cap - 1);
    }

    use super::*;

    #[test]
    fn key_arn_region_accepts_key_arns_of_every_partition() {
        assert_eq!(
            key_arn_region(
                "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
            ),
            Some("eu-west-1")
        );
        assert_eq!(
            key_arn_region("arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234"),
            Some("cn-north-1")
        );
        assert_eq!(
            key_arn_region("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/abc"),
            Some("us-gov-west-1")
        );
    }

    #[test]
    fn key_arn_region_refuses_aliases_ids_and_garbage() {
        for not_a_key_arn in [
            "arn:aws:kms:us-east-1:111122223333:alias/aws/ecr",
            "alias/aws/ecr",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms::111122223333:key/abc",
            "arn:aws:s3:us-east-1:111122223333:key/abc",
            "",
        ] {
            assert_eq!(key_arn_region(not_a_key_arn), None, "{not_a_key_arn}");
        }
    }
}

//! Resolving AWS credentials once at start-up, so that the first admission does
//! not pay for a credential exchange (STS for IRSA, the Pod Identity agent, IMDS).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};

use super::error::{DEFAULT_CHAIN, Error};

/// Credentials this close to expiry are not handed out from the prefetch.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Resolves credentials from `sdk`'s provider now, and returns a configuration
/// whose provider hands out those credentials first, then defers to the
/// original provider. The SDK's identity cache (shared by every client built
/// from the configuration) keeps them until they near expiry.
pub(crate) async fn resolve_eagerly(sdk: SdkConfig) -> Result<SdkConfig, Error> {
    let provider = sdk
        .credentials_provider()
        .ok_or(Error::NoCredentialsProvider)?;
    let credentials =
        provider
            .provide_credentials()
            .await
            .map_err(|source| Error::ResolveCredentials {
                chain: DEFAULT_CHAIN,
                source,
            })?;
    // Never the secret: the access key id and the expiry are enough to debug.
    tracing::info!(
        access_key_id = credentials.access_key_id(),
        expiry = ?credentials.expiry(),
        "resolved AWS credentials"
    );
    let prefetched = Prefetched {
        first: Mutex::new(Some(credentials)),
        inner: provider,
    };
    Ok(sdk
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(prefetched))
        .build())
}

#[derive(Debug)]
struct Prefetched {
    first: Mutex<Option<Credentials>>,
    inner: SharedCredentialsProvider,
}

impl ProvideCredentials for Prefetched {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match first {
            Some(credentials) if !expires_soon(&credentials) => {
                future::ProvideCredentials::ready(Ok(credentials))
            }
            _ => self.inner.provide_credentials(),
        }
    }
}

/// ecr-guard's own credentials for signing `AssumeRole` calls: resolved from
/// the wrapped provider, then reused until they near expiry, so that assuming
/// a role does not first exchange an IRSA token (or ask IMDS) again. Not
/// coalesced: roles are assumed about once an hour each.
#[derive(Debug)]
pub(crate) struct Reused {
    last: Mutex<Option<Credentials>>,
    inner: Option<SharedCredentialsProvider>,
}

impl Reused {
    pub(crate) fn new(inner: SharedCredentialsProvider) -> Self {
        Self {
            last: Mutex::new(None),
            inner: Some(inner),
        }
    }

    /// A provider that never has credentials.
    pub(crate) fn none() -> Self {
        Self {
            last: Mutex::new(None),
            inner: None,
        }
    }
}

impl ProvideCredentials for Reused {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let last = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(credentials) = last.filter(|c| !expires_soon(c)) {
            return future::ProvideCredentials::ready(Ok(credentials));
        }
        future::ProvideCredentials::new(async move {
            let Some(inner) = &self.inner else {
                return Err(CredentialsError::not_loaded(
                    "ecr-guard has no credentials provider",
                ));
            };
            let credentials = inner.provide_credentials().await?;
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(credentials.clone());
            Ok(credentials)
        })
    }
}

fn expires_soon(credentials: &Credentials) -> bool {
    credentials
        .expiry()
        .is_some_and(|expiry| expiry <= SystemTime::now() + EXPIRY_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::BehaviorVersion;

    fn sdk_with(credentials: Credentials) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    }

    #[tokio::test]
    async fn resolves_once_and_hands_out_the_prefetched_credentials() {
        let sdk = resolve_eagerly(sdk_with(Credentials::new(
            "AKID", "secret", None, None, "test",
        )))
        .await
        .expect("static credentials resolve");
        let provider = sdk.credentials_provider().expect("provider kept");
        let first = provider.provide_credentials().await.expect("prefetched");
        assert_eq!(first.access_key_id(), "AKID");
        // Later calls go to the original provider.
        let again = provider.provide_credentials().await.expect("delegated");
        assert_eq!(again.access_key_id(), "AKID");
    }

    #[tokio::test]
    async fn a_configuration_without_credentials_is_an_error() {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .build();
        let error = resolve_eagerly(sdk).await.expect_err("no provider");
        assert!(matches!(error, Error::NoCredentialsProvider));
    }

    #[tokio::test]
    async fn a_failing_chain_names_the_sources_it_tried() {
        let failing = aws_credential_types::credential_fn::provide_credentials_fn(|| async {
            Err(aws_credential_types::provider::error::CredentialsError::not_loaded("nothing here"))
        });
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(SharedCredentialsProvider::new(failing))
            .build();
        let error = resolve_eagerly(sdk).await.expect_err("chain fails");
        let message = error.to_string();
        assert!(
            message.starts_with("failed to find AWS credentials: looked in"),
            "{message}"
        );
        // What a lookup reports: plainly that none were found, and where.
        let failure = error.lookup_failure().to_string();
        assert!(
            failure.starts_with("no AWS credentials were found (looked in environment variables"),
            "{failure}"
        );
        for source in ["AWS_ACCESS_KEY_ID", "IRSA", "Pod Identity", "IMDS"] {
            assert!(
                message.contains(source),
                "{message} should mention {source}"
            );
        }
    }
}

//! Credentials of a role in another account: `sts:AssumeRole` through
//! aws-config's `AssumeRoleProvider`, chained on ecr-guard's own credentials,
//! counted in the AWS call metrics, with a failure remembered for the negative
//! TTL so that a refused role is not asked again by every lookup.
//!
//! Caching the credentials and refreshing them before they expire is the SDK
//! identity cache's job: every client of one role is built from one
//! configuration holding this provider and a lazy identity cache, which makes
//! one `AssumeRole` call however many lookups need the credentials at once.

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_ecr::config::Region;
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use tokio::time::Instant;

use super::call_error::{CallError, classify, error_chain, find_in_chain};
use super::metrics::{Api, RegistryMetrics};
use super::roles::SESSION_NAME;

/// STS's region when the configuration names none (its global endpoint's).
const FALLBACK_STS_REGION: &str = "us-east-1";

/// Why a role could not be assumed. Carried to the lookup inside the SDK's
/// credentials error, where `call_error::classify` finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AssumeRoleFailure {
    pub(crate) role: Arc<str>,
    pub(crate) external_id: bool,
    pub(crate) cause: CallError,
}

impl AssumeRoleFailure {
    /// STS gave a definite refusal (denied, role missing, invalid request),
    /// which the role's trust policy or ecr-guard's permissions must fix; a
    /// throttled, timed out or failed call may succeed when retried.
    pub(crate) fn refused(&self) -> bool {
        matches!(
            self.cause,
            CallError::AccessDenied(_)
                | CallError::NotFound(_)
                | CallError::Rejected { .. }
                | CallError::Credentials(_)
        )
    }

    pub(crate) fn reason(&self) -> String {
        match &self.cause {
            CallError::Timeout => "STS did not answer in time".to_owned(),
            CallError::Throttled => "STS throttled AssumeRole".to_owned(),
            CallError::AccessDenied(m) => format!("STS denied AssumeRole: {m}"),
            CallError::Credentials(m) => m.clone(),
            CallError::NotFound(m) | CallError::Failed(m) => format!("STS error: {m}"),
            CallError::Rejected { code, message } => format!("STS refused: {code}: {message}"),
            CallError::AssumeRole(inner) => inner.reason(),
        }
    }
}

impl fmt::Display for AssumeRoleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not assume role {}: {}", self.role, self.reason())
    }
}

impl StdError for AssumeRoleFailure {}

/// The credentials provider of one role.
#[derive(Debug)]
pub(crate) struct AssumedRole {
    role: Arc<str>,
    external_id: bool,
    inner: AssumeRoleProvider,
    metrics: RegistryMetrics,
    negative_ttl: Duration,
    last_failure: Mutex<Option<(Instant, AssumeRoleFailure)>>,
}

impl AssumedRole {
    /// A provider assuming `role` (session name `ecr-guard`, with
    /// `external_id` if given) through STS as configured in `sdk` (endpoint,
    /// HTTP client, retries, timeouts), authenticated by `base` (ecr-guard's
    /// own credentials). Makes no call until credentials are asked for.
    pub(crate) async fn new(
        role: &str,
        external_id: Option<&str>,
        sdk: &SdkConfig,
        base: SharedCredentialsProvider,
        metrics: RegistryMetrics,
        negative_ttl: Duration,
    ) -> Self {
        let mut builder = AssumeRoleProvider::builder(role)
            .session_name(SESSION_NAME)
            .configure(sdk);
        if sdk.region().is_none() {
            builder = builder.region(Region::new(FALLBACK_STS_REGION));
        }
        if let Some(id) = external_id {
            builder = builder.external_id(id);
        }
        Self {
            role: role.into(),
            external_id: external_id.is_some(),
            inner: builder.build_from_provider(base).await,
            metrics,
            negative_ttl,
            last_failure: Mutex::new(None),
        }
    }

    fn recent_failure(&self) -> Option<AssumeRoleFailure> {
        let last = self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((at, failure)) if at.elapsed() < self.negative_ttl => Some(failure.clone()),
            _ => None,
        }
    }

    async fn assume(&self) -> provider::Result {
        if let Some(failure) = self.recent_failure() {
            return Err(CredentialsError::provider_error(failure));
        }
        let started = Instant::now();
        let result = self.inner.provide_credentials().await;
        let elapsed = started.elapsed();
        match result {
            Ok(credentials) => {
                self.metrics
                    .observe_call(Api::AssumeRole, super::metrics::Outcome::Ok, elapsed);
                tracing::info!(
                    role = %self.role,
                    expiry = ?credentials.expiry(),
                    "assumed role"
                );
                Ok(credentials)
            }
            Err(error) => {
                let cause = match find_in_chain::<SdkError<AssumeRoleError, HttpResponse>>(&error) {
                    Some(sdk_error) => classify(sdk_error, "NoSuchEntity"),
                    None => CallError::Failed(error_chain(&error)),
                };
                self.metrics
                    .observe_call(Api::AssumeRole, cause.outcome(), elapsed);
                let failure = AssumeRoleFailure {
                    role: Arc::clone(&self.role),
                    external_id: self.external_id,
                    cause,
                };
                tracing::warn!(?elapsed, error = %failure, "AWS call failed");
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), failure.clone()));
                Err(CredentialsError::provider_error(failure))
            }
        }
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

//! Which credentials a call about an account is made with: ecr-guard's own, or
//! those of the role configured for the account (see `roles`), and the ECR
//! and KMS clients built on them.
//!
//! [`Aws::clients_for`] is the one entry point: "the clients for account X in
//! region R". ecr-guard's own account is learnt once (`sts:GetCallerIdentity`),
//! and only when a role is configured. Each role gets one client set, whose
//! clients share one credentials cache, so a role is assumed once per session
//! (about an hour) for all of its repositories and keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::identity::IdentityCache;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ecr::config::Region;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::assume_role::AssumedRole;
use super::aws::Aws;
use super::call_error::CallError;
use super::credentials::Reused;
use super::metrics::Api;
use super::roles::AssumeRoles;
use crate::policy::facts::LookupFailure;

/// Regions whose clients are kept per client set. Region names come from image
/// hosts, so a flood of made-up regions must not grow the map without bound;
/// past this, a client is built per call (slower, still correct).
const MAX_CACHED_REGIONS: usize = 64;

/// Roles whose client sets (and credentials) are kept. Accounts come from image
/// hosts too: past this, a role's clients are built per call, and so assume
/// the role per call.
const MAX_CACHED_ROLES: usize = 64;

/// ECR and KMS clients for one region, built from the same SDK configuration
/// (so they share the HTTP connection pool and the credentials cache).
#[derive(Clone, Debug)]
pub(crate) struct RegionClients {
    pub(crate) ecr: aws_sdk_ecr::Client,
    pub(crate) kms: aws_sdk_kms::Client,
}

/// Per-region clients built lazily from one SDK configuration (one set of
/// credentials).
#[derive(Debug)]
pub(crate) struct ClientSet {
    sdk: SdkConfig,
    regions: Mutex<HashMap<String, RegionClients>>,
}

impl ClientSet {
    pub(crate) fn new(sdk: SdkConfig) -> Self {
        Self {
            sdk,
            regions: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn sdk(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The clients of `region`, built on first use.
    pub(crate) fn clients(&self, region: &str) -> RegionClients {
        let mut regions = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(clients) = regions.get(region) {
            return clients.clone();
        }
        let region_name = Region::new(region.to_owned());
        let clients = RegionClients {
            ecr: aws_sdk_ecr::Client::from_conf(
                aws_sdk_ecr::config::Builder::from(&self.sdk)
                    .region(region_name.clone())
                    .build(),
            ),
            kms: aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::config::Builder::from(&self.sdk)
                    .region(region_name)
                    .build(),
            ),
        };
        if regions.len() < MAX_CACHED_REGIONS {
            regions.insert(region.to_owned(), clients.clone());
        }
        clients
    }
}

/// The roles to assume, ecr-guard's own account once learnt, and a client set
/// per assumed role.
#[derive(Debug)]
pub(crate) struct Accounts {
    roles: AssumeRoles,
    negative_ttl: Duration,
    /// ecr-guard's own credentials, reused until they near expiry, to sign
    /// `AssumeRole` calls.
    base: SharedCredentialsProvider,
    own: OnceCell<Arc<str>>,
    assumed: Mutex<HashMap<String, Arc<ClientSet>>>,
}

impl Accounts {
    /// `sdk` is ecr-guard's own configuration (its credentials sign the
    /// `AssumeRole` calls); `negative_ttl` bounds how long a failed
    /// `AssumeRole` is remembered.
    pub(crate) fn new(roles: AssumeRoles, sdk: &SdkConfig, negative_ttl: Duration) -> Self {
        let base = match sdk.credentials_provider() {
            Some(provider) => SharedCredentialsProvider::new(Reused::new(provider)),
            // No credentials at all: AssumeRole fails the way every call does.
            None => SharedCredentialsProvider::new(Reused::none()),
        };
        Self {
            roles,
            negative_ttl,
            base,
            own: OnceCell::new(),
            assumed: Mutex::new(HashMap::new()),
        }
    }
}

impl Aws {
    /// The ECR and KMS clients for calls about `account` (a repository's
    /// registry, a key's owner) in `region`: with the credentials of the role
    /// configured for that account, or with ecr-guard's own when none is (or
    /// the account is ecr-guard's own). Cheap once built; the first call for a
    /// role makes no AWS call either (the role is assumed by the first request
    /// its clients send).
    ///
    /// Errors: when roles are configured and ecr-guard's own account is not
    /// known yet and cannot be learnt by `deadline`.
    pub(crate) async fn clients_for(
        &self,
        account: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<RegionClients, LookupFailure> {
        let accounts = &self.accounts;
        if accounts.roles.is_empty() {
            return Ok(self.clients(region));
        }
        let own = self.own_account(deadline).await?;
        match accounts.roles.role_for(account, &own) {
            None => Ok(self.clients(region)),
            Some(role) => Ok(self.role_clients(&role).await.clients(region)),
        }
    }

    /// ecr-guard's own account id, from `sts:GetCallerIdentity` on first use
    /// (`Registry::from_env` asks at start when roles are configured).
    pub(crate) async fn own_account(&self, deadline: Instant) -> Result<Arc<str>, LookupFailure> {
        let own = self
            .accounts
            .own
            .get_or_try_init(|| self.caller_identity(deadline))
            .await?;
        Ok(Arc::clone(own))
    }

    async fn caller_identity(&self, deadline: Instant) -> Result<Arc<str>, LookupFailure> {
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(self.own.sdk()).build(),
        );
        let answer = self
            .call(Api::GetCallerIdentity, deadline, "", |timeouts| {
                sts.get_caller_identity()
                    .customize()
                    .config_override(
                        aws_sdk_sts::config::Builder::default().timeout_config(timeouts),
                    )
                    .send()
            })
            .await;
        let describe = |e: CallError| match e.into_failure() {
            LookupFailure::Aws(m) => LookupFailure::Aws(format!(
                "could not learn ecr-guard's own account (sts:GetCallerIdentity): {m}"
            )),
            other => other,
        };
        let output = answer.map_err(describe)?;
        match output.account() {
            Some(account) if super::roles::is_account_id(account) => {
                tracing::info!(account, "learnt ecr-guard's own AWS account");
                Ok(account.into())
            }
            other => Err(LookupFailure::Unrecognised(format!(
                "STS answered GetCallerIdentity with account {other:?}, not a 12-digit account id"
            ))),
        }
    }

    /// The client set of `role`, built once (kept for up to
    /// [`MAX_CACHED_ROLES`] roles).
    async fn role_clients(&self, role: &str) -> Arc<ClientSet> {
        let accounts = &self.accounts;
        let known = accounts
            .assumed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(role)
            .cloned();
        if let Some(set) = known {
            return set;
        }
        let sdk = self.own.sdk();
        let provider = AssumedRole::new(
            role,
            accounts.roles.external_id.as_deref(),
            sdk,
            accounts.base.clone(),
            self.metrics.clone(),
            accounts.negative_ttl,
        )
        .await;
        let set = Arc::new(ClientSet::new(
            sdk.to_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                // This role's credentials, shared by its ECR and KMS clients of
                // every region, refreshed before they expire.
                .identity_cache(IdentityCache::lazy().build())
                .build(),
        ));
        let mut assumed = accounts
            .assumed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two first lookups may both have built a set: the first one stored
        // wins, and the other's provider is dropped before it made any call.
        if let Some(winner) = assumed.get(role) {
            return Arc::clone(winner);
        }
        if assumed.len() < MAX_CACHED_ROLES {
            assumed.insert(role.to_owned(), Arc::clone(&set));
        }
        set
    }
}

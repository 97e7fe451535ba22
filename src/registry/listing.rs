//! Whole registries, for `ecr-guard scan`: every repository of a registry
//! (`DescribeRepositories` without names, all pages), each distinct key
//! described once (through the key cache, so concurrent asks coalesce), and
//! the pull-through cache rules with the repository each would create.
//!
//! Unlike admission lookups, these are not bounded by a review's deadline:
//! each AWS call gets the registry's `lookup_timeout` (retries included).

use std::sync::Arc;

use tokio::time::Instant;

use super::aws::{Aws, KmsKey, RepositoryRecord, record_of};
use super::metrics::Api;
use super::pull_through::{RULES_PERMISSION, failure};
use super::{Registry, RegistryKey, unnamed_key};
use crate::image::EcrRepository;
use crate::policy::facts::{
    EncryptionType, KeyLookup, Lookup, LookupFailure, PullThroughCause, RepositoryLookup,
};

/// The largest page `DescribeRepositories` accepts (`maxResults`, 1..=1000).
pub const REPOSITORIES_PAGE_SIZE: i32 = 1000;
/// Most pages read of one listing: 10 million repositories, far past ECR's
/// per-registry quota, so more means a `nextToken` that never ends.
const MAX_PAGES: usize = 10_000;

/// One repository as `DescribeRepositories` listed it, before its key is described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedRepository {
    /// `repositoryName`, e.g. `team/app`.
    pub name: String,
    /// `encryptionConfiguration.encryptionType`; `Err` holds, verbatim, a type
    /// this version of ecr-guard does not know (the repository cannot be
    /// judged, its key is then [`ListedKey::None`]).
    pub encryption_type: Result<EncryptionType, String>,
    pub key: ListedKey,
}

/// The key ECR named for a listed repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListedKey {
    /// AES256: no KMS key.
    None,
    /// The `kmsKey` ARN ECR reported (shared by every repository naming it).
    Arn(Arc<str>),
    /// KMS or KMS_DSSE without a `kmsKey` (the AWS-managed `aws/ecr` key;
    /// moto leaves it out for KMS_DSSE).
    Unnamed,
}

/// A pull-through cache rule of a registry (`DescribePullThroughCacheRules`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullThroughRule {
    /// `ecrRepositoryPrefix`, e.g. `docker-hub`.
    pub prefix: String,
    /// `upstreamRegistryUrl`.
    pub upstream: String,
}

impl Registry {
    /// ecr-guard's own AWS account id (`sts:GetCallerIdentity`, asked once).
    ///
    /// Errors: STS did not answer within the lookup timeout, or refused.
    pub async fn own_account(&self) -> Result<String, LookupFailure> {
        let account = self.inner.aws.own_account(self.call_deadline()).await?;
        Ok(account.to_string())
    }

    /// The region of ecr-guard's AWS configuration (`AWS_REGION`, the
    /// profile…), if it has one.
    pub fn default_region(&self) -> Option<String> {
        self.inner
            .aws
            .own
            .sdk()
            .region()
            .map(|r| r.as_ref().to_owned())
    }

    /// Every repository of `account`'s registry in `region`, in ECR's order:
    /// `DescribeRepositories` with `registryId` and `maxResults` 1000, page
    /// after page; `on_page` is told how many each page held. Calls about
    /// another account use its role, if one is configured.
    ///
    /// A repository whose encryption type this version does not know is
    /// listed with that type verbatim (`Err`), not an error of the listing.
    ///
    /// Errors: the first page that failed after the SDK's retries (denied,
    /// throttled, …).
    pub async fn list_repositories(
        &self,
        account: &str,
        region: &str,
        mut on_page: impl FnMut(usize),
    ) -> Result<Vec<ListedRepository>, LookupFailure> {
        let aws = &self.inner.aws;
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = aws
                .repositories_page(account, region, token.take(), self.call_deadline())
                .await?;
            on_page(page.repositories().len());
            for repository in page.repositories() {
                let Some(name) = repository.repository_name() else {
                    continue;
                };
                // One repository of an unknown type is unjudged, not its registry.
                if let Some(reported) = repository
                    .encryption_configuration()
                    .map(|c| c.encryption_type().as_str())
                    .filter(|t| EncryptionType::from_aws(t).is_none())
                {
                    listed.push(ListedRepository {
                        name: name.to_owned(),
                        encryption_type: Err(reported.to_owned()),
                        key: ListedKey::None,
                    });
                    continue;
                }
                let RepositoryRecord::Found {
                    encryption_type,
                    kms_key,
                } = record_of(repository)?
                else {
                    continue;
                };
                let key = match kms_key {
                    KmsKey::None => ListedKey::None,
                    KmsKey::Unnamed => ListedKey::Unnamed,
                    KmsKey::Arn(arn) => ListedKey::Arn(self.known_arn(&arn).unwrap_or(arn)),
                };
                listed.push(ListedRepository {
                    name: name.to_owned(),
                    encryption_type: Ok(encryption_type),
                    key,
                });
            }
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(listed);
            }
        }
        Err(LookupFailure::Unrecognised(format!(
            "DescribeRepositories answered more than {MAX_PAGES} pages"
        )))
    }

    /// What KMS says of the key `arn` (`DescribeKey`, and for a
    /// customer-managed key `GetKeyRotationStatus`), through the key cache:
    /// each key is described once however many repositories ask.
    ///
    /// Errors: transient failures (throttled past the retries, timeout, 5xx);
    /// definite refusals are a [`KeyLookup::Unknown`].
    pub async fn describe_key(&self, arn: Arc<str>) -> Result<KeyLookup, LookupFailure> {
        let deadline = self.call_deadline();
        self.key(arn, deadline, deadline).await
    }

    /// What is known of the key of a KMS repository whose key ECR did not name.
    pub fn unnamed_key() -> KeyLookup {
        unnamed_key()
    }

    /// The pull-through cache rules of `account`'s registry in `region`
    /// (`DescribePullThroughCacheRules`, all pages, through the rules cache).
    ///
    /// Errors: the listing failed (a [`LookupFailure::PullThrough`] naming
    /// `ecr:DescribePullThroughCacheRules`).
    pub async fn pull_through_rules_of(
        &self,
        account: &str,
        region: &str,
    ) -> Result<Vec<PullThroughRule>, LookupFailure> {
        let repo = EcrRepository {
            account: account.to_owned(),
            region: region.to_owned(),
            name: String::new(),
        };
        let deadline = self.call_deadline();
        let rules = self
            .inner
            .rules
            .get(&RegistryKey::new(&repo), deadline, deadline, || {
                let aws = Arc::clone(&self.inner.aws);
                let (account, region) = (account.to_owned(), region.to_owned());
                async move {
                    aws.describe_pull_through_cache_rules(&account, &region, deadline)
                        .await
                }
            })
            .await
            .map_err(|f| failure(RULES_PERMISSION, &repo, PullThroughCause::Call(f)))?;
        Ok(rules
            .0
            .iter()
            .map(|rule| PullThroughRule {
                prefix: rule.prefix.clone(),
                upstream: rule.upstream.clone(),
            })
            .collect())
    }

    /// The repository `repo` would be if a pull-through cache rule created it
    /// now: its rule, the creation template that applies
    /// (`DescribeRepositoryCreationTemplates`) and that template's key,
    /// described like any repository's. `NotFound` when no rule covers it.
    /// `DescribeRepositories` is not asked: the caller knows it does not exist.
    pub async fn planned_repository(&self, repo: &EcrRepository) -> Lookup {
        let deadline = self.call_deadline();
        match self.plan(repo, deadline, deadline).await? {
            RepositoryLookup::Found(_) => Ok(RepositoryLookup::NotFound),
            other => Ok(other),
        }
    }

    /// When a call started now must be answered: the lookup timeout, plus as
    /// long again to wait for a slot under the concurrency cap.
    fn call_deadline(&self) -> Instant {
        Instant::now() + self.inner.config.lookup_timeout * 2
    }
}

impl Aws {
    /// One page of `DescribeRepositories` for `account`'s registry in `region`.
    async fn repositories_page(
        &self,
        account: &str,
        region: &str,
        token: Option<String>,
        deadline: Instant,
    ) -> Result<
        aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesOutput,
        LookupFailure,
    > {
        let ecr = self.clients_for(account, region, deadline).await?.ecr;
        self.call(
            Api::DescribeRepositories,
            deadline,
            "RepositoryNotFoundException",
            |timeouts| {
                ecr.describe_repositories()
                    .registry_id(account)
                    .max_results(REPOSITORIES_PAGE_SIZE)
                    .set_next_token(token)
                    .customize()
                    .config_override(
                        aws_sdk_ecr::config::Builder::default().timeout_config(timeouts),
                    )
                    .send()
            },
        )
        .await
        .map_err(|e| e.into_failure())
    }
}

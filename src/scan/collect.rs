//! What AWS says of the scanned registries: every repository
//! (`DescribeRepositories`), each distinct key once (`DescribeKey`,
//! `GetKeyRotationStatus`), the pull-through cache rules
//! (`DescribePullThroughCacheRules`) and the repository each would create
//! (`DescribeRepositoryCreationTemplates`). Registries are read concurrently;
//! the registry's call cap (`--concurrency`) bounds the AWS calls in flight.
//! A registry that cannot be read is an error of the scan, not of the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;

use super::progress::Progress;
use super::report::{RegistryId, ScanError};
use crate::image::EcrRepository;
use crate::policy::facts::{
    KeyLookup, Lookup, LookupFailure, PullThroughFailure, RepositoryFacts, RepositoryLookup,
};
use crate::registry::{ListedKey, ListedRepository, PullThroughRule, Registry};

/// The name judged for a pull-through cache rule: a repository directly under
/// its prefix (`PREFIX/image`), so the template is the one for the prefix
/// itself (a template for a deeper prefix applies only below it).
pub const RULE_PROBE: &str = "image";

/// Everything read from AWS.
#[derive(Debug, Default)]
pub struct Collected {
    /// Per registry that could be listed, its repositories in ECR's order.
    pub repositories: BTreeMap<RegistryId, Vec<ListedRepository>>,
    /// What KMS said of each distinct key ARN named by a repository.
    pub keys: HashMap<Arc<str>, Result<KeyLookup, LookupFailure>>,
    /// Per registry, each pull-through cache rule and what it would create.
    pub rules: BTreeMap<RegistryId, Vec<(PullThroughRule, Lookup)>>,
    pub errors: Vec<ScanError>,
}

impl Collected {
    /// The facts of one listed repository, as a lookup would give them.
    /// An encryption type this version does not know is a failed lookup
    /// (`unrecognised answer`), judged as the policies judge one.
    pub fn facts(&self, repository: &ListedRepository) -> Lookup {
        let encryption_type = match &repository.encryption_type {
            Ok(known) => *known,
            Err(reported) => {
                return Err(LookupFailure::Unrecognised(unknown_type(reported)));
            }
        };
        let kms_key = match &repository.key {
            ListedKey::None => None,
            ListedKey::Unnamed => Some(Registry::unnamed_key()),
            ListedKey::Arn(arn) => match self.keys.get(arn) {
                Some(Ok(key)) => Some(key.clone()),
                Some(Err(failure)) => return Err(failure.clone()),
                None => {
                    return Err(LookupFailure::Aws(format!("key {arn} was not described")));
                }
            },
        };
        Ok(RepositoryLookup::Found(RepositoryFacts {
            encryption_type,
            kms_key,
        }))
    }
}

/// Reads every registry of `registries`, `concurrency` of them at a time.
pub async fn collect(
    registry: &Registry,
    registries: &[RegistryId],
    concurrency: usize,
    progress: &Progress,
) -> Collected {
    let mut collected = Collected::default();
    let listings = futures::stream::iter(registries.iter().cloned())
        .map(|id| async move {
            progress.listing(&id);
            let listed = registry
                .list_repositories(&id.account, &id.region, |n| progress.listed(n))
                .await;
            let rules = pull_through(registry, &id).await;
            (id, listed, rules)
        })
        .buffer_unordered(concurrency.max(1));
    let listings: Vec<_> = listings.collect().await;
    for (id, listed, rules) in listings {
        match listed {
            Ok(repositories) => {
                collected
                    .errors
                    .extend(repositories.iter().filter_map(|r| unjudged_error(&id, r)));
                collected.repositories.insert(id.clone(), repositories);
            }
            Err(failure) => collected.errors.push(listing_error(&id, &failure)),
        }
        let (rules, errors) = rules;
        collected.errors.extend(errors);
        if !rules.is_empty() {
            collected.rules.insert(id, rules);
        }
    }

    let arns: BTreeSet<Arc<str>> = collected
        .repositories
        .values()
        .flatten()
        .filter_map(|r| match &r.key {
            ListedKey::Arn(arn) => Some(Arc::clone(arn)),
            _ => None,
        })
        .collect();
    progress.describing(arns.len());
    let keys: Vec<_> = futures::stream::iter(arns)
        .map(|arn| async move {
            let lookup = registry.describe_key(Arc::clone(&arn)).await;
            progress.described();
            (arn, lookup)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut failed_keys = BTreeSet::new();
    for (arn, lookup) in keys {
        if let Err(failure) = &lookup {
            failed_keys.insert((arn.to_string(), failure.to_string()));
        }
        collected.keys.insert(arn, lookup);
    }
    for (arn, failure) in failed_keys {
        let (account, region) = key_registry(&arn);
        collected.errors.push(ScanError {
            account,
            region,
            api: "DescribeKey".to_owned(),
            message: format!(
                "key {arn}: {failure}; the repositories using it are judged as their policies \
                 judge a failed lookup (onLookupFailure)"
            ),
        });
    }
    collected.errors.sort_by(|a, b| {
        (&a.account, &a.region, &a.api, &a.message)
            .cmp(&(&b.account, &b.region, &b.api, &b.message))
    });
    collected.errors.dedup();
    progress.finish();
    collected
}

/// The registry's pull-through cache rules, each with the repository it would
/// create under its prefix; a rule whose template or key could not be read is
/// left out with an error.
async fn pull_through(
    registry: &Registry,
    id: &RegistryId,
) -> (Vec<(PullThroughRule, Lookup)>, Vec<ScanError>) {
    let rules = match registry
        .pull_through_rules_of(&id.account, &id.region)
        .await
    {
        Ok(rules) => rules,
        Err(failure) => return (Vec::new(), vec![pull_through_error(id, &failure)]),
    };
    let mut planned = Vec::with_capacity(rules.len());
    let mut errors = Vec::new();
    for rule in rules {
        let repo = EcrRepository {
            account: id.account.clone(),
            region: id.region.clone(),
            name: format!("{}/{RULE_PROBE}", rule.prefix),
        };
        match registry.planned_repository(&repo).await {
            Ok(lookup) => planned.push((rule, Ok(lookup))),
            Err(failure) => errors.push(pull_through_error(id, &failure)),
        }
    }
    (planned, errors)
}

fn listing_error(id: &RegistryId, failure: &LookupFailure) -> ScanError {
    ScanError {
        account: id.account.clone(),
        region: id.region.clone(),
        api: "DescribeRepositories".to_owned(),
        message: format!(
            "{failure}; its repositories are missing from the report (grant \
             ecr:DescribeRepositories on arn:aws:ecr:{}:{}:repository/*, or a role in that account)",
            id.region, id.account
        ),
    }
}

/// What is said of an encryption type this version does not know.
pub fn unknown_type(reported: &str) -> String {
    format!(
        "ECR reported encryption type {reported:?}, which this version of ecr-guard does not know"
    )
}

/// The error of a listed repository that cannot be judged: its encryption
/// type is unknown to this version.
fn unjudged_error(id: &RegistryId, repository: &ListedRepository) -> Option<ScanError> {
    let reported = repository.encryption_type.as_ref().err()?;
    Some(ScanError {
        account: id.account.clone(),
        region: id.region.clone(),
        api: "DescribeRepositories".to_owned(),
        message: format!(
            "repository {}: {}; it is reported unjudged (lookup_failed), the rest of the \
             registry is judged (upgrade ecr-guard)",
            repository.name,
            unknown_type(reported)
        ),
    })
}

fn pull_through_error(id: &RegistryId, failure: &LookupFailure) -> ScanError {
    let (api, message) = match failure {
        LookupFailure::PullThrough(f) => {
            let PullThroughFailure { permission, .. } = f.as_ref();
            (
                permission.trim_start_matches("ecr:").to_owned(),
                format!("{f}; its pull-through cache rules are missing from the report"),
            )
        }
        other => (
            "DescribePullThroughCacheRules".to_owned(),
            format!("{other}; its pull-through cache rules are missing from the report"),
        ),
    };
    ScanError {
        account: id.account.clone(),
        region: id.region.clone(),
        api,
        message,
    }
}

/// The account and region of a key ARN (empty when it is not one).
fn key_registry(arn: &str) -> (String, String) {
    match crate::policy::facts::KeyArn::parse(arn) {
        Ok(key) => (key.account().to_owned(), key.region().to_owned()),
        Err(_) => (String::new(), String::new()),
    }
}

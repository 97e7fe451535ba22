//! `ecr-guard scan`: the encryption posture of whole registries, judged by the
//! policies, with what it costs.
//!
//! - `collect`: what ECR and KMS say (every repository, each key once, the
//!   pull-through cache rules), concurrency-bounded, registry by registry.
//! - `judge`: each policy's verdict on a repository, as admission judges an
//!   image of it; `findings`: mistakes whatever the policies say;
//!   `encryption`: the report's encryption columns.
//! - `cost` and `summary`: the figures; `report`: the shape every renderer
//!   reads; `render`: the output formats; `progress`: the terminal's bar.

pub mod collect;
pub mod cost;
pub mod encryption;
pub mod findings;
pub mod judge;
pub mod progress;
pub mod render;
pub mod report;
pub mod summary;

use crate::image::EcrRepository;
use crate::policy::Policy;
use crate::policy::facts::{KeyLookup, Lookup, RepositoryLookup};
use crate::registry::{ListedKey, Registry};
use collect::{Collected, RULE_PROBE};
use encryption::KeyAnswer;
use progress::Progress;
use report::{Prices, RegistryId, ScanReport, ScannedPullThroughRule, ScannedRepository};

/// What to scan and how.
#[derive(Clone, Debug)]
pub struct ScanSettings {
    /// Every registry (account × region) to read.
    pub registries: Vec<RegistryId>,
    /// Registries read at once, and keys described at once (the AWS calls in
    /// flight are capped by the registry's own limit as well).
    pub concurrency: usize,
    pub prices: Prices,
}

/// Reads the registries and judges every repository with `policies`.
pub async fn scan(
    registry: &Registry,
    policies: &[&Policy],
    settings: &ScanSettings,
    progress: &Progress,
) -> ScanReport {
    let collected = collect::collect(
        registry,
        &settings.registries,
        settings.concurrency,
        progress,
    )
    .await;
    report(&collected, policies, settings)
}

/// The report of what was collected (pure: no AWS).
pub fn report(collected: &Collected, policies: &[&Policy], settings: &ScanSettings) -> ScanReport {
    let mut repositories = Vec::new();
    for (id, listed) in &collected.repositories {
        for repository in listed {
            let repo = EcrRepository {
                account: id.account.clone(),
                region: id.region.clone(),
                name: repository.name.clone(),
            };
            let lookup = collected.facts(repository);
            let key = key_answer(&repository.key, &lookup);
            let verdicts = judge::judge(policies, &repo, &lookup);
            let (encryption, findings) = match &repository.encryption_type {
                Ok(known) => (
                    encryption::encryption(*known, key),
                    findings::findings(*known, key, &verdicts),
                ),
                Err(reported) => (
                    encryption::unknown_type(reported),
                    vec![findings::encryption_type_unknown(reported)],
                ),
            };
            repositories.push(ScannedRepository {
                account: repo.account,
                region: repo.region,
                name: repo.name,
                encryption,
                findings,
                verdicts,
            });
        }
    }
    repositories
        .sort_by(|a, b| (&a.account, &a.region, &a.name).cmp(&(&b.account, &b.region, &b.name)));

    let mut pull_through_rules = Vec::new();
    for (id, rules) in &collected.rules {
        for (rule, lookup) in rules {
            let Ok(RepositoryLookup::ToBeCreated(plan)) = lookup else {
                continue;
            };
            let repo = EcrRepository {
                account: id.account.clone(),
                region: id.region.clone(),
                name: format!("{}/{RULE_PROBE}", rule.prefix),
            };
            let verdicts = judge::judge(policies, &repo, lookup);
            let key = match &plan.facts.kms_key {
                None => KeyAnswer::None,
                Some(key) => KeyAnswer::Described(key),
            };
            let mut findings = findings::findings(plan.facts.encryption_type, key, &verdicts);
            findings.extend(findings::template_non_compliant(
                &rule.prefix,
                plan.template.as_deref(),
                &verdicts,
            ));
            pull_through_rules.push(ScannedPullThroughRule {
                account: id.account.clone(),
                region: id.region.clone(),
                prefix: rule.prefix.clone(),
                upstream: rule.upstream.clone(),
                template: plan.template.clone(),
                encryption: encryption::encryption(plan.facts.encryption_type, key),
                findings,
                verdicts,
            });
        }
    }
    pull_through_rules.sort_by(|a, b| {
        (&a.account, &a.region, &a.prefix).cmp(&(&b.account, &b.region, &b.prefix))
    });

    ScanReport {
        summary: summary::summary(&repositories, settings.registries.len()),
        cost: cost::cost(&repositories, settings.prices.clone()),
        repositories,
        pull_through_rules,
        errors: collected.errors.clone(),
    }
}

/// What is known of a listed repository's key, given its lookup.
fn key_answer<'a>(key: &'a ListedKey, lookup: &'a Lookup) -> KeyAnswer<'a> {
    let described = |lookup: &'a Lookup| -> Option<&'a KeyLookup> {
        match lookup {
            Ok(RepositoryLookup::Found(facts)) => facts.kms_key.as_ref(),
            _ => None,
        }
    };
    match key {
        ListedKey::None => KeyAnswer::None,
        ListedKey::Unnamed | ListedKey::Arn(_) => match (described(lookup), key) {
            (Some(key), _) => KeyAnswer::Described(key),
            (None, ListedKey::Arn(arn)) => KeyAnswer::Failed { arn },
            (None, _) => KeyAnswer::None,
        },
    }
}

/// `scan`'s exit code, as `check`'s: 2 when AWS errors left something
/// unjudged, else 1 when an Enforce policy refuses a repository, else 0.
pub fn exit_code(report: &ScanReport) -> i32 {
    if !report.errors.is_empty() {
        2
    } else if report.summary.enforced_violations > 0 {
        1
    } else {
        0
    }
}

//! Runs the pure evaluation with the facts it needs, fetched within the deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::image::EcrRepository;
use crate::policy::{self, Options, Policy, Subject, Verdict};
use crate::registry::facts::{Lookup, LookupFailure};

/// Where repository facts come from (the cached AWS registry in production).
pub trait FactSource: Send + Sync {
    /// Facts for each repository, every answer in by `deadline`.
    fn lookup_all(
        &self,
        repositories: BTreeSet<EcrRepository>,
        deadline: Instant,
    ) -> BoxFuture<'_, HashMap<EcrRepository, Lookup>>;
}

/// A source with no AWS behind it: every lookup fails. For runs where no policy
/// needs facts, and for tests of everything before the lookup.
pub struct NoFacts;

impl FactSource for NoFacts {
    fn lookup_all(
        &self,
        repositories: BTreeSet<EcrRepository>,
        _deadline: Instant,
    ) -> BoxFuture<'_, HashMap<EcrRepository, Lookup>> {
        let answers = repositories
            .into_iter()
            .map(|r| (r, Err(LookupFailure::Aws("no AWS access configured".into()))))
            .collect();
        Box::pin(async move { answers })
    }
}

/// Evaluation with its facts: the part `serve` and `check` share.
pub struct Judge<F> {
    facts: F,
    options: Options,
    lookup_timeout: Duration,
}

impl<F: FactSource> Judge<F> {
    pub fn new(facts: F, options: Options, lookup_timeout: Duration) -> Self {
        Self {
            facts,
            options,
            lookup_timeout,
        }
    }

    pub fn options(&self) -> Options {
        self.options
    }

    /// Judges these images in a namespace with these labels.
    pub async fn judge(
        &self,
        policies: &[Policy],
        namespace_labels: &BTreeMap<String, String>,
        subjects: &[Subject],
    ) -> Verdict {
        let applicable = policy::applicable(policies, namespace_labels);
        if applicable.is_empty() || subjects.is_empty() {
            return Verdict::default();
        }
        let repositories = policy::repositories_to_look_up(&applicable, subjects);
        let facts = if repositories.is_empty() {
            HashMap::new()
        } else {
            let deadline = Instant::now() + self.lookup_timeout;
            self.facts.lookup_all(repositories, deadline).await
        };
        policy::evaluate(&applicable, subjects, &facts, self.options)
    }
}

//! Judging: the pure evaluation of `policy`, given the facts it needs, fetched
//! within the deadline. The layer `admission` (the webhook) and `check` (the
//! CLI) share; `registry` supplies the facts by implementing [`FactSource`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::image::EcrRepository;
use crate::policy::facts::{Lookup, LookupFailure};
use crate::policy::{self, ImageUse, Options, Policy, Verdict};

/// Where repository facts come from (the cached AWS registry in production).
pub trait FactSource: Send + Sync {
    /// Facts for each repository, every answer in by `deadline`.
    fn lookup_all(
        &self,
        repositories: BTreeSet<EcrRepository>,
        deadline: Instant,
    ) -> BoxFuture<'_, HashMap<EcrRepository, Lookup>>;
}

/// A source with no AWS behind it: every lookup fails with the same reason.
pub struct NoFacts {
    reason: String,
}

impl NoFacts {
    pub fn failing(reason: &str) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

impl FactSource for NoFacts {
    fn lookup_all(
        &self,
        repositories: BTreeSet<EcrRepository>,
        _deadline: Instant,
    ) -> BoxFuture<'_, HashMap<EcrRepository, Lookup>> {
        let answers = repositories
            .into_iter()
            .map(|r| (r, Err(LookupFailure::Aws(self.reason.clone()))))
            .collect();
        Box::pin(async move { answers })
    }
}

tokio::task_local! {
    /// The caller's own deadline for the review being judged: when the webhook's
    /// client (the API server) gives up, less a safety margin. Request-scoped, like
    /// the deadline of the API server's Go context it mirrors, so it reaches the
    /// judge without every layer in between passing it along.
    static CALLER_DEADLINE: Instant;
}

/// Runs `review` with `deadline` as its caller's deadline: every [`Judge::judge`]
/// inside it finishes its AWS lookups by the earlier of `deadline` and its own
/// lookup timeout.
pub async fn within_deadline<F: Future>(deadline: Instant, review: F) -> F::Output {
    CALLER_DEADLINE.scope(deadline, review).await
}

/// Evaluation with its facts: the part `serve` and `check` share.
pub struct Judge {
    facts: Arc<dyn FactSource>,
    options: Options,
    lookup_timeout: Duration,
}

impl Judge {
    pub fn new(facts: Arc<dyn FactSource>, options: Options, lookup_timeout: Duration) -> Self {
        Self {
            facts,
            options,
            lookup_timeout,
        }
    }

    pub fn options(&self) -> Options {
        self.options
    }

    /// Judges these images in a namespace with these labels. AWS lookups end by
    /// the lookup timeout from now, or the caller's deadline if that is earlier
    /// (see [`within_deadline`]).
    pub async fn decide(
        &self,
        policies: &[Policy],
        namespace_labels: &BTreeMap<String, String>,
        image_uses: &[ImageUse],
    ) -> Verdict {
        let applicable = policy::applicable(policies, namespace_labels);
        if applicable.is_empty() || image_uses.is_empty() {
            return Verdict::default();
        }
        let repositories = policy::repositories_to_look_up(&applicable, image_uses);
        let facts = if repositories.is_empty() {
            HashMap::new()
        } else {
            let own = Instant::now() + self.lookup_timeout;
            let deadline = CALLER_DEADLINE
                .try_with(|caller| own.min(*caller))
                .unwrap_or(own);
            self.facts.lookup_all(repositories, deadline).await
        };
        policy::evaluate(&applicable, image_uses, &facts, self.options)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::policy::{EcrEncryptionPolicySpec, Slot};

    /// Records the deadline each lookup was given; answers nothing.
    #[derive(Default)]
    struct Deadlines(Mutex<Vec<Instant>>);

    impl FactSource for Deadlines {
        fn lookup_all(
            &self,
            _repositories: BTreeSet<EcrRepository>,
            deadline: Instant,
        ) -> BoxFuture<'_, HashMap<EcrRepository, Lookup>> {
            self.0.lock().unwrap().push(deadline);
            Box::pin(async { HashMap::new() })
        }
    }

    async fn deadline_given(judge: &Judge, facts: &Deadlines) -> Instant {
        let spec: EcrEncryptionPolicySpec =
            serde_saphyr::from_str("rules: {allowedEncryptionTypes: [KMS]}").unwrap();
        let policies = [Policy::compile("p", &spec)];
        let image_uses = [ImageUse::new(
            Slot::Container,
            "app",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1",
        )];
        judge.decide(&policies, &BTreeMap::new(), &image_uses).await;
        facts.0.lock().unwrap().pop().expect("a lookup")
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_end_by_the_callers_deadline_when_it_comes_first() {
        let facts = Arc::new(Deadlines::default());
        let judge = Judge::new(facts.clone(), Options::default(), Duration::from_secs(3));
        let now = Instant::now();
        assert_eq!(
            deadline_given(&judge, &facts).await,
            now + Duration::from_secs(3)
        );
        let sooner = now + Duration::from_secs(1);
        let given = within_deadline(sooner, deadline_given(&judge, &facts)).await;
        assert_eq!(given, sooner);
        // A caller with more time than the lookup timeout does not extend it.
        let later = now + Duration::from_secs(60);
        let given = within_deadline(later, deadline_given(&judge, &facts)).await;
        assert_eq!(given, now + Duration::from_secs(3));
    }
}

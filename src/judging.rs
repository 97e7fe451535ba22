//! Judging: the pure evaluation of `policy`, given the facts it needs, fetched
//! within the deadline. The layer `admission` (the webhook) and `check` (the
//! CLI) share; `registry` supplies the facts by implementing [`FactSource`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
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

/// A [`FactSource`] with fixed answers and no AWS behind it, for tests, the
/// fuzz targets and anything else that must judge without I/O. A repository in
/// its table gets its entry; any other gets the answer of its fallback (one
/// fixed [`Lookup`], or a rule of the repository). Answers at once, whatever
/// the deadline.
///
/// Built with [`FixedFacts::failing`], [`FixedFacts::answering`] or
/// [`FixedFacts::by_rule`], then [`FixedFacts::with`] per table entry. With
/// [`FixedFacts::recording`] it also keeps every call (the repositories asked
/// for and the deadline given), read back by [`FixedFacts::asked`].
pub struct FixedFacts {
    table: HashMap<EcrRepository, Lookup>,
    fallback: Box<dyn Fn(&EcrRepository) -> Lookup + Send + Sync>,
    /// `None` unless recording: a fuzz target calls millions of times.
    asked: Option<Mutex<Vec<Asked>>>,
}

/// One call of [`FactSource::lookup_all`] on a recording [`FixedFacts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub repositories: BTreeSet<EcrRepository>,
    pub deadline: Instant,
}

impl FixedFacts {
    /// Every repository not in the table gets `lookup`.
    pub fn answering(lookup: Lookup) -> Self {
        Self::by_rule(move |_| lookup.clone())
    }

    /// Every repository not in the table fails to be looked up, with
    /// `LookupFailure::Aws(reason)`.
    pub fn failing(reason: &str) -> Self {
        Self::answering(Err(LookupFailure::Aws(reason.to_string())))
    }

    /// Every repository not in the table gets what `rule` says of it.
    pub fn by_rule(rule: impl Fn(&EcrRepository) -> Lookup + Send + Sync + 'static) -> Self {
        Self {
            table: HashMap::new(),
            fallback: Box::new(rule),
            asked: None,
        }
    }

    /// `repository` gets `lookup`.
    pub fn with(mut self, repository: EcrRepository, lookup: Lookup) -> Self {
        self.table.insert(repository, lookup);
        self
    }

    /// Keeps every call from now on, for [`FixedFacts::asked`].
    pub fn recording(mut self) -> Self {
        self.asked = Some(Mutex::default());
        self
    }

    /// The calls so far, oldest first; empty unless [`FixedFacts::recording`].
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.as_ref().map_or_else(Vec::new, |asked| {
            // A poisoned lock only means a caller panicked; the list is intact.
            asked.lock().unwrap_or_else(PoisonError::into_inner).clone()
        })
    }

    /// The answer for one repository.
    pub fn lookup(&self, repository: &EcrRepository) -> Lookup {
        match self.table.get(repository) {
            Some(lookup) => lookup.clone(),
            None => (self.fallback)(repository),
        }
    }
}

impl FactSource for FixedFacts {
    fn lookup_all(
        &self,
        repositories: BTreeSet<EcrRepository>,
        deadline: Instant,
    ) -> BoxFuture<'_, HashMap<EcrRepository, Lookup>> {
        if let Some(asked) = &self.asked {
            asked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Asked {
                    repositories: repositories.clone(),
                    deadline,
                });
        }
        let answers = repositories
            .into_iter()
            .map(|r| {
                let lookup = self.lookup(&r);
                (r, lookup)
            })
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

/// Runs `review` with `deadline` as its caller's deadline: every [`Judge::decide`]
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
        self.decide_with_facts(policies, namespace_labels, image_uses)
            .await
            .0
    }

    /// [`Judge::decide`], also returning the facts it was given (one entry per
    /// repository some applicable policy needed): the audit reports them.
    pub async fn decide_with_facts(
        &self,
        policies: &[Policy],
        namespace_labels: &BTreeMap<String, String>,
        image_uses: &[ImageUse],
    ) -> (Verdict, HashMap<EcrRepository, Lookup>) {
        let applicable = policy::applicable(policies, namespace_labels);
        if applicable.is_empty() || image_uses.is_empty() {
            return (Verdict::default(), HashMap::new());
        }
        let repositories = policy::repositories_to_look_up(&applicable, image_uses);
        let facts = self.look_up(repositories).await;
        let verdict = policy::evaluate(&applicable, image_uses, &facts, self.options);
        (verdict, facts)
    }

    /// The facts of these repositories, whatever the policies say: the audit
    /// warns of an unusable key behind any running Pod, judged by a policy or
    /// not. Lookups end by the same deadline as [`Judge::decide`]'s.
    pub async fn look_up(
        &self,
        repositories: BTreeSet<EcrRepository>,
    ) -> HashMap<EcrRepository, Lookup> {
        if repositories.is_empty() {
            return HashMap::new();
        }
        let own = Instant::now() + self.lookup_timeout;
        let deadline = CALLER_DEADLINE
            .try_with(|caller| own.min(*caller))
            .unwrap_or(own);
        self.facts.lookup_all(repositories, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::facts::RepositoryLookup;
    use crate::policy::{EcrEncryptionPolicySpec, Slot};

    async fn deadline_given(judge: &Judge, facts: &FixedFacts) -> Instant {
        let spec: EcrEncryptionPolicySpec =
            serde_saphyr::from_str("rules: {allowedEncryptionTypes: [KMS]}").unwrap();
        let policies = [Policy::compile("p", &spec)];
        let image_uses = [ImageUse::new(
            Slot::Container,
            "app",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1",
        )];
        judge.decide(&policies, &BTreeMap::new(), &image_uses).await;
        facts.asked().pop().expect("a lookup").deadline
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_end_by_the_callers_deadline_when_it_comes_first() {
        let facts = Arc::new(FixedFacts::failing("answers are not looked at").recording());
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

    #[tokio::test]
    async fn fixed_facts_answer_from_the_table_then_the_fallback_and_record_only_when_asked() {
        let repo = |name: &str| EcrRepository {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            name: name.into(),
        };
        let facts = FixedFacts::failing("down").with(repo("gone"), Ok(RepositoryLookup::NotFound));
        let deadline = Instant::now();
        let answers = facts
            .lookup_all(BTreeSet::from([repo("gone"), repo("other")]), deadline)
            .await;
        assert_eq!(answers[&repo("gone")], Ok(RepositoryLookup::NotFound));
        assert_eq!(
            answers[&repo("other")],
            Err(LookupFailure::Aws("down".into()))
        );
        assert!(facts.asked().is_empty());

        let facts = facts.recording();
        facts
            .lookup_all(BTreeSet::from([repo("gone")]), deadline)
            .await;
        assert_eq!(
            facts.asked(),
            [Asked {
                repositories: BTreeSet::from([repo("gone")]),
                deadline
            }]
        );
    }
}

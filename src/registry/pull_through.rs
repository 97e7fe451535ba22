//! Pull-through cache repositories before their first pull: which rule covers a
//! repository name, which repository creation template ECR will create it with,
//! and the two calls that list them.
//!
//! Facts (ECR API reference and User Guide, "Pull through cache rules" and
//! "Repository creation templates"):
//! - `DescribePullThroughCacheRules` (`registryId`, paginated by `nextToken`,
//!   `maxResults` ≤ 1000) lists a registry's rules; a repository whose name is a
//!   rule's `ecrRepositoryPrefix` followed by `/` is created on the first pull
//!   through that rule.
//! - `DescribeRepositoryCreationTemplates` (paginated the same way) takes no
//!   `registryId`: it reads the caller's own registry, and says which
//!   (`registryId` in the answer). A template's `prefix` matches whole path
//!   segments (`prod` covers `prod/app`, not `production/app`); `ROOT` applies
//!   to every repository no other template matches. The most specific template
//!   whose `appliedFor` includes `PULL_THROUGH_CACHE` applies, else `ROOT` if it
//!   does, else ECR's default: AES256. `KMS` without `kmsKey` is the AWS-managed
//!   `aws/ecr` key.

use std::sync::Arc;

use aws_sdk_ecr::types::{RctAppliedFor, RepositoryCreationTemplate};
use tokio::time::Instant;

use super::aws::Aws;
use super::cache::Answer;
use super::metrics::Api;
use super::{Registry, RegistryKey};
use crate::image::EcrRepository;
use crate::policy::facts::{
    EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, Lookup, LookupFailure,
    PlannedRepository, PullThroughCause, PullThroughFailure, RepositoryFacts, RepositoryLookup,
    Rotation,
};

/// The IAM actions of the two calls, named in failures and hints.
pub(crate) const RULES_PERMISSION: &str = "ecr:DescribePullThroughCacheRules";
pub(crate) const TEMPLATES_PERMISSION: &str = "ecr:DescribeRepositoryCreationTemplates";

/// The "not found" codes of the two APIs (for prefixes asked for by name,
/// which ecr-guard never does: a listing answers an empty list).
const RULE_NOT_FOUND: &str = "PullThroughCacheRuleNotFoundException";
const TEMPLATE_NOT_FOUND: &str = "TemplateNotFoundException";

/// The template prefix that applies to every repository no other template matches.
const ROOT: &str = "ROOT";
/// The largest page both APIs accept.
const PAGE_SIZE: i32 = 1000;
/// Most pages read of one listing: a registry has at most a few hundred rules
/// or templates, so more means a `nextToken` that never ends.
const MAX_PAGES: usize = 50;

/// One pull-through cache rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CacheRule {
    /// `ecrRepositoryPrefix`, e.g. `docker-hub`.
    pub(crate) prefix: String,
    /// `upstreamRegistryUrl`, e.g. `registry-1.docker.io`.
    pub(crate) upstream: String,
}

/// One repository creation template, as far as encryption goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) prefix: String,
    /// `appliedFor` includes `PULL_THROUGH_CACHE`.
    pub(crate) for_pull_through: bool,
    pub(crate) encryption_type: EncryptionType,
    /// `kmsKey`, when the template names one.
    pub(crate) kms_key: Option<String>,
}

/// A registry's rules: what the rules cache holds, per account and region.
#[derive(Clone, Debug)]
pub(crate) struct Rules(pub(crate) Arc<[CacheRule]>);

/// The templates `DescribeRepositoryCreationTemplates` answered, and the
/// registry they are of (`None`: the answer did not say).
#[derive(Clone, Debug)]
pub(crate) struct Templates {
    pub(crate) registry_id: Option<String>,
    pub(crate) list: Arc<[Template]>,
}

// Listings are never "not found": an empty one is cached as long as any answer.
impl Answer for Rules {
    fn is_negative(&self) -> bool {
        false
    }
}

impl Answer for Templates {
    fn is_negative(&self) -> bool {
        false
    }
}

/// `prefix` covers `name` by whole path segments: `prod` covers `prod/app`, not
/// `production/app` nor `prod` itself.
pub(crate) fn covers(prefix: &str, name: &str) -> bool {
    !prefix.is_empty()
        && name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The rule that creates `name` on its first pull, if any (the longest prefix,
/// should rules nest).
pub(crate) fn covering_rule<'a>(rules: &'a [CacheRule], name: &str) -> Option<&'a CacheRule> {
    rules
        .iter()
        .filter(|rule| covers(&rule.prefix, name))
        .max_by_key(|rule| rule.prefix.len())
}

/// The template ECR applies when a pull-through cache rule creates `name`: the
/// longest matching prefix among those applied to pull-through cache, else
/// `ROOT` if it is; `None`: ECR's default settings (AES256).
pub(crate) fn applicable_template<'a>(
    templates: &'a [Template],
    name: &str,
) -> Option<&'a Template> {
    let for_pull_through = || templates.iter().filter(|t| t.for_pull_through);
    for_pull_through()
        .filter(|t| t.prefix != ROOT && covers(&t.prefix, name))
        .max_by_key(|t| t.prefix.len())
        .or_else(|| for_pull_through().find(|t| t.prefix == ROOT))
}

/// Whether `templates` (read with the credentials for `account`: a role's
/// there, or ecr-guard's own) are those of `account`'s registry: the registry
/// ECR said it read (`registryId` of the answer) must be `account`.
/// `DescribeRepositoryCreationTemplates` takes no registry id, so without a
/// role in another account ECR answers with ecr-guard's own templates, which
/// this refuses.
pub(crate) fn templates_of<'a>(
    templates: &'a Templates,
    account: &str,
) -> Result<&'a [Template], PullThroughCause> {
    match templates.registry_id.as_deref() {
        Some(own) if own == account => Ok(&templates.list),
        own => Err(PullThroughCause::OtherAccount {
            own: own.map(str::to_owned),
        }),
    }
}

/// The failure of reading `permission`'s listing for `repo`'s registry.
pub(crate) fn failure(
    permission: &'static str,
    repo: &EcrRepository,
    cause: PullThroughCause,
) -> LookupFailure {
    LookupFailure::PullThrough(Box::new(PullThroughFailure {
        permission,
        account: repo.account.clone(),
        region: repo.region.clone(),
        cause,
    }))
}

/// The key a template gives a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlannedKey {
    /// AES256.
    None,
    /// The template's `kmsKey`, to describe like any repository's key.
    Arn(Arc<str>),
    /// KMS without `kmsKey`: the AWS-managed `aws/ecr` key of the registry,
    /// which may not exist yet (KMS creates it on first use), so it is not
    /// described: AWS manages it, rotates it yearly, and it cannot be disabled
    /// or deleted.
    AwsManaged(KeyLookup),
}

/// The encryption the repository will get from `template` (`None`: ECR's default).
pub(crate) fn planned_encryption(
    template: Option<&Template>,
    repo: &EcrRepository,
) -> (EncryptionType, PlannedKey) {
    let Some(template) = template else {
        return (EncryptionType::Aes256, PlannedKey::None);
    };
    let key = match (template.encryption_type, &template.kms_key) {
        (EncryptionType::Aes256, _) => PlannedKey::None,
        (_, Some(arn)) if !arn.is_empty() => PlannedKey::Arn(arn.as_str().into()),
        (_, _) => PlannedKey::AwsManaged(KeyLookup::Known(KeyFacts {
            arn: aws_ecr_alias(repo),
            manager: KeyManager::Aws,
            state: KeyState::Enabled,
            rotation: Rotation::AwsManaged,
            deletion_date: None,
        })),
    };
    (template.encryption_type, key)
}

/// `arn:PARTITION:kms:REGION:ACCOUNT:alias/aws/ecr` of the repository's registry.
fn aws_ecr_alias(repo: &EcrRepository) -> String {
    // Region prefixes of the partitions other than `aws`; the longer first.
    const PARTITIONS: [(&str, &str); 6] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("eu-isoe-", "aws-iso-e"),
        ("us-iso-", "aws-iso"),
    ];
    let partition = PARTITIONS
        .iter()
        .find(|(prefix, _)| repo.region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition);
    format!(
        "arn:{partition}:kms:{}:{}:alias/aws/ecr",
        repo.region, repo.account
    )
}

impl Registry {
    /// A repository that does not exist: `NotFound`, or, when a pull-through
    /// cache rule covers its name, the repository that rule will create with
    /// the template that applies, its key described like any repository's
    /// (through the key cache).
    pub(super) async fn plan(
        &self,
        repo: &EcrRepository,
        deadline: Instant,
        fetch_deadline: Instant,
    ) -> Lookup {
        let registry = RegistryKey::new(repo);
        let rules = self
            .pull_through_rules(&registry, repo, deadline, fetch_deadline)
            .await?;
        let Some(rule) = covering_rule(&rules.0, &repo.name) else {
            return Ok(RepositoryLookup::NotFound);
        };
        let templates = self
            .creation_templates(&registry, repo, deadline, fetch_deadline)
            .await?;
        let list = templates_of(&templates, &repo.account)
            .map_err(|cause| failure(TEMPLATES_PERMISSION, repo, cause))?;
        let template = applicable_template(list, &repo.name);
        let (encryption_type, key) = planned_encryption(template, repo);
        let kms_key = match key {
            PlannedKey::None => None,
            PlannedKey::AwsManaged(key) => Some(key),
            PlannedKey::Arn(arn) => {
                let arn = self.known_arn(&arn).unwrap_or(arn);
                Some(self.key(arn, deadline, fetch_deadline).await?)
            }
        };
        Ok(RepositoryLookup::ToBeCreated(PlannedRepository {
            rule: rule.prefix.clone(),
            upstream: rule.upstream.clone(),
            template: template.map(|t| t.prefix.clone()),
            facts: RepositoryFacts {
                encryption_type,
                kms_key,
            },
        }))
    }

    /// The pull-through cache rules of `repo`'s registry, through their cache.
    async fn pull_through_rules(
        &self,
        registry: &RegistryKey,
        repo: &EcrRepository,
        deadline: Instant,
        fetch_deadline: Instant,
    ) -> Result<Rules, LookupFailure> {
        let fetch = || {
            let aws = Arc::clone(&self.inner.aws);
            let (account, region) = (repo.account.clone(), repo.region.clone());
            async move {
                aws.describe_pull_through_cache_rules(&account, &region, fetch_deadline)
                    .await
            }
        };
        self.inner
            .rules
            .get(registry, deadline, fetch_deadline, fetch)
            .await
            .map_err(|f| failure(RULES_PERMISSION, repo, PullThroughCause::Call(f)))
    }

    /// The creation templates ecr-guard can read for `repo`'s registry, through
    /// their cache (whose they are is checked by `templates_of`).
    async fn creation_templates(
        &self,
        registry: &RegistryKey,
        repo: &EcrRepository,
        deadline: Instant,
        fetch_deadline: Instant,
    ) -> Result<Templates, LookupFailure> {
        let fetch = || {
            let aws = Arc::clone(&self.inner.aws);
            let (account, region) = (repo.account.clone(), repo.region.clone());
            async move {
                aws.describe_repository_creation_templates(&account, &region, fetch_deadline)
                    .await
            }
        };
        self.inner
            .templates
            .get(registry, deadline, fetch_deadline, fetch)
            .await
            .map_err(|f| failure(TEMPLATES_PERMISSION, repo, PullThroughCause::Call(f)))
    }
}

impl Aws {
    /// Every pull-through cache rule of `account`'s registry in `region`, all pages.
    pub(crate) async fn describe_pull_through_cache_rules(
        &self,
        account: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Rules, LookupFailure> {
        let ecr = self.clients_for(account, region, deadline).await?.ecr;
        let mut rules = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .call(
                    Api::DescribePullThroughCacheRules,
                    deadline,
                    RULE_NOT_FOUND,
                    |timeouts| {
                        ecr.describe_pull_through_cache_rules()
                            .registry_id(account)
                            .max_results(PAGE_SIZE)
                            .set_next_token(token.clone())
                            .customize()
                            .config_override(
                                aws_sdk_ecr::config::Builder::default().timeout_config(timeouts),
                            )
                            .send()
                    },
                )
                .await
                .map_err(|e| e.into_failure())?;
            rules.extend(page.pull_through_cache_rules().iter().filter_map(|rule| {
                Some(CacheRule {
                    prefix: rule.ecr_repository_prefix()?.to_owned(),
                    upstream: rule.upstream_registry_url().unwrap_or_default().to_owned(),
                })
            }));
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(Rules(rules.into()));
            }
        }
        Err(endless(Api::DescribePullThroughCacheRules))
    }

    /// Every repository creation template the credentials for `account` can
    /// read in `region`, all pages. The API has no registry id: it reads the
    /// caller's own registry, so these are `account`'s templates only when a
    /// role in `account` is configured (or `account` is ecr-guard's own);
    /// otherwise they are ecr-guard's, which `templates_of` refuses.
    pub(crate) async fn describe_repository_creation_templates(
        &self,
        account: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Templates, LookupFailure> {
        let ecr = self.clients_for(account, region, deadline).await?.ecr;
        let mut list = Vec::new();
        let mut registry_id = None;
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let api = Api::DescribeRepositoryCreationTemplates;
            let page = self
                .call(api, deadline, TEMPLATE_NOT_FOUND, |timeouts| {
                    ecr.describe_repository_creation_templates()
                        .max_results(PAGE_SIZE)
                        .set_next_token(token.clone())
                        .customize()
                        .config_override(
                            aws_sdk_ecr::config::Builder::default().timeout_config(timeouts),
                        )
                        .send()
                })
                .await
                .map_err(|e| e.into_failure())?;
            registry_id = registry_id.or_else(|| page.registry_id().map(str::to_owned));
            for template in page.repository_creation_templates() {
                list.extend(template_of(template)?);
            }
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(Templates {
                    registry_id,
                    list: list.into(),
                });
            }
        }
        Err(endless(Api::DescribeRepositoryCreationTemplates))
    }
}

/// One template as ECR described it; `None` without a prefix (nothing to match).
fn template_of(template: &RepositoryCreationTemplate) -> Result<Option<Template>, LookupFailure> {
    let Some(prefix) = template.prefix() else {
        return Ok(None);
    };
    let (encryption_type, kms_key) = match template.encryption_configuration() {
        // No configuration: ECR's default, AES256.
        None => (EncryptionType::Aes256, None),
        Some(config) => {
            let reported = config.encryption_type().as_str();
            let Some(ty) = EncryptionType::from_aws(reported) else {
                return Err(LookupFailure::Unrecognised(format!(
                    "repository creation template {prefix} has encryption type {reported:?}, \
                     which this version of ecr-guard does not know"
                )));
            };
            (ty, config.kms_key().map(str::to_owned))
        }
    };
    Ok(Some(Template {
        prefix: prefix.to_owned(),
        for_pull_through: template
            .applied_for()
            .contains(&RctAppliedFor::PullThroughCache),
        encryption_type,
        kms_key,
    }))
}

fn endless(api: Api) -> LookupFailure {
    LookupFailure::Unrecognised(format!(
        "{} answered more than {MAX_PAGES} pages",
        api.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str) -> CacheRule {
        CacheRule {
            prefix: prefix.to_owned(),
            upstream: "registry-1.docker.io".to_owned(),
        }
    }

    fn template(prefix: &str, for_pull_through: bool, ty: EncryptionType) -> Template {
        Template {
            prefix: prefix.to_owned(),
            for_pull_through,
            encryption_type: ty,
            kms_key: None,
        }
    }

    fn chosen<'a>(templates: &'a [Template], name: &str) -> Option<&'a str> {
        applicable_template(templates, name).map(|t| t.prefix.as_str())
    }

    #[rstest::rstest]
    #[case("prod", "prod/app", true)]
    #[case("prod", "prod/team/app", true)]
    #[case("prod", "production/app", false)]
    #[case("prod", "prod", false)]
    #[case("prod/team", "prod/team/app", true)]
    #[case("prod/team", "prod/teams/app", false)]
    #[case("", "prod/app", false)]
    fn prefixes_match_whole_path_segments(
        #[case] prefix: &str,
        #[case] name: &str,
        #[case] expected: bool,
    ) {
        assert_eq!(covers(prefix, name), expected, "{prefix} / {name}");
    }

    #[test]
    fn the_longest_covering_rule_is_the_one() {
        let rules = [rule("docker-hub"), rule("docker-hub/library"), rule("quay")];
        let found = covering_rule(&rules, "docker-hub/library/nginx").map(|r| r.prefix.as_str());
        assert_eq!(found, Some("docker-hub/library"));
        assert_eq!(covering_rule(&rules, "docker-hubby/nginx"), None);
        assert_eq!(covering_rule(&rules, "ghcr/app"), None);
    }

    #[test]
    fn the_most_specific_pull_through_template_wins() {
        let templates = [
            template("ROOT", true, EncryptionType::Aes256),
            template("docker-hub", true, EncryptionType::Kms),
            template("docker-hub/library", true, EncryptionType::KmsDsse),
        ];
        assert_eq!(
            chosen(&templates, "docker-hub/library/nginx"),
            Some("docker-hub/library")
        );
        assert_eq!(
            chosen(&templates, "docker-hub/bitnami/redis"),
            Some("docker-hub")
        );
        assert_eq!(chosen(&templates, "quay/app"), Some("ROOT"));
    }

    #[test]
    fn templates_not_applied_to_pull_through_cache_are_not_used() {
        let templates = [
            template("ROOT", false, EncryptionType::Kms),
            template("docker-hub", false, EncryptionType::Kms),
        ];
        assert_eq!(chosen(&templates, "docker-hub/library/nginx"), None);
        let with_root = [
            template("ROOT", true, EncryptionType::Kms),
            template("docker-hub", false, EncryptionType::Aes256),
        ];
        assert_eq!(chosen(&with_root, "docker-hub/library/nginx"), Some("ROOT"));
    }

    #[test]
    fn template_prefixes_match_whole_segments() {
        let templates = [template("prod", true, EncryptionType::Kms)];
        assert_eq!(chosen(&templates, "prod/app"), Some("prod"));
        assert_eq!(chosen(&templates, "production/app"), None);
    }

    #[test]
    fn no_template_means_aes256_and_kms_without_a_key_the_aws_managed_one() {
        let repo = EcrRepository {
            account: "123456789012".to_owned(),
            region: "cn-north-1".to_owned(),
            name: "docker-hub/library/nginx".to_owned(),
        };
        assert_eq!(
            planned_encryption(None, &repo),
            (EncryptionType::Aes256, PlannedKey::None)
        );
        let kms = template("docker-hub", true, EncryptionType::Kms);
        let (ty, key) = planned_encryption(Some(&kms), &repo);
        assert_eq!(ty, EncryptionType::Kms);
        let PlannedKey::AwsManaged(KeyLookup::Known(key)) = key else {
            panic!("{key:?}");
        };
        assert_eq!(
            key.arn,
            "arn:aws-cn:kms:cn-north-1:123456789012:alias/aws/ecr"
        );
        assert_eq!(
            (key.manager, key.rotation),
            (KeyManager::Aws, Rotation::AwsManaged)
        );
        let with_key = Template {
            kms_key: Some("arn:aws:kms:us-east-1:123456789012:key/1".to_owned()),
            ..kms
        };
        assert_eq!(
            planned_encryption(Some(&with_key), &repo).1,
            PlannedKey::Arn("arn:aws:kms:us-east-1:123456789012:key/1".into())
        );
    }

    #[test]
    fn templates_of_another_or_an_unknown_account_are_unknown() {
        let templates = Templates {
            registry_id: Some("123456789012".to_owned()),
            list: Arc::from([]),
        };
        assert!(templates_of(&templates, "123456789012").is_ok());
        assert_eq!(
            templates_of(&templates, "210987654321"),
            Err(PullThroughCause::OtherAccount {
                own: Some("123456789012".to_owned())
            })
        );
        let unsaid = Templates {
            registry_id: None,
            list: Arc::from([]),
        };
        assert_eq!(
            templates_of(&unsaid, "123456789012"),
            Err(PullThroughCause::OtherAccount { own: None })
        );
    }

    /// A template's encryption as ECR describes it (issue 14, fault 8): no
    /// configuration is ECR's documented default (AES256), but an encryption
    /// type this version does not know is a failure to read the template,
    /// never a guess.
    #[test]
    fn a_templates_encryption_is_read_and_an_unknown_type_is_no_guess() {
        use aws_sdk_ecr::types::{
            EncryptionConfigurationForRepositoryCreationTemplate as Encryption,
            EncryptionType as EcrType,
        };
        let with = |ty: Option<EcrType>, key: Option<&str>| {
            let mut t = RepositoryCreationTemplate::builder()
                .prefix("docker-hub")
                .applied_for(RctAppliedFor::PullThroughCache);
            if let Some(ty) = ty {
                t = t.encryption_configuration(
                    Encryption::builder()
                        .encryption_type(ty)
                        .set_kms_key(key.map(str::to_owned))
                        .build()
                        .unwrap(),
                );
            }
            template_of(&t.build())
        };
        let read = |ty, key| with(ty, key).unwrap().unwrap();

        let none = read(None, None);
        assert_eq!(
            (none.encryption_type, none.kms_key, none.for_pull_through),
            (EncryptionType::Aes256, None, true)
        );
        let kms = read(Some(EcrType::Kms), Some("arn:aws:kms:us-east-1:1:key/k"));
        assert_eq!(
            (kms.encryption_type, kms.kms_key.as_deref()),
            (EncryptionType::Kms, Some("arn:aws:kms:us-east-1:1:key/k"))
        );
        let dsse = read(Some(EcrType::KmsDsse), None);
        assert_eq!(
            (dsse.encryption_type, dsse.kms_key),
            (EncryptionType::KmsDsse, None)
        );

        let unknown = with(Some(EcrType::from("AES512")), None);
        assert_eq!(
            unknown,
            Err(LookupFailure::Unrecognised(
                "repository creation template docker-hub has encryption type \"AES512\", \
                 which this version of ecr-guard does not know"
                    .to_owned()
            ))
        );
        // Without a prefix there is nothing to match a repository against.
        assert_eq!(
            template_of(&RepositoryCreationTemplate::builder().build()),
            Ok(None)
        );
    }
}

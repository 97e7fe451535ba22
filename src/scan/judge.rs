//! Each policy's verdict on one repository, judged exactly as admission judges
//! an image of it: `ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME:latest` in a
//! container, through [`policy::evaluate`](crate::policy::evaluate) with the
//! repository's facts. A policy whose `images` globs do not select the image
//! allows it, as at admission.

use std::collections::HashMap;
use std::sync::Arc;

use super::report::PolicyVerdict;
use crate::image::EcrRepository;
use crate::policy::facts::Lookup;
use crate::policy::{ImageUse, Options, Policy, Slot, evaluate};

/// The container name judged images are given (it appears in the messages).
const CONTAINER: &str = "scan";

/// The image reference a repository is judged as.
pub fn image_of(repo: &EcrRepository) -> String {
    format!(
        "{}.dkr.ecr.{}.amazonaws.com/{}:latest",
        repo.account, repo.region, repo.name
    )
}

/// One verdict per policy of `policies`, in their order (the inventory sorts
/// them by name). `Options::default()`: modes as the policies say.
pub fn judge(policies: &[&Policy], repo: &EcrRepository, lookup: &Lookup) -> Vec<PolicyVerdict> {
    let reference = image_of(repo);
    // Not `ImageUse::new`: its parse cache serves admission's repeated images,
    // and a scan parses each repository's image once.
    let image_use = ImageUse {
        slot: Slot::Container,
        name: CONTAINER.to_owned(),
        image: Arc::new(crate::image::parse(&reference)),
        reference,
    };
    // The facts are keyed by the repository the parser reads from the image,
    // which is the one evaluation asks for.
    let key = image_use
        .ecr_repository()
        .cloned()
        .unwrap_or_else(|| repo.clone());
    let facts = HashMap::from([(key, lookup.clone())]);
    let verdict = evaluate(policies, &[image_use], &facts, Options::default());
    policies
        .iter()
        .map(|policy| {
            let mine: Vec<_> = verdict
                .violations
                .iter()
                .filter(|v| v.policy == policy.name)
                .collect();
            let mut reasons: Vec<String> = Vec::new();
            for v in &mine {
                let reason = v.reason.as_str().to_owned();
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
            }
            PolicyVerdict {
                policy: policy.name.clone(),
                mode: policy.mode.as_str().to_owned(),
                allowed: mine.is_empty(),
                reasons,
                messages: mine.iter().map(|v| v.message()).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::facts::{EncryptionType, RepositoryFacts, RepositoryLookup};

    fn policy(name: &str, spec: serde_json::Value) -> Policy {
        Policy::compile(name, &serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn each_policy_judges_the_repository_as_an_image_of_it() {
        let kms = policy(
            "kms",
            serde_json::json!({"mode": "Enforce", "images": ["*"], "rules": {"allowedEncryptionTypes": ["KMS"]}}),
        );
        let other = policy(
            "other-images",
            serde_json::json!({"mode": "Warn", "images": ["*/elsewhere/*"], "rules": {"allowedEncryptionTypes": ["KMS"]}}),
        );
        let repo = EcrRepository {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            name: "team/app".into(),
        };
        let aes: Lookup = Ok(RepositoryLookup::Found(RepositoryFacts {
            encryption_type: EncryptionType::Aes256,
            kms_key: None,
        }));
        let verdicts = judge(&[&kms, &other], &repo, &aes);
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts[0].policy, "kms");
        assert_eq!(verdicts[0].mode, "Enforce");
        assert!(!verdicts[0].allowed);
        assert_eq!(verdicts[0].reasons, ["encryption_type"]);
        assert!(
            verdicts[0].messages[0]
                .contains("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:latest"),
            "{:?}",
            verdicts[0].messages
        );
        assert!(verdicts[1].allowed, "not selected by its globs: allowed");
        assert!(verdicts[1].reasons.is_empty());
    }
}

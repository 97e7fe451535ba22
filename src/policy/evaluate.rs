//! The decision: (policies, namespace labels, images, repository facts) → verdict.
//! Pure: no I/O, no clock. Everything that waits on the network happens before.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::compile::{Body, Checks, Policy};
use super::crd::{Mode, NonEcrImages, OnLookupFailure};
use super::verdict::{Finding, Hint, Reason, Verdict, Violation, key_region};
use crate::image::{EcrRepository, ImageError, ImageRef};
use crate::policy::facts::{
    EncryptionType, KeyFacts, KeyLookup, KeyManager, KeyState, Lookup, LookupFailure,
    RepositoryFacts, RepositoryLookup, Rotation,
};

/// Where in a pod spec an image is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Container,
    InitContainer,
    EphemeralContainer,
    /// `volumes[].image.reference`.
    ImageVolume,
}

impl Slot {
    fn noun(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::InitContainer => "init container",
            Self::EphemeralContainer => "ephemeral container",
            Self::ImageVolume => "image volume",
        }
    }
}

/// One image use under review: a container (or image volume) and its image.
#[derive(Clone, Debug)]
pub struct ImageUse {
    pub slot: Slot,
    /// The container's (or volume's) name.
    pub name: String,
    /// The image reference exactly as written.
    pub reference: String,
    /// Shared with every image use naming the same reference (see
    /// [`parse_cached`](crate::image::parse_cached)).
    pub image: Arc<Result<ImageRef, ImageError>>,
}

impl ImageUse {
    pub fn new(slot: Slot, name: impl Into<String>, reference: impl Into<String>) -> Self {
        let reference = reference.into();
        let image = crate::image::parse_cached(&reference);
        Self {
            slot,
            name: name.into(),
            reference,
            image,
        }
    }

    /// The ECR repository the image comes from, if it parsed and is one.
    pub fn ecr_repository(&self) -> Option<&EcrRepository> {
        (*self.image).as_ref().ok()?.ecr_repository()
    }

    /// `container "api" image 1234….amazonaws.com/payments/api:1.4`; a
    /// reference longer than any valid one is cut, so that a hostile or broken
    /// spec cannot make the denial message (shown to the user) megabytes long.
    fn describe(&self) -> String {
        format!(
            "{} {:?} image {}",
            self.slot.noun(),
            crate::ellipsize(&self.name, MAX_SHOWN_CHARS),
            crate::ellipsize(&self.reference, MAX_SHOWN_CHARS)
        )
    }

    fn short(&self) -> String {
        format!("{} {:?}", self.slot.noun(), self.name)
    }
}

/// The longest container name or image reference a message repeats: more than
/// any valid reference (name ≤ 255, tag ≤ 128, digest ~100 characters).
const MAX_SHOWN_CHARS: usize = 512;

/// Options that change every decision.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// The global `--dry-run` switch: every Enforce acts as DryRun.
    pub dry_run: bool,
}

/// The policies that apply in a namespace with these labels.
pub fn applicable<'p>(
    policies: &'p [Policy],
    namespace_labels: &BTreeMap<String, String>,
) -> Vec<&'p Policy> {
    policies
        .iter()
        .filter(|p| p.applies_to_namespace(namespace_labels))
        .collect()
}

/// The ECR repositories whose facts some applicable policy needs.
pub fn repositories_to_look_up(
    policies: &[&Policy],
    image_uses: &[ImageUse],
) -> BTreeSet<EcrRepository> {
    image_uses
        .iter()
        .filter_map(|s| (*s.image).as_ref().ok())
        .filter_map(|image| {
            let repo = image.ecr_repository()?;
            policies
                .iter()
                .any(|p| p.is_valid() && p.selects_image(&image.name))
                .then(|| repo.clone())
        })
        .collect()
}

/// Judges every image use against every applicable policy.
pub fn evaluate(
    policies: &[&Policy],
    image_uses: &[ImageUse],
    facts: &HashMap<EcrRepository, Lookup>,
    options: Options,
) -> Verdict {
    let mut verdict = Verdict::default();
    // Each image use's facts, found once rather than once per applicable policy:
    // hashing the repository was ~4% of a warm review.
    let lookups: Vec<Option<&Lookup>> = image_uses
        .iter()
        .map(|s| s.ecr_repository().and_then(|repo| facts.get(repo)))
        .collect();
    for policy in policies {
        let mode = effective_mode(policy.mode, options);
        match &policy.body {
            Body::Invalid(problems) => {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                verdict.violations.push(Violation {
                    policy: policy.name.clone(),
                    mode,
                    reason: Reason::InvalidPolicy,
                    image_use: None,
                    finding: Finding {
                        problem: format!("policy {} is invalid ({})", policy.name, list.join("; ")),
                        requirement: "invalid policies fail closed".to_string(),
                    },
                    hint: Some(Hint::FixPolicy {
                        policy: policy.name.clone(),
                    }),
                });
            }
            Body::Valid(checks) => {
                for (image_use, lookup) in image_uses.iter().zip(&lookups) {
                    evaluate_image(policy, checks, mode, image_use, *lookup, &mut verdict);
                }
            }
        }
    }
    notice_unusable_keys(image_uses, &lookups, &mut verdict);
    verdict
}

fn effective_mode(mode: Mode, options: Options) -> Mode {
    match mode {
        Mode::Enforce if options.dry_run => Mode::DryRun,
        other => other,
    }
}

fn evaluate_image(
    policy: &Policy,
    checks: &Checks,
    mode: Mode,
    image_use: &ImageUse,
    lookup: Option<&Lookup>,
    verdict: &mut Verdict,
) {
    let mut push = |reason: Reason, finding: Finding, hint: Option<Hint>| {
        verdict.violations.push(Violation {
            policy: policy.name.clone(),
            mode,
            reason,
            image_use: Some((image_use.describe(), image_use.short())),
            finding,
            hint,
        });
    };
    let image = match &*image_use.image {
        Ok(image) => image,
        Err(e) => {
            // An unreadable reference cannot be matched against globs, so every
            // applicable policy judges it (fail closed); kubelet could not pull it anyway.
            push(
                Reason::InvalidImage,
                Finding {
                    problem: e.to_string(),
                    requirement: format!("policy {} cannot verify it", policy.name),
                },
                Some(Hint::FixImageReference),
            );
            return;
        }
    };
    if !policy.selects_image(&image.name) {
        return;
    }
    let Some(repo) = image.ecr_repository() else {
        if checks.non_ecr_images == NonEcrImages::Deny {
            push(
                Reason::NonEcrImage,
                Finding {
                    problem: "the image is not from a private ECR registry".to_string(),
                    requirement: format!(
                        "policy {} allows only images from private ECR repositories",
                        policy.name
                    ),
                },
                Some(Hint::MoveToEcr),
            );
        }
        return;
    };
    let not_looked_up;
    let lookup = match lookup {
        Some(lookup) => lookup,
        None => {
            not_looked_up = Err(LookupFailure::Aws(
                "no lookup was made for this repository".to_string(),
            ));
            &not_looked_up
        }
    };
    match lookup {
        Err(failure) => {
            if checks.on_lookup_failure == OnLookupFailure::Deny {
                push(
                    Reason::LookupFailed,
                    Finding {
                        problem: format!(
                            "the encryption of repository {} could not be verified ({failure})",
                            repo.name
                        ),
                        requirement: format!(
                            "policy {} denies images it cannot verify (onLookupFailure: Deny)",
                            policy.name
                        ),
                    },
                    Some(Hint::for_lookup_failure(failure, repo)),
                );
            } else {
                verdict.notes.push(format!(
                    "{}: encryption of repository {} not verified ({failure}); admitted by policy {} (onLookupFailure: Allow)",
                    image_use.short(),
                    repo.name,
                    policy.name
                ));
            }
        }
        Ok(RepositoryLookup::NotFound) => push(
            Reason::RepositoryNotFound,
            Finding {
                problem: format!(
                    "repository {} does not exist in account {}, region {}",
                    repo.name, repo.account, repo.region
                ),
                requirement: format!("policy {} cannot verify its encryption", policy.name),
            },
            Some(Hint::PushImage { repo: repo.clone() }),
        ),
        Ok(RepositoryLookup::Found(found)) => {
            for (reason, finding, hint) in check_rules(&policy.name, checks, repo, found) {
                push(reason, finding, hint);
            }
        }
    }
}

/// Every rule of one policy against the facts of one existing repository.
fn check_rules(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    facts: &RepositoryFacts,
) -> Vec<(Reason, Finding, Option<Hint>)> {
    let mut out = Vec::new();
    let recreate = || Hint::RecreateRepository {
        repo: repo.clone(),
        encryption_type: preferred_type(&c.allowed_types),
    };
    let ty = facts.encryption_type;
    if !c.allowed_types.contains(&ty) {
        let allowed: Vec<&str> = c.allowed_types.iter().map(|t| t.as_str()).collect();
        out.push((
            Reason::EncryptionType,
            Finding {
                problem: format!("repository {} is encrypted with {ty}", repo.name),
                requirement: format!("policy {policy} allows only {}", allowed.join(", ")),
            },
            Some(recreate()),
        ));
    }
    let key = match &facts.kms_key {
        None => {
            // AES256: no key, so only the customer-managed-key rule can fail (the
            // other key rules make a policy invalid when AES256 is all it allows).
            if c.require_customer_managed_key && c.allowed_types.contains(&ty) {
                out.push((
                    Reason::CustomerManagedKeyRequired,
                    Finding {
                        problem: format!(
                            "repository {} is encrypted with {ty} (no KMS key)",
                            repo.name
                        ),
                        requirement: format!("policy {policy} requires a customer-managed KMS key"),
                    },
                    Some(recreate()),
                ));
            }
            return out;
        }
        Some(key) => key,
    };
    let arn = key.arn();
    if !c.allowed_kms_keys.is_empty() && !c.allowed_kms_keys.iter().any(|p| p.is_match(arn)) {
        let allowed: Vec<&str> = c.allowed_kms_keys.iter().map(|p| p.as_str()).collect();
        out.push((
            Reason::KeyNotAllowed,
            Finding {
                problem: format!("repository {} is encrypted with KMS key {arn}", repo.name),
                requirement: format!(
                    "policy {policy} allows only keys matching {}",
                    allowed.join(", ")
                ),
            },
            Some(recreate()),
        ));
    }
    let facts = match key {
        KeyLookup::Known(k) => k,
        KeyLookup::Unknown { arn, reason, cause } => {
            let needs_facts =
                c.require_customer_managed_key || c.require_key_rotation || c.require_usable_key;
            if needs_facts {
                out.push((
                    Reason::KeyUnknown,
                    Finding {
                        problem: format!(
                            "repository {} is encrypted with KMS key {arn}, which ecr-guard cannot describe ({reason})",
                            repo.name
                        ),
                        requirement: format!("policy {policy} requires {}", key_requirements(c)),
                    },
                    Some(Hint::for_unknown_key(*cause, arn, repo)),
                ));
            }
            return out;
        }
    };
    out.extend(check_key(policy, c, repo, facts, recreate));
    out
}

fn check_key(
    policy: &str,
    c: &Checks,
    repo: &EcrRepository,
    key: &KeyFacts,
    // Built only for a violation: most keys pass, and a hint clones the repository.
    recreate: impl FnOnce() -> Hint,
) -> Vec<(Reason, Finding, Option<Hint>)> {
    let mut out = Vec::new();
    let arn = &key.arn;
    if c.require_customer_managed_key && key.manager == KeyManager::Aws {
        out.push((
            Reason::CustomerManagedKeyRequired,
            Finding {
                problem: format!(
                    "repository {} is encrypted with the AWS-managed key {arn}",
                    repo.name
                ),
                requirement: format!("policy {policy} requires a customer-managed KMS key"),
            },
            Some(recreate()),
        ));
    }
    // The key's region, from its ARN: KMS keys are regional, and the ARN is
    // where KMS said the key lives. Never the repository's region by default.
    let region = key_region(arn);
    if c.require_key_rotation {
        let requirement = format!("policy {policy} requires key rotation");
        match &key.rotation {
            Rotation::Enabled | Rotation::AwsManaged => {}
            Rotation::Disabled => out.push((
                Reason::RotationDisabled,
                Finding {
                    problem: format!("KMS key {arn} has automatic rotation disabled"),
                    requirement,
                },
                Some(Hint::EnableRotation {
                    arn: arn.clone(),
                    region: region.clone(),
                }),
            )),
            // Not learnt is not "disabled": its own reason, and the hint is
            // what would let ecr-guard learn it.
            Rotation::Unknown(why, cause) => out.push((
                Reason::RotationUnknown,
                Finding {
                    problem: format!("the rotation status of KMS key {arn} is unknown ({why})"),
                    requirement,
                },
                Some(Hint::for_unknown_rotation(*cause, arn, region.clone())),
            )),
        }
    }
    if c.require_usable_key && key.state == KeyState::Unreported {
        out.push((
            Reason::KeyStateUnknown,
            Finding {
                problem: format!(
                    "KMS did not report the state of key {arn} of repository {}",
                    repo.name
                ),
                requirement: format!("policy {policy} requires a usable (Enabled) key"),
            },
            Some(Hint::AskKms {
                command: "describe-key",
                arn: arn.clone(),
                region: region.clone(),
            }),
        ));
    } else if c.require_usable_key && !key.state.is_usable() {
        out.push((
            Reason::KeyUnusable,
            Finding {
                problem: format!(
                    "KMS key {arn} of repository {} is {}, so pulls from it fail",
                    repo.name, key.state
                ),
                requirement: format!("policy {policy} requires a usable (Enabled) key"),
            },
            Some(Hint::for_key_state(&key.state, arn, region)),
        ));
    }
    out
}

fn key_requirements(c: &Checks) -> String {
    let mut parts = Vec::new();
    if c.require_customer_managed_key {
        parts.push("a customer-managed key");
    }
    if c.require_key_rotation {
        parts.push("key rotation");
    }
    if c.require_usable_key {
        parts.push("a usable (Enabled) key");
    }
    parts.join(", ")
}

/// The type a recreated repository should get: KMS when allowed (cheapest that
/// satisfies key rules), else whatever the policy allows first.
fn preferred_type(allowed: &[EncryptionType]) -> EncryptionType {
    [
        EncryptionType::Kms,
        EncryptionType::KmsDsse,
        EncryptionType::Aes256,
    ]
    .into_iter()
    .find(|t| allowed.contains(t))
    .unwrap_or(EncryptionType::Kms)
}

/// A Disabled or PendingDeletion key breaks pulls whatever the policies say: worth a
/// note even where no rule asks for a usable key.
fn notice_unusable_keys(
    image_uses: &[ImageUse],
    lookups: &[Option<&Lookup>],
    verdict: &mut Verdict,
) {
    let flagged: BTreeSet<&str> = verdict
        .violations
        .iter()
        .filter(|v| v.reason == Reason::KeyUnusable)
        .filter_map(|v| v.image_use.as_ref().map(|(d, _)| d.as_str()))
        .collect();
    for (image_use, lookup) in image_uses.iter().zip(lookups) {
        let Some(repo) = image_use.ecr_repository() else {
            continue;
        };
        let Some(Ok(RepositoryLookup::Found(RepositoryFacts {
            kms_key: Some(KeyLookup::Known(key)),
            ..
        }))) = lookup
        else {
            continue;
        };
        // An unreported state is not known to be unusable: no note.
        if matches!(key.state, KeyState::Enabled | KeyState::Unreported)
            || flagged.contains(image_use.describe().as_str())
        {
            continue;
        }
        let note = format!(
            "{}: KMS key of repository {} is {}; pulls will fail",
            image_use.short(),
            repo.name,
            key.state
        );
        if !verdict.notes.contains(&note) {
            verdict.notes.push(note);
        }
    }
}

//! The decision: (applicable policies, image uses, repository facts) → verdict.
//! Pure: no I/O, no clock. Everything that waits on the network happens before.
//!
//! This module walks every image use through every policy; what each rule
//! demands of a repository and its key is in [`rules`](super::rules).

use std::collections::HashMap;

use super::compile::{Body, Checks, FieldError, Policy};
use super::crd::{Mode, NonEcrImages, OnLookupFailure};
use super::hint::Hint;
use super::image_use::ImageUse;
use super::planned::check_planned;
use super::rules::{Failure, check_rules, notice_unusable_keys};
use super::verdict::{Finding, Reason, Verdict, Violation};
use crate::image::{EcrRepository, ImageError};
use crate::policy::facts::{Lookup, LookupFailure, RepositoryLookup};

/// Options that change every decision.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// The global `--dry-run` switch: every Enforce acts as DryRun.
    pub dry_run: bool,
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
                verdict
                    .violations
                    .push(invalid_policy(policy, mode, problems));
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

/// An invalid policy fails closed: one violation, with no image use, listing
/// its problems.
fn invalid_policy(policy: &Policy, mode: Mode, problems: &[FieldError]) -> Violation {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Violation {
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
    }
}

/// One image use against one valid policy: a violation per broken rule, and a
/// note when the policy admits the image unverified.
fn evaluate_image(
    policy: &Policy,
    checks: &Checks,
    mode: Mode,
    image_use: &ImageUse,
    lookup: Option<&Lookup>,
    verdict: &mut Verdict,
) {
    let failures = image_failures(policy, checks, image_use, lookup, &mut verdict.notes);
    for (reason, finding, hint) in failures {
        verdict.violations.push(Violation {
            policy: policy.name.clone(),
            mode,
            reason,
            image_use: Some((image_use.describe(), image_use.short())),
            finding,
            hint,
        });
    }
}

/// The rules one image use breaks under one valid policy, in the order they are
/// checked: the reference, whether the policy selects it, its registry, its
/// repository's lookup, then the rules on the repository's facts.
fn image_failures(
    policy: &Policy,
    checks: &Checks,
    image_use: &ImageUse,
    lookup: Option<&Lookup>,
    notes: &mut Vec<String>,
) -> Vec<Failure> {
    let image = match &*image_use.image {
        Ok(image) => image,
        // An unreadable reference cannot be matched against globs, so every
        // applicable policy judges it (fail closed); kubelet could not pull it anyway.
        Err(e) => return vec![invalid_image(policy, e)],
    };
    if !policy.selects_image(&image.name) {
        return Vec::new();
    }
    let Some(repo) = image.ecr_repository() else {
        return non_ecr_image(policy, checks).into_iter().collect();
    };
    let failure = match lookup {
        Some(Ok(RepositoryLookup::Found(facts))) => {
            return check_rules(&policy.name, checks, repo, facts);
        }
        Some(Ok(RepositoryLookup::ToBeCreated(plan))) => {
            return check_planned(&policy.name, checks, repo, plan);
        }
        Some(Ok(RepositoryLookup::NotFound)) => return vec![repository_not_found(policy, repo)],
        Some(Err(failure)) => failure,
        None => &LookupFailure::Aws("no lookup was made for this repository".to_string()),
    };
    lookup_failed(policy, checks, image_use, repo, failure, notes)
        .into_iter()
        .collect()
}

fn invalid_image(policy: &Policy, error: &ImageError) -> Failure {
    (
        Reason::InvalidImage,
        Finding {
            problem: error.to_string(),
            requirement: format!("policy {} cannot verify it", policy.name),
        },
        Some(Hint::FixImageReference),
    )
}

/// `nonEcrImages`: an image from outside private ECR has no facts to judge.
fn non_ecr_image(policy: &Policy, checks: &Checks) -> Option<Failure> {
    if checks.non_ecr_images != NonEcrImages::Deny {
        return None;
    }
    Some((
        Reason::NonEcrImage,
        Finding {
            problem: "the image is not from a private ECR registry".to_string(),
            requirement: format!(
                "policy {} allows only images from private ECR repositories",
                policy.name
            ),
        },
        Some(Hint::MoveToEcr),
    ))
}

fn repository_not_found(policy: &Policy, repo: &EcrRepository) -> Failure {
    (
        Reason::RepositoryNotFound,
        Finding {
            problem: format!(
                "repository {} does not exist in account {}, region {}",
                repo.name, repo.account, repo.region
            ),
            requirement: format!("policy {} cannot verify its encryption", policy.name),
        },
        Some(Hint::PushImage { repo: repo.clone() }),
    )
}

/// `onLookupFailure`: Deny makes an unverified image a failure; Allow admits it
/// with a note saying so.
fn lookup_failed(
    policy: &Policy,
    checks: &Checks,
    image_use: &ImageUse,
    repo: &EcrRepository,
    failure: &LookupFailure,
    notes: &mut Vec<String>,
) -> Option<Failure> {
    if checks.on_lookup_failure == OnLookupFailure::Deny {
        return Some((
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
        ));
    }
    notes.push(format!(
        "{}: encryption of repository {} not verified ({failure}); admitted by policy {} (onLookupFailure: Allow)",
        image_use.short(),
        repo.name,
        policy.name
    ));
    None
}

//! Policies: the CRD types, their validation, and the pure evaluation.
//!
//! - `crd`: the `EcrEncryptionPolicy` resource as users write it; `strict`
//!   finds fields it does not know.
//! - `compile`: a spec → a [`Policy`] ready to evaluate, or its problems.
//! - `facts`: what ECR and KMS said about a repository (and [`facts::KeyArn`]).
//! - `image_use`: one use of an image in a pod spec.
//! - `select`: which policies apply, which repositories need looking up.
//! - `evaluate`: every image use through every policy → a [`Verdict`].
//! - `rules`: the rule checks on one repository's facts; `planned`: the same on
//!   a repository a pull-through cache rule will create.
//! - `verdict` and `hint`: the outcome, and how it reads.

mod compile;
mod crd;
mod evaluate;
pub mod facts;
mod hint;
mod image_use;
mod planned;
mod rules;
mod select;
pub mod strict;
mod verdict;

pub use compile::{FieldError, Policy};
pub use crd::{
    EcrEncryptionPolicy, EcrEncryptionPolicySpec, EcrEncryptionPolicyStatus, Mode, NonEcrImages,
    OnLookupFailure, Rules, crd_yaml,
};
pub use evaluate::{Options, evaluate};
pub use hint::Hint;
pub use image_use::{ImageUse, Slot};
pub use select::{applicable, repositories_to_look_up};
pub use verdict::{Finding, Reason, Verdict, Violation, hints};

#[cfg(test)]
mod tests;

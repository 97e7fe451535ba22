//! Policies: the CRD types, their validation, and the pure evaluation.

mod compile;
mod crd;
mod evaluate;
pub mod facts;
pub mod strict;
mod verdict;

pub use compile::{FieldError, Policy};
pub use crd::{
    EcrEncryptionPolicy, EcrEncryptionPolicySpec, EcrEncryptionPolicyStatus, Mode, NonEcrImages,
    OnLookupFailure, Rules, crd_yaml,
};
pub use evaluate::{ImageUse, Options, Slot, applicable, evaluate, repositories_to_look_up};
pub use verdict::{Finding, Hint, Reason, Verdict, Violation, hints};

#[cfg(test)]
mod tests;

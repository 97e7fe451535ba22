//! ecr-guard: a validating admission webhook that checks how the ECR repositories
//! behind a workload's images are encrypted.
#![forbid(unsafe_code)]

pub mod image;
pub mod policy;
pub mod registry;

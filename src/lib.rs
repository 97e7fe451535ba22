//! ecr-guard: a validating admission webhook that checks how the ECR repositories
//! behind a workload's images are encrypted.
#![forbid(unsafe_code)]

pub mod admission;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod crd;
pub mod image;
pub mod inventory;
pub mod k8s_names;
pub mod local;
pub mod metrics;
pub mod policy;
pub mod registry;
pub mod run;
pub mod server;
pub mod text;
pub mod tls;

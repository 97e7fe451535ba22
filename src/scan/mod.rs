//! `ecr-guard scan`: the encryption posture of whole registries, judged by the
//! policies, with what it costs.

pub mod render;
pub mod report;

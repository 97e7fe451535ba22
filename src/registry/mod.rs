//! Facts about ECR repositories and their KMS keys, fetched from AWS and cached.

pub mod facts;

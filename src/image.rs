//! Image references → the ECR repository they live in, or "not ECR".
//! (Being written; see the interface below.)

use std::fmt;

/// A private ECR repository an image lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EcrRepository {
    /// The 12-digit account id: the `registryId` for DescribeRepositories.
    pub account: String,
    /// e.g. `us-east-1`, `cn-north-1`, `us-gov-west-1`.
    pub region: String,
    /// The repository name, e.g. `payments/api`.
    pub name: String,
}

impl fmt::Display for EcrRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Which flavour of ECR endpoint the host named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    Standard,
    Fips,
    DualStack,
}

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Ecr { repository: EcrRepository, host_kind: HostKind },
    /// Docker Hub, ECR Public (`public.ecr.aws`), or any other registry.
    NotEcr,
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Normalised name without tag or digest, host lower-cased and without `:443`,
    /// Docker Hub spelled out: `docker.io/library/nginx`. Policy globs match this.
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub location: Location,
}

impl ImageRef {
    pub fn ecr_repository(&self) -> Option<&EcrRepository> {
        match &self.location {
            Location::Ecr { repository, .. } => Some(repository),
            Location::NotEcr => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image reference is empty")]
    Empty,
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
}

/// Parses an image reference as a container runtime would.
pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
    let _ = reference;
    todo!("image parsing")
}

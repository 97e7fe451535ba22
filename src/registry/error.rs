//! Why the registry could not be set up. Lookups never fail with these: a lookup
//! answers with `facts::Lookup`, whose error side is `facts::LookupFailure`.

use aws_credential_types::provider::error::CredentialsError;

/// The credential sources `aws-config`'s default chain tries, in order, for the
/// message of [`Error::ResolveCredentials`].
pub(crate) const DEFAULT_CHAIN: &str = "environment variables (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), \
     the shared config and credentials files (AWS_PROFILE), a web identity token (IRSA: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), \
     the container credentials endpoint (EKS Pod Identity / ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI), \
     and EC2 instance metadata (IMDS)";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to find an AWS credentials provider: the SDK configuration has none")]
    NoCredentialsProvider,

    #[error("failed to resolve AWS credentials from the default chain: tried {chain}")]
    ResolveCredentials {
        chain: &'static str,
        #[source]
        source: CredentialsError,
    },
}

//! Why the registry could not be set up. Lookups never fail with these: a lookup
//! answers with `facts::Lookup`, whose error side is `facts::LookupFailure`.

use aws_config::imds::client::error::ImdsError;
use aws_credential_types::provider::error::CredentialsError;

use crate::policy::facts::LookupFailure;

/// The credential sources `aws-config`'s default chain tries, in order, for the
/// message of [`Error::ResolveCredentials`].
pub(crate) const DEFAULT_CHAIN: &str = "environment variables (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), \
     the shared config and credentials files (AWS_PROFILE), a web identity token (IRSA: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), \
     the container credentials endpoint (EKS Pod Identity / ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI), \
     and EC2 instance metadata (IMDS)";

/// Longest part of a credential provider's own error kept in a message: its
/// `Display` can carry a whole HTTP response in `Debug` form.
const MAX_PROVIDER_MESSAGE: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to find an AWS credentials provider: the SDK configuration has none")]
    NoCredentialsProvider,

    /// Every source of the chain was tried. When none had credentials
    /// (`CredentialsNotLoaded`) that is all there is to say; when one failed
    /// (an IRSA token STS refused, say), `source` says how.
    #[error("failed to find AWS credentials: looked in {chain}")]
    ResolveCredentials {
        chain: &'static str,
        #[source]
        source: CredentialsError,
    },

    /// Roles are configured, and `sts:GetCallerIdentity` did not say which
    /// account ecr-guard's credentials belong to.
    #[error("failed to learn ecr-guard's own AWS account (sts:GetCallerIdentity): {0}")]
    OwnAccount(LookupFailure),
}

impl Error {
    /// The one line a lookup reports when the registry could not be set up
    /// (`check` with no credentials): what was looked for and where, and, when a
    /// source failed rather than had nothing, its error, short.
    pub fn lookup_failure(&self) -> LookupFailure {
        match self {
            Self::NoCredentialsProvider => LookupFailure::Credentials(self.to_string()),
            Self::ResolveCredentials { source, .. } => {
                LookupFailure::Credentials(credentials_message(source))
            }
            Self::OwnAccount(failure) => failure.clone(),
        }
    }
}

/// "no AWS credentials were found (looked in …)", or, when a source failed
/// with an error of its own, that error (shortened) and where else was looked.
pub(crate) fn credentials_message(error: &CredentialsError) -> String {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => {
            format!("no AWS credentials were found (looked in {DEFAULT_CHAIN})")
        }
        other => {
            let mut detail = String::new();
            let mut from_imds = false;
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                from_imds |= cause.is::<ImdsError>();
                let text = cause.to_string();
                if !detail.contains(&text) {
                    if !detail.is_empty() {
                        detail.push_str(": ");
                    }
                    detail.push_str(&text);
                }
                source = cause.source();
            }
            let detail = crate::ellipsize(&detail, MAX_PROVIDER_MESSAGE);
            if from_imds {
                // IMDS is the chain's last source, and the chain stops at the
                // first source that fails: every other one had nothing. Off
                // EC2, IMDS usually does not answer at all (and then this is
                // `CredentialsNotLoaded`); behind a proxy it may refuse.
                format!(
                    "no AWS credentials were found (looked in {DEFAULT_CHAIN}; IMDS answered: {detail})"
                )
            } else {
                format!(
                    "failed to load AWS credentials ({detail}); the sources are {DEFAULT_CHAIN}"
                )
            }
        }
    }
}

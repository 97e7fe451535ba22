//! How an AWS SDK error becomes a `CallError`: throttled, timed out, denied, not
//! found, rejected (a definite 4xx answer) or failed (5xx, network), with a short
//! readable message rather than the SDK's `Debug` output.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::{ErrorKind, ProvideErrorKind};

use super::assume_role::AssumeRoleFailure;
use super::metrics::{Api, Outcome};
use crate::policy::facts::LookupFailure;

/// Error codes the SDK itself classifies as throttling (`aws-runtime`'s
/// `THROTTLING_ERRORS`, which is not re-exported by the service crates).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes with which AWS refuses the credentials themselves (unknown
/// access key, expired session, wrong secret), across the JSON and query
/// protocols. Another set of credentials is the fix, not a retry.
const CREDENTIALS_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
];

/// Longest error message kept from AWS or the network stack.
const MAX_MESSAGE_LEN: usize = 300;

/// An AWS call's error, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    Timeout,
    Throttled,
    AccessDenied(String),
    /// No credentials could be found, or AWS refused them.
    Credentials(String),
    /// The API's own "not found" error code.
    NotFound(String),
    /// Any other client-side (4xx) error: a definite answer, not a transient one.
    Rejected {
        code: String,
        message: String,
    },
    /// Server errors, network errors, unreadable responses.
    Failed(String),
    /// The credentials of the role to assume for the repository's or key's
    /// account could not be had (`sts:AssumeRole` failed).
    AssumeRole(Box<AssumeRoleFailure>),
}

impl CallError {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::Timeout => Outcome::Timeout,
            Self::Throttled => Outcome::Throttled,
            Self::AccessDenied(_) => Outcome::AccessDenied,
            Self::Credentials(_) | Self::AssumeRole(_) => Outcome::Credentials,
            Self::NotFound(_) => Outcome::NotFound,
            Self::Rejected { .. } | Self::Failed(_) => Outcome::Error,
        }
    }

    /// AWS not answering, or our role lacking `ecr:DescribeRepositories`. Other
    /// refusals (not found, a key policy denying us) are facts about one
    /// repository or key, reported by the lookup itself.
    pub(crate) fn needs_an_operator(&self, api: Api) -> bool {
        match self {
            Self::Timeout | Self::Throttled | Self::Failed(_) | Self::Credentials(_) => true,
            Self::AccessDenied(_) => matches!(
                api,
                Api::DescribeRepositories
                    | Api::DescribePullThroughCacheRules
                    | Api::DescribeRepositoryCreationTemplates
            ),
            // The AssumeRole call that failed was logged by the provider, once.
            Self::NotFound(_) | Self::Rejected { .. } | Self::AssumeRole(_) => false,
        }
    }

    pub(crate) fn into_failure(self) -> LookupFailure {
        match self {
            Self::Timeout => LookupFailure::Timeout,
            Self::Throttled => LookupFailure::Throttled,
            Self::AccessDenied(m) => LookupFailure::AccessDenied(m),
            Self::Credentials(m) => LookupFailure::Credentials(m),
            Self::NotFound(m) | Self::Failed(m) => LookupFailure::Aws(m),
            Self::Rejected { code, message } => LookupFailure::Aws(format!("{code}: {message}")),
            Self::AssumeRole(failure) => LookupFailure::AssumeRole {
                role: failure.role.to_string(),
                reason: failure.reason(),
                refused: failure.refused(),
                external_id: failure.external_id,
            },
        }
    }
}

pub(crate) fn classify<E>(error: &SdkError<E, HttpResponse>, not_found_code: &str) -> CallError
where
    E: ProvideErrorMetadata + ProvideErrorKind + StdError + 'static,
{
    match error {
        SdkError::TimeoutError(_) => CallError::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => CallError::Timeout,
        SdkError::ServiceError(service_error) => {
            let err = service_error.err();
            let status = service_error.raw().status().as_u16();
            let code = ProvideErrorMetadata::code(err).unwrap_or_default();
            let message = truncate(ProvideErrorMetadata::message(err).unwrap_or_default());
            if status == 429
                || THROTTLING_CODES.contains(&code)
                || err.retryable_error_kind() == Some(ErrorKind::ThrottlingError)
            {
                CallError::Throttled
            } else if code == not_found_code {
                CallError::NotFound(message)
            } else if code == "AccessDeniedException" || code == "AccessDenied" {
                // The JSON protocols (ECR, KMS) say AccessDeniedException, the
                // query protocol (STS) AccessDenied.
                CallError::AccessDenied(message)
            } else if CREDENTIALS_CODES.contains(&code) {
                CallError::Credentials(format!(
                    "AWS refused ecr-guard's credentials: {code}: {message}"
                ))
            } else if (400..500).contains(&status) && !code.is_empty() {
                CallError::Rejected {
                    code: code.to_owned(),
                    message,
                }
            } else if code.is_empty() {
                CallError::Failed(format!("HTTP {status} from AWS"))
            } else {
                CallError::Failed(format!("{code} (HTTP {status}): {message}"))
            }
        }
        // A failed AssumeRole is wrapped in a CredentialsError, itself in the
        // SDK's dispatch error: look for the former first.
        other => match find_in_chain::<AssumeRoleFailure>(other) {
            Some(failure) => CallError::AssumeRole(Box::new(failure.clone())),
            None => match find_in_chain::<CredentialsError>(other) {
                Some(found) => CallError::Credentials(super::error::credentials_message(found)),
                None => CallError::Failed(truncate(&error_chain(other))),
            },
        },
    }
}

/// The first error of type `T` in `error`'s chain, `error` included (the SDK
/// wraps a credentials error in its dispatch error, for instance).
pub(crate) fn find_in_chain<'e, T: StdError + 'static>(
    error: &'e (dyn StdError + 'static),
) -> Option<&'e T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// "outer: cause: root cause", skipping causes whose text the outer error
/// already includes. Short and readable, unlike the SDK's `Debug` output.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn truncate(message: &str) -> String {
    crate::ellipsize(message, MAX_MESSAGE_LEN)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    type EcrError = SdkError<DescribeRepositoriesError, HttpResponse>;

    fn service_error(status: u16, code: &str, message: &str) -> EcrError {
        let err = DescribeRepositoriesError::generic(
            ErrorMetadata::builder().code(code).message(message).build(),
        );
        let raw = HttpResponse::new(
            StatusCode::try_from(status).expect("valid status"),
            SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    fn classified(error: EcrError) -> CallError {
        classify(&error, "RepositoryNotFoundException")
    }

    #[test]
    fn throttling_is_recognised_by_code_and_by_http_429() {
        for code in [
            "ThrottlingException",
            "ThrottledException",
            "TooManyRequestsException",
            "LimitExceededException",
        ] {
            assert_eq!(
                classified(service_error(400, code, "slow down")),
                CallError::Throttled,
                "{code}"
            );
        }
        assert_eq!(
            classified(service_error(429, "Whatever", "")),
            CallError::Throttled
        );
    }

    #[test]
    fn not_found_and_access_denied_keep_the_aws_message() {
        assert_eq!(
            classified(service_error(400, "RepositoryNotFoundException", "no repo")),
            CallError::NotFound("no repo".into())
        );
        assert_eq!(
            classified(service_error(
                400,
                "AccessDeniedException",
                "not authorized"
            )),
            CallError::AccessDenied("not authorized".into())
        );
    }

    #[test]
    fn sts_access_denied_is_access_denied() {
        // The query protocol's code (HTTP 403), not the JSON protocols'.
        assert_eq!(
            classified(service_error(403, "AccessDenied", "not authorized")),
            CallError::AccessDenied("not authorized".into())
        );
    }

    #[test]
    fn a_failed_assume_role_inside_a_credentials_error_is_found() {
        let failure = AssumeRoleFailure {
            role: "arn:aws:iam::111111111111:role/r".into(),
            external_id: false,
            cause: CallError::Throttled,
        };
        let dispatch = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::provider_error(failure.clone())),
            None,
        ));
        let CallError::AssumeRole(found) = classified(dispatch) else {
            panic!("expected an AssumeRole failure");
        };
        assert_eq!(*found, failure);
        let lookup = CallError::AssumeRole(found).into_failure();
        assert_eq!(
            lookup.to_string(),
            "could not assume role arn:aws:iam::111111111111:role/r: STS throttled AssumeRole"
        );
        assert_eq!(lookup.kind(), "assume_role");
    }

    #[test]
    fn other_client_errors_are_rejections_and_server_errors_failures() {
        assert_eq!(
            classified(service_error(400, "InvalidParameterException", "bad name")),
            CallError::Rejected {
                code: "InvalidParameterException".into(),
                message: "bad name".into()
            }
        );
        assert_eq!(
            classified(service_error(500, "ServerException", "oops")),
            CallError::Failed("ServerException (HTTP 500): oops".into())
        );
        assert_eq!(
            classified(service_error(502, "", "")),
            CallError::Failed("HTTP 502 from AWS".into())
        );
    }

    #[test]
    fn timeouts_from_the_sdk_or_the_connector_are_timeouts() {
        assert_eq!(
            classified(SdkError::timeout_error("operation timeout")),
            CallError::Timeout
        );
        let connect = ConnectorError::timeout("connect timeout".into());
        assert_eq!(
            classified(SdkError::dispatch_failure(connect)),
            CallError::Timeout
        );
    }

    #[test]
    fn network_errors_read_as_one_line_without_debug_output() {
        let reset = ConnectorError::io(
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )
            .into(),
        );
        let CallError::Failed(message) = classified(SdkError::dispatch_failure(reset)) else {
            panic!("expected a failure");
        };
        assert_eq!(
            message,
            "dispatch failure: io error: connection reset by peer"
        );
    }

    #[test]
    fn truncate_keeps_short_messages_and_cuts_long_ones_on_a_char_boundary() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(MAX_MESSAGE_LEN + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_LEN + 1);
        assert!(cut.ends_with('…'));
    }
}

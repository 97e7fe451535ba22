//! The webhook port's routes: `POST /validate`, and an answer for everything else.
//!
//! A readable AdmissionReview always gets HTTP 200 and a verdict. Every other
//! answer of this port is an HTTP error whose body is still an AdmissionReview
//! (`response.allowed: false`, `response.status` a Kubernetes Status with the code,
//! a reason and a message saying what was wrong), so whoever reads it — the API
//! server's log, curl, a test — reads the same JSON:
//!
//! | status | reason | when |
//! |---|---|---|
//! | 400 | `BadRequest` | the body is not a v1 AdmissionReview, or could not be read to its end |
//! | 404 | `NotFound` | any path but `/validate` |
//! | 405 | `MethodNotAllowed` | `/validate` with a method other than POST (`Allow: POST`) |
//! | 413 | `RequestEntityTooLarge` | a body over `--max-body-bytes` |
//!
//! Each is logged once (warn) and counted in `ecr_guard_webhook_refused_requests_total`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Version, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Instant;
use tracing::warn;

use super::deadline;
use crate::admission::{Admission, BadReview, ReviewAnswer};
use crate::judging::within_deadline;
use crate::metrics::{RefusalLabels, WebhookMetrics};

struct WebhookState {
    admission: Arc<Admission>,
    max_body_bytes: usize,
    metrics: WebhookMetrics,
}

/// The webhook endpoint: `POST /validate` answered by `admission`, bodies up to
/// `max_body_bytes`, refusals counted in `metrics`. A `timeout` query parameter (Go
/// duration, as the API server sends it) shortens the review's deadline: see
/// [`deadline::caller_deadline`].
pub fn webhook_router(
    admission: Arc<Admission>,
    max_body_bytes: usize,
    metrics: WebhookMetrics,
) -> Router {
    let state = Arc::new(WebhookState {
        admission,
        max_body_bytes,
        metrics,
    });
    Router::new()
        .route("/validate", post(validate).fallback(method_not_allowed))
        .fallback(no_such_path)
        .with_state(state)
}

/// Why a request got an HTTP error instead of a verdict.
#[derive(Debug)]
enum Refusal {
    /// The body is (`declared`: says it is) larger than the limit.
    TooLarge {
        limit: usize,
        declared: Option<u64>,
    },
    /// The body broke off or failed to arrive.
    Unreadable(String),
    NotAReview(BadReview),
    NoSuchPath(String),
    MethodNotAllowed(Method),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unreadable(_) | Self::NotAReview(_) => StatusCode::BAD_REQUEST,
            Self::NoSuchPath(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The status code, as the metric label.
    fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "413",
            Self::Unreadable(_) | Self::NotAReview(_) => "400",
            Self::NoSuchPath(_) => "404",
            Self::MethodNotAllowed(_) => "405",
        }
    }

    /// The metric label.
    fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "body_too_large",
            Self::Unreadable(_) => "body_unreadable",
            Self::NotAReview(_) => "not_a_review",
            Self::NoSuchPath(_) => "no_such_path",
            Self::MethodNotAllowed(_) => "method_not_allowed",
        }
    }

    /// Kubernetes' StatusReason for the status code.
    fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "RequestEntityTooLarge",
            Self::Unreadable(_) | Self::NotAReview(_) => "BadRequest",
            Self::NoSuchPath(_) => "NotFound",
            Self::MethodNotAllowed(_) => "MethodNotAllowed",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::TooLarge {
                limit,
                declared: Some(size),
            } => format!(
                "request body of {size} bytes is larger than the {limit} bytes ecr-guard accepts (--max-body-bytes)"
            ),
            Self::TooLarge {
                limit,
                declared: None,
            } => format!(
                "request body is larger than the {limit} bytes ecr-guard accepts (--max-body-bytes)"
            ),
            Self::Unreadable(error) => format!("failed to read the request body: {error}"),
            Self::NotAReview(bad) => bad.to_string(),
            Self::NoSuchPath(path) => {
                format!("no such path {path:?}: ecr-guard answers POST /validate")
            }
            Self::MethodNotAllowed(method) => {
                format!("method {method} is not allowed on /validate: use POST")
            }
        }
    }
}

async fn validate(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    // The API server's clock started before ours: count from the first we know.
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let deadline = match deadline::caller_deadline(parts.uri.query(), arrived) {
        Ok(deadline) => deadline,
        Err(bad) => {
            warn!(error = %bad, "ignoring the timeout parameter: the review gets --lookup-timeout");
            None
        }
    };
    let body = match read_body(body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(refusal) => return state.refuse(&parts, &refusal),
    };
    let review = state.admission.review(&body);
    let outcome = match deadline {
        Some(deadline) => within_deadline(deadline, review).await,
        None => review.await,
    };
    match outcome {
        Ok(outcome) => axum::Json(outcome.review).into_response(),
        Err(bad) => state.refuse(&parts, &Refusal::NotAReview(bad)),
    }
}

/// The whole body, or why not. A body that says it is too large is refused
/// before any of it is read (a client waiting on `Expect: 100-continue` then sends
/// none of it); one that turns out too large is not read further.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let declared = HttpBody::size_hint(&body).lower();
    if usize::try_from(declared).map_or(true, |size| size > limit) {
        return Err(Refusal::TooLarge {
            limit,
            declared: Some(declared),
        });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Refusal::TooLarge {
            limit,
            declared: None,
        }),
        Err(error) => Err(Refusal::Unreadable(error.to_string())),
    }
}

async fn no_such_path(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let refusal = Refusal::NoSuchPath(parts.uri.path().to_string());
    state.refuse(&parts, &refusal)
}

async fn method_not_allowed(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let refusal = Refusal::MethodNotAllowed(parts.method.clone());
    let mut response = state.refuse(&parts, &refusal);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

impl WebhookState {
    /// Logs, counts and answers one refusal.
    fn refuse(&self, request: &Parts, refusal: &Refusal) -> Response {
        let status = refusal.status();
        let message = refusal.message();
        warn!(
            status = status.as_u16(),
            reason = refusal.label(),
            method = %request.method,
            path = request.uri.path(),
            %message,
            "refused a request to the webhook port"
        );
        self.metrics
            .refused
            .get_or_create(&RefusalLabels {
                code: refusal.code(),
                reason: refusal.label(),
            })
            .inc();
        let answer = ReviewAnswer::denied("", message, status.as_u16(), refusal.reason());
        let mut response = (status, axum::Json(answer)).into_response();
        // The rest of a body over the limit is never read, so this connection
        // cannot carry another request; HTTP/1 says so (HTTP/2 resets the stream).
        if matches!(refusal, Refusal::TooLarge { .. }) && request.version < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

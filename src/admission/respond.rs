//! The answer the API server reads: an AdmissionReview (admission.k8s.io/v1)
//! carrying one response, in the exact JSON shape kube's `AdmissionResponse`
//! gave it (kube's type is built only from its own request type, or as an
//! "invalid" answer to be made over).

use std::collections::BTreeMap;

use serde::Serialize;

use super::decode::API_VERSION;
use crate::policy::{Mode, Verdict, Violation};

/// Audit annotation listing DryRun violations. The API server prefixes it with the
/// webhook's name (`validate.ecrguard.io/dry-run-violations`) and accepts only keys
/// without a `/` of their own.
pub const DRY_RUN_ANNOTATION: &str = "dry-run-violations";

/// `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": …}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewAnswer {
    api_version: &'static str,
    kind: &'static str,
    pub response: Answer,
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// The request's uid.
    pub uid: String,
    pub allowed: bool,
    /// Empty (`{}`) when allowed.
    pub status: AnswerStatus,
    /// Recorded in the API server's audit log (key prefixed with the webhook's name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// Shown to the client (kubectl prints them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// The Kubernetes `Status` of a denial: `Failure`, the HTTP-like code, the
/// message the user reads and a StatusReason.
#[derive(Debug, Default, Serialize)]
pub struct AnswerStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl ReviewAnswer {
    /// Admits the request `uid`.
    pub fn allowed(uid: &str) -> Self {
        Self::of(Answer {
            uid: uid.to_string(),
            allowed: true,
            status: AnswerStatus::default(),
            audit_annotations: BTreeMap::new(),
            warnings: None,
        })
    }

    /// Refuses the request `uid` with `message`, an HTTP-like `code` (403, 400)
    /// and a Kubernetes StatusReason (`Forbidden`, `BadRequest`).
    pub fn denied(uid: &str, message: String, code: u16, reason: &'static str) -> Self {
        Self::of(Answer {
            uid: uid.to_string(),
            allowed: false,
            status: AnswerStatus {
                status: Some("Failure"),
                code,
                message,
                reason,
            },
            audit_annotations: BTreeMap::new(),
            warnings: None,
        })
    }

    /// The answer for `verdict` on the request `uid`: denied (403) or allowed,
    /// with its warnings and the dry-run annotation.
    pub fn for_verdict(uid: &str, verdict: &Verdict) -> Self {
        let mut review = match verdict.denial_message() {
            Some(message) => Self::denied(uid, message, 403, "Forbidden"),
            None => Self::allowed(uid),
        };
        {
            let answer = &mut review.response;
            let warnings = verdict.warnings();
            if !warnings.is_empty() {
                answer.warnings = Some(warnings);
            }
            let dry_run: Vec<String> = verdict
                .in_mode(Mode::DryRun)
                .map(Violation::message)
                .collect();
            if !dry_run.is_empty() {
                let value = serde_json::to_string(&dry_run).unwrap_or_default();
                answer
                    .audit_annotations
                    .insert(DRY_RUN_ANNOTATION.to_string(), value);
            }
        }
        review
    }

    fn of(answer: Answer) -> Self {
        Self {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: answer,
        }
    }

    /// What the user reads of a denial (empty when allowed).
    pub fn message(&self) -> &str {
        &self.response.status.message
    }
}

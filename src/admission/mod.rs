//! AdmissionReview → the images of the object under review → verdict → answer.
//!
//! - `decode`: the body → [`Review`], in one pass (pod specs read per kind);
//! - `review`: [`Admission::review`], decode → decide → respond → observe;
//! - `respond`: the AdmissionReview sent back ([`ReviewAnswer`]).

mod decode;
mod respond;
mod review;

pub use decode::{BadReview, GroupKind, Review, ReviewedObject, decode};
pub use respond::{Answer, AnswerStatus, DRY_RUN_ANNOTATION, ReviewAnswer};
pub use review::{Admission, AdmissionOutcome, RequestContext, ViolationSink};

//! AdmissionReview → pod specs of every supported kind → verdict → AdmissionResponse.

mod object;
mod request;
mod review;

pub use object::{KeepRaw, ObjectSpec, OnePass, ReviewedObject};
pub use request::{GroupKind, Request};
pub use review::{
    Admission, AdmissionOutcome, BadReview, DRY_RUN_ANNOTATION, RequestContext, ViolationSink,
    decode,
};

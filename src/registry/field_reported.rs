//! Whether an AWS JSON answer carried a field at all. The SDK gives some fields
//! a default when the answer leaves them out (`GetKeyRotationStatus`'s
//! `KeyRotationEnabled` is a plain `bool`, absent read as `false`), and a fact
//! that was not reported must be unknown, not that default.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// An interceptor for one call that records whether the last attempt's answer
/// (a JSON object, as the AWS JSON protocols send) has `field` at its top level
/// with a non-null value. Read [`FieldReported::seen`] after the call.
#[derive(Clone, Debug)]
pub(crate) struct FieldReported {
    field: &'static str,
    seen: Arc<AtomicBool>,
}

impl FieldReported {
    pub(crate) fn new(field: &'static str) -> Self {
        Self {
            field,
            seen: Arc::default(),
        }
    }

    /// Whether the answer named the field (false before any answer, or for an
    /// answer that is not a JSON object).
    pub(crate) fn seen(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
    }

    fn check(&self, body: Option<&[u8]>) {
        let seen = body
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok())
            .is_some_and(|answer| answer.get(self.field).is_some_and(|v| !v.is_null()));
        self.seen.store(seen, Ordering::Relaxed);
    }
}

impl Intercept for FieldReported {
    fn name(&self) -> &'static str {
        "FieldReported"
    }

    /// After deserialisation the body of a non-streaming answer is in memory.
    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.check(context.response().body().bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_seen_only_when_the_answer_names_it_with_a_value() {
        let reported = FieldReported::new("KeyRotationEnabled");
        for (body, seen) in [
            (
                Some(&br#"{"KeyRotationEnabled":false,"KeyId":"k"}"#[..]),
                true,
            ),
            (Some(&br#"{"KeyRotationEnabled":true}"#[..]), true),
            (Some(&br#"{"KeyId":"k"}"#[..]), false),
            (Some(&br#"{"KeyRotationEnabled":null}"#[..]), false),
            (
                Some(&br#"{"Other":{"KeyRotationEnabled":true}}"#[..]),
                false,
            ),
            (Some(&b"not json"[..]), false),
            (None, false),
        ] {
            reported.check(body);
            assert_eq!(reported.seen(), seen, "{body:?}");
        }
    }
}

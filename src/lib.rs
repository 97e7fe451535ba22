//! ecr-guard: a validating admission webhook that checks how the ECR repositories
//! behind a workload's images are encrypted.
#![forbid(unsafe_code)]
// A webhook in front of the API server must answer, not abort: no unwrap,
// expect or panic in the product (tests may: a failed assertion is their job).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admission;
pub mod audit;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod image;
pub mod inventory;
pub mod judging;
pub mod k8s_names;
pub mod metrics;
pub mod policy;
pub mod registry;
pub mod run;
pub mod scan;
pub mod server;
pub mod tls;
pub mod workload;

/// `text` cut after `max_chars` characters (on a char boundary) with `…` added;
/// unchanged when it is not longer. For messages that repeat what a client
/// sent or AWS answered.
pub(crate) fn ellipsize(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::ellipsize;

    #[test]
    fn cuts_long_text_on_a_char_boundary_and_keeps_short_text() {
        assert_eq!(ellipsize("short", 5), "short");
        assert_eq!(ellipsize("äöüäöü", 3), "äöü…");
    }
}

//! The outcome of evaluation and how it reads. Denial text is UI: one line per
//! violation naming container, image, repository, what it has, what is required
//! and the policy; then one remediation hint per distinct problem.

use super::crd::Mode;
use super::hint::Hint;
use crate::policy::facts::{KeyArn, KeyArnKind};

/// Longest warning we aim for; kubectl prints each on its own line.
const WARNING_WIDTH: usize = 120;

/// Why an image failed a policy. Low-cardinality: used as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    EncryptionType,
    CustomerManagedKeyRequired,
    KeyNotAllowed,
    /// GetKeyRotationStatus answered that rotation is off.
    RotationDisabled,
    /// Whether the key rotates was not learnt (GetKeyRotationStatus refused or
    /// unanswerable): never read as "disabled".
    RotationUnknown,
    KeyUnusable,
    /// KMS described the key without its state: never read as "unusable".
    KeyStateUnknown,
    /// The key could not be described at all.
    KeyUnknown,
    RepositoryNotFound,
    NonEcrImage,
    LookupFailed,
    InvalidImage,
    InvalidPolicy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EncryptionType => "encryption_type",
            Self::CustomerManagedKeyRequired => "customer_managed_key_required",
            Self::KeyNotAllowed => "key_not_allowed",
            Self::RotationDisabled => "rotation_disabled",
            Self::RotationUnknown => "rotation_unknown",
            Self::KeyUnusable => "key_unusable",
            Self::KeyStateUnknown => "key_state_unknown",
            Self::KeyUnknown => "key_unknown",
            Self::RepositoryNotFound => "repository_not_found",
            Self::NonEcrImage => "non_ecr_image",
            Self::LookupFailed => "lookup_failed",
            Self::InvalidImage => "invalid_image",
            Self::InvalidPolicy => "invalid_policy",
        }
    }
}

/// What is wrong and what the policy wants, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// e.g. `repository payments/api is encrypted with AES256`.
    pub problem: String,
    /// e.g. `policy regulated-require-cmk allows only KMS, KMS_DSSE`.
    pub requirement: String,
}

/// One image failing one policy (or one invalid policy, with no image use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub policy: String,
    /// After the global dry-run switch.
    pub mode: Mode,
    pub reason: Reason,
    /// (`container "api" image …`, `container "api"`), or `None` for an invalid policy.
    pub image_use: Option<(String, String)>,
    pub finding: Finding,
    pub hint: Option<Hint>,
}

impl Violation {
    /// The full line: `container "api" image IMG: PROBLEM; REQUIREMENT`.
    pub fn message(&self) -> String {
        match &self.image_use {
            Some((long, _)) => format!(
                "{long}: {}; {}",
                self.finding.problem, self.finding.requirement
            ),
            None => format!("{}; {}", self.finding.problem, self.finding.requirement),
        }
    }

    /// A line for a kubectl warning: without the image, key ARNs shortened to
    /// `key/ID`, cut to ~120 characters. The full text is in the log line.
    pub fn warning(&self) -> String {
        let text = match &self.image_use {
            Some((_, short)) => format!(
                "{short}: {}; {}",
                self.finding.problem, self.finding.requirement
            ),
            None => format!("{}; {}", self.finding.problem, self.finding.requirement),
        };
        truncate(shorten_key_arns(&text), WARNING_WIDTH)
    }
}

/// `arn:aws:kms:us-east-1:123456789012:key/1a2b3c4d-…` → `1a2b3c4d…`: enough to
/// recognise the key in a 120-character warning; the full ARN is in the log line.
/// Alias ARNs and other words are kept as they are.
fn shorten_key_arns(text: &str) -> String {
    // Written into one String: a String per word cost a warned review ~25
    // allocations per warning.
    let mut out = String::with_capacity(text.len());
    for (n, word) in text.split(' ').enumerate() {
        if n > 0 {
            out.push(' ');
        }
        match leading_key_arn(word) {
            Some((key, tail)) => {
                let id = key.id();
                match id.char_indices().nth(8) {
                    Some((cut, _)) => {
                        out.push_str(&id[..cut]);
                        out.push('…');
                    }
                    None => out.push_str(id),
                }
                out.push_str(tail);
            }
            None => out.push_str(word),
        }
    }
    out
}

/// A word that is a key ARN followed by punctuation (`…key/ID,` or `…key/ID;`):
/// the ARN and the punctuation. Key ids are letters, digits and `-`.
fn leading_key_arn(word: &str) -> Option<(KeyArn<'_>, &str)> {
    if !word.starts_with("arn:") {
        return None; // the common case, without parsing
    }
    let end = word.rfind(|c: char| c.is_ascii_alphanumeric() || c == '-')? + 1;
    let (arn, tail) = word.split_at(end);
    let key = KeyArn::parse(arn).ok()?;
    (key.kind() == KeyArnKind::Key).then_some((key, tail))
}

/// At most `width` characters in all, the last one `…` when cut.
fn truncate(text: String, width: usize) -> String {
    if text.chars().count() <= width {
        return text;
    }
    crate::ellipsize(&text, width - 1)
}

/// Everything evaluation found for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    /// Things worth telling the user that no policy denies (unusable keys, images
    /// admitted unverified by `onLookupFailure: Allow`). Sent as warnings.
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn in_mode(&self, mode: Mode) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.mode == mode)
    }

    pub fn is_denied(&self) -> bool {
        self.in_mode(Mode::Enforce).next().is_some()
    }

    /// The denial text for the user, or `None` when nothing enforced failed.
    pub fn denial_message(&self) -> Option<String> {
        let enforced: Vec<&Violation> = self.in_mode(Mode::Enforce).collect();
        if enforced.is_empty() {
            return None;
        }
        let mut lines: Vec<String> = enforced
            .iter()
            .take(MAX_LISTED)
            .map(|v| v.message())
            .collect();
        if enforced.len() > MAX_LISTED {
            lines.push(more(enforced.len() - MAX_LISTED));
        }
        lines.extend(hints(enforced.iter().copied()).map(|h| format!("hint: {h}")));
        Some(lines.join("\n"))
    }

    /// Warn violations and notes, each ≤120 characters where possible.
    pub fn warnings(&self) -> Vec<String> {
        let all = self.in_mode(Mode::Warn).map(|v| v.warning()).chain(
            self.notes
                .iter()
                .map(|n| truncate(shorten_key_arns(n), WARNING_WIDTH)),
        );
        let mut warnings: Vec<String> = all.collect();
        if warnings.len() > MAX_LISTED {
            let hidden = warnings.len() - MAX_LISTED;
            warnings.truncate(MAX_LISTED);
            warnings.push(more(hidden));
        }
        warnings
    }
}

/// How many violations a denial message or the warnings list one by one: a
/// workload with thousands of containers must not make a message of megabytes.
/// Metrics still count every violation.
const MAX_LISTED: usize = 10;

fn more(hidden: usize) -> String {
    format!("… and {hidden} more like these")
}

/// Distinct hints of these violations, in first-seen order.
pub fn hints<'v>(
    violations: impl Iterator<Item = &'v Violation>,
) -> impl Iterator<Item = &'v Hint> {
    let mut seen: Vec<&Hint> = Vec::new();
    for hint in violations.filter_map(|v| v.hint.as_ref()) {
        if !seen.contains(&hint) {
            seen.push(hint);
        }
    }
    seen.into_iter()
}

#[cfg(test)]
mod tests {
    use super::shorten_key_arns;

    #[test]
    fn key_arns_are_shortened_to_their_first_eight_characters() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
        assert_eq!(
            shorten_key_arns(&format!("with KMS key {arn}; policy p, and {arn},  twice")),
            "with KMS key 1a2b3c4d…; policy p, and 1a2b3c4d…,  twice"
        );
        // An id of eight characters or fewer is kept whole; other ARNs as they are.
        assert_eq!(
            shorten_key_arns("arn:aws:kms:r:1:key/abc; arn:aws:kms:r:1:alias/x"),
            "abc; arn:aws:kms:r:1:alias/x"
        );
    }

    #[test]
    fn key_arns_of_other_partitions_are_shortened_and_malformed_ones_kept() {
        assert_eq!(
            shorten_key_arns("key arn:aws-cn:kms:cn-north-1:1:key/mrk-1234abcd5678, twice"),
            "key mrk-1234…, twice"
        );
        for kept in [
            "arn:aws:s3:r:1:key/1234567890",
            "arn:aws:kms::1:key/1234567890",
        ] {
            assert_eq!(shorten_key_arns(kept), kept);
        }
    }
}

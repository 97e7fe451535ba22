//! How the renderers spell one fact of the report, so the table, CSV,
//! markdown and HTML say it the same way.

use std::collections::BTreeMap;

use crate::policy::facts::{KeyArn, KeyArnKind};
use crate::scan::report::{
    Encryption, FindingCode, KeyManagerValue, KeyRotationValue, PolicyVerdict, ScanReport,
    ScannedRepository,
};

/// The repositories of one registry (account, region): the report keeps them
/// sorted by account, region, name, so each registry is one run.
pub(super) fn by_registry(
    repositories: &[ScannedRepository],
) -> impl Iterator<Item = &[ScannedRepository]> {
    repositories.chunk_by(|a, b| a.account == b.account && a.region == b.region)
}

/// How many findings of each code the repositories have (pull-through rules
/// not included, as in the summary).
pub(super) fn findings_by_code(report: &ScanReport) -> BTreeMap<FindingCode, usize> {
    let mut counts = BTreeMap::new();
    for f in report.repositories.iter().flat_map(|r| &r.findings) {
        *counts.entry(f.code).or_default() += 1;
    }
    counts
}

/// `AES256 3, KMS 8, KMS_DSSE 1`: a count per key, in the map's order.
pub(super) fn counts_text<'k>(counts: impl IntoIterator<Item = (&'k str, usize)>) -> String {
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(key, n)| format!("{key} {n}"))
        .collect();
    parts.join(", ")
}

/// `summary.byVerdict` in [`VerdictClass::ALL`] order with people's labels
/// (`dry-run`); a key the report lacks counts 0.
pub(super) fn verdict_counts(report: &ScanReport) -> Vec<(&'static str, usize)> {
    VerdictClass::ALL
        .iter()
        .map(|c| {
            let n = report.summary.by_verdict.get(c.key()).copied().unwrap_or(0);
            (c.label(), n)
        })
        .collect()
}

/// A repository's verdict over every policy judged, as [`Summary::by_verdict`]
/// counts it: the strongest mode that refuses.
///
/// [`Summary::by_verdict`]: crate::scan::report::Summary::by_verdict
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VerdictClass {
    Denied,
    Warned,
    DryRun,
    Allowed,
}

impl VerdictClass {
    /// In the order the charts and summaries list them: worst first.
    pub(super) const ALL: [Self; 4] = [Self::Denied, Self::Warned, Self::DryRun, Self::Allowed];

    pub(super) fn of(verdicts: &[PolicyVerdict]) -> Self {
        let refused = |mode: &str| verdicts.iter().any(|v| !v.allowed && v.mode == mode);
        if refused("Enforce") {
            Self::Denied
        } else if refused("Warn") {
            Self::Warned
        } else if refused("DryRun") {
            Self::DryRun
        } else {
            Self::Allowed
        }
    }

    /// The key of `summary.byVerdict` (`dryRun` camelCase, as in the JSON).
    pub(super) fn key(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::DryRun => "dryRun",
            Self::Allowed => "allowed",
        }
    }

    /// For people: `dry-run` as `check` prints it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::DryRun => "dry-run",
            Self::Allowed => "allowed",
        }
    }

    /// The mode whose refusals give this verdict (`None` for allowed).
    fn mode(self) -> Option<&'static str> {
        match self {
            Self::Denied => Some("Enforce"),
            Self::Warned => Some("Warn"),
            Self::DryRun => Some("DryRun"),
            Self::Allowed => None,
        }
    }
}

/// `denied by p1,p2` (the policies of the deciding mode that refuse),
/// `warned by p3`, `allowed`, or `no policy` when none judged the repository.
pub(super) fn verdict_text(verdicts: &[PolicyVerdict]) -> String {
    let class = VerdictClass::of(verdicts);
    match class.mode() {
        None if verdicts.is_empty() => "no policy".to_owned(),
        None => class.label().to_owned(),
        Some(mode) => {
            let by: Vec<&str> = verdicts
                .iter()
                .filter(|v| !v.allowed && v.mode == mode)
                .map(|v| v.policy.as_str())
                .collect();
            format!("{} by {}", class.label(), by.join(","))
        }
    }
}

/// `p1 (Enforce): encryption_type; p2 (Warn): allowed` — every policy's
/// verdict in one line.
pub(super) fn verdicts_detail(verdicts: &[PolicyVerdict]) -> String {
    let parts: Vec<String> = verdicts
        .iter()
        .map(|v| {
            let outcome = if v.allowed {
                "allowed".to_owned()
            } else {
                v.reasons.join(",")
            };
            format!("{} ({}): {outcome}", v.policy, v.mode)
        })
        .collect();
    parts.join("; ")
}

/// The key as a person recognises it in a narrow column: a key ARN's id cut
/// to eight characters as denial warnings show it (`1a2b3c4d…`), an alias ARN
/// as `alias/NAME`, anything else (the `aws/ecr` label) as written; `-` for none.
pub(super) fn short_key(kms_key: Option<&str>) -> String {
    let Some(key) = kms_key else {
        return "-".to_owned();
    };
    match KeyArn::parse(key) {
        Ok(arn) if arn.kind() == KeyArnKind::Key => fit(arn.id(), 9),
        Ok(arn) => format!("alias/{}", arn.id()),
        Err(_) => key.to_owned(),
    }
}

/// `AWS`, `CUSTOMER`, `UNKNOWN`, as in the JSON.
pub(super) fn manager(value: KeyManagerValue) -> &'static str {
    match value {
        KeyManagerValue::Aws => "AWS",
        KeyManagerValue::Customer => "CUSTOMER",
        KeyManagerValue::Unknown => "UNKNOWN",
    }
}

/// `Enabled`, `Disabled`, `AwsManaged`, `Unknown`, as in the JSON.
pub(super) fn rotation(value: KeyRotationValue) -> &'static str {
    match value {
        KeyRotationValue::Enabled => "Enabled",
        KeyRotationValue::Disabled => "Disabled",
        KeyRotationValue::AwsManaged => "AwsManaged",
        KeyRotationValue::Unknown => "Unknown",
    }
}

/// Manager, state and rotation in at most 30 characters: `CMK Enabled rot on`,
/// `AWS Enabled` (AWS-managed keys rotate yearly), `CMK PendingDeletion
/// 2026-12-07` (the date matters more than rotation then), `? Unknown rot ?`;
/// `-` for AES256.
pub(super) fn key_facts(e: &Encryption) -> String {
    let Some(key_manager) = e.key_manager else {
        return "-".to_owned();
    };
    let who = match key_manager {
        KeyManagerValue::Aws => "AWS",
        KeyManagerValue::Customer => "CMK",
        KeyManagerValue::Unknown => "?",
    };
    let state = e.key_state.as_deref().unwrap_or("?");
    let mut out = format!("{who} {state}");
    if let Some(date) = &e.key_deletion_date {
        out.push(' ');
        out.push_str(date.get(..10).unwrap_or(date));
    } else if key_manager != KeyManagerValue::Aws {
        out.push_str(match e.key_rotation {
            Some(KeyRotationValue::Enabled) => " rot on",
            Some(KeyRotationValue::Disabled) => " rot off",
            Some(KeyRotationValue::AwsManaged) => "",
            Some(KeyRotationValue::Unknown) | None => " rot ?",
        });
    }
    out
}

/// The finding code as the JSON spells it (`key-rotation-disabled`).
pub(super) fn code(code: FindingCode) -> &'static str {
    match code {
        FindingCode::Aes256WhereKmsRequired => "aes256-where-kms-required",
        FindingCode::KeyRotationDisabled => "key-rotation-disabled",
        FindingCode::KeyDisabled => "key-disabled",
        FindingCode::KeyPendingDeletion => "key-pending-deletion",
        FindingCode::KeyUnusable => "key-unusable",
        FindingCode::KeyNotDescribed => "key-not-described",
        FindingCode::KeyRotationUnknown => "key-rotation-unknown",
        FindingCode::EncryptionTypeUnknown => "encryption-type-unknown",
        FindingCode::PullThroughTemplateNonCompliant => "pull-through-template-non-compliant",
    }
}

/// `1 repository`, `2 repositories`.
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2,500,000`: digits grouped by three, as the assumptions write counts.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// US dollars with cents: `$12.34`.
pub(super) fn usd(amount: f64) -> String {
    format!("${amount:.2}")
}

/// `text` in at most `width` characters, the last one `…` when cut.
pub(super) fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    crate::ellipsize(text, width.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::render::sample;

    #[test]
    fn codes_are_spelt_as_the_json_spells_them() {
        for c in [
            FindingCode::Aes256WhereKmsRequired,
            FindingCode::KeyRotationDisabled,
            FindingCode::KeyDisabled,
            FindingCode::KeyPendingDeletion,
            FindingCode::KeyUnusable,
            FindingCode::KeyNotDescribed,
            FindingCode::KeyRotationUnknown,
            FindingCode::EncryptionTypeUnknown,
            FindingCode::PullThroughTemplateNonCompliant,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), code(c));
        }
        for m in [
            KeyManagerValue::Aws,
            KeyManagerValue::Customer,
            KeyManagerValue::Unknown,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), manager(m));
        }
        for r in [
            KeyRotationValue::Enabled,
            KeyRotationValue::Disabled,
            KeyRotationValue::AwsManaged,
            KeyRotationValue::Unknown,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), rotation(r));
        }
    }

    #[test]
    fn verdict_classes_agree_with_the_summary() {
        let report = sample::report();
        for class in VerdictClass::ALL {
            let n = report
                .repositories
                .iter()
                .filter(|r| VerdictClass::of(&r.verdicts) == class)
                .count();
            assert_eq!(report.summary.by_verdict[class.key()], n, "{class:?}");
        }
    }

    #[test]
    fn keys_and_their_facts_are_short() {
        assert_eq!(short_key(Some(sample::SHARED_KEY)), "1a2b3c4d…");
        assert_eq!(short_key(Some("aws/ecr")), "aws/ecr");
        assert_eq!(
            short_key(Some("arn:aws:kms:eu-west-1:1:alias/team")),
            "alias/team"
        );
        assert_eq!(short_key(None), "-");
        let facts: Vec<String> = sample::report()
            .repositories
            .iter()
            .map(|r| key_facts(&r.encryption))
            .collect();
        for expected in [
            "AWS Enabled",
            "CMK Enabled rot off",
            "CMK Enabled rot on",
            "CMK Disabled rot on",
            "-",
            "CMK PendingDeletion 2026-12-07",
            "? Unknown rot ?",
        ] {
            assert!(facts.iter().any(|f| f == expected), "{expected}: {facts:?}");
        }
        assert!(facts.iter().all(|f| f.chars().count() <= 30));
    }

    #[test]
    fn verdicts_name_the_refusing_policies_of_the_deciding_mode() {
        let texts: Vec<String> = sample::report()
            .repositories
            .iter()
            .map(|r| verdict_text(&r.verdicts))
            .collect();
        assert_eq!(
            texts,
            [
                "warned by require-cmk-rotation",
                "warned by require-cmk-rotation",
                "allowed",
                "allowed",
                "allowed",
                "denied by require-kms",
                "denied by require-kms",
                "denied by require-kms",
                "denied by require-kms",
                "allowed",
                "dry-run by audit-only",
                "no policy",
            ]
        );
        assert_eq!(usd(12.5), "$12.50");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(thousands(2_500_000), "2,500,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(0), "0");
    }
}

//! `scan -o table` (the default): one line per repository grouped by
//! registry, then the pull-through rules, the summary, the cost and the
//! errors; no line is wider than [`WIDTH`] characters. Lowercase labels and
//! upper-case headings, as `check` prints.

use std::fmt::Write as _;

use super::cells::{self, VerdictClass};
use crate::scan::report::{ScanReport, ScannedRepository};

/// The widest line, in characters: a terminal of 100 columns shows the table
/// without wrapping.
pub(super) const WIDTH: usize = 100;

const HEADERS: [&str; 6] = [
    "REPOSITORY",
    "TYPE",
    "KEY",
    "KEY STATE",
    "VERDICT",
    "FINDINGS",
];

/// One repository's cells, in [`HEADERS`] order.
fn cells(r: &ScannedRepository) -> [String; 6] {
    [
        r.name.clone(),
        r.encryption.encryption_type.clone(),
        cells::short_key(r.encryption.kms_key.as_deref()),
        cells::key_facts(&r.encryption),
        cells::verdict_text(&r.verdicts),
        r.findings.len().to_string(),
    ]
}

/// Column widths: each column as wide as its widest cell (the same for every
/// registry, so the groups align); when the line would pass [`WIDTH`],
/// the repository and verdict columns share what the others leave, the
/// verdict (what a reader acts on) getting at least half, and longer cells are
/// cut with `…`.
fn widths(rows: &[[String; 6]]) -> [usize; 6] {
    let mut natural = HEADERS.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in natural.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // The fixed columns never need more: TYPE `KMS_DSSE`, KEY `1a2b3c4d…` (or
    // an alias, cut), KEY STATE `CMK PendingDeletion 2026-12-07`.
    for (w, cap) in [(2, 9), (3, 30), (1, 8), (5, 8)] {
        natural[w] = natural[w].min(cap);
    }
    let fixed: usize = natural[1] + natural[2] + natural[3] + natural[5] + HEADERS.len() - 1;
    let budget = WIDTH - fixed;
    let (repository, verdict) = (natural[0], natural[4]);
    let mut out = natural;
    if repository + verdict > budget {
        out[4] = verdict.min(budget.saturating_sub(repository).max(budget / 2));
        out[0] = budget - out[4];
    }
    out
}

fn line(out: &mut String, row: &[String; 6], widths: &[usize; 6]) {
    let mut text = String::with_capacity(WIDTH);
    for (n, (cell, &w)) in row.iter().zip(widths).enumerate() {
        let cell = cells::fit(cell, w);
        if n == 5 {
            // The count, right-aligned under its heading; nothing after it.
            let _ = write!(text, "{cell:>w$}");
        } else {
            let _ = write!(text, "{cell:<w$} ");
        }
    }
    out.push_str(&text);
    out.push('\n');
}

/// `text` in lines of at most [`WIDTH`] characters, the first starting with
/// `first`, the others with `rest` (spaces); words longer than a line are cut.
fn wrapped(out: &mut String, first: &str, rest: &str, text: &str) {
    let mut current = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = current.chars().count();
        if !empty && len + 1 + word.chars().count() > WIDTH {
            out.push_str(&current);
            out.push('\n');
            current = rest.to_owned();
        }
        if !current.ends_with(' ') {
            current.push(' ');
        }
        let room = WIDTH - current.chars().count();
        current.push_str(&cells::fit(word, room));
        empty = false;
    }
    out.push_str(&current);
    out.push('\n');
}

/// The whole table (see the module docs).
pub(super) fn render(report: &ScanReport) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let rows: Vec<[String; 6]> = report.repositories.iter().map(cells).collect();
    let widths = widths(&rows);
    let mut rows = rows.iter();
    for group in cells::by_registry(&report.repositories) {
        let first = &group[0];
        let _ = writeln!(
            out,
            "{} {}: {}",
            first.account,
            first.region,
            cells::count(group.len(), "repository", "repositories")
        );
        line(&mut out, &HEADERS.map(str::to_owned), &widths);
        for row in rows.by_ref().take(group.len()) {
            line(&mut out, row, &widths);
        }
        out.push('\n');
    }
    if !report.pull_through_rules.is_empty() {
        out.push_str("PULL-THROUGH RULES\n");
        for rule in &report.pull_through_rules {
            let heading = format!(
                "{} {} {} <- {}",
                rule.account, rule.region, rule.prefix, rule.upstream
            );
            wrapped(&mut out, "  ", "    ", &heading);
            let template = match &rule.template {
                Some(t) => format!("template {t}"),
                None => "no template".to_owned(),
            };
            let e = &rule.encryption;
            let encryption = match e.kms_key {
                Some(_) => format!(
                    "{} {} {}",
                    e.encryption_type,
                    cells::short_key(e.kms_key.as_deref()),
                    cells::key_facts(e)
                ),
                None => e.encryption_type.clone(),
            };
            let text = format!(
                "{template}: {encryption}; {}; {}",
                cells::verdict_text(&rule.verdicts),
                cells::count(rule.findings.len(), "finding", "findings")
            );
            wrapped(&mut out, "    ", "      ", &text);
        }
        out.push('\n');
    }
    out.push_str("SUMMARY\n");
    let _ = writeln!(
        out,
        "  repositories: {} in {}",
        s.repositories,
        cells::count(s.registries, "registry", "registries")
    );
    let by_type = cells::counts_text(s.by_encryption_type.iter().map(|(k, n)| (k.as_str(), *n)));
    wrapped(&mut out, "  by encryption type:", "    ", &by_type);
    let by_verdict = cells::counts_text(cells::verdict_counts(report));
    wrapped(&mut out, "  by verdict:", "    ", &by_verdict);
    let _ = writeln!(
        out,
        "  violations: {} ({} under Enforce)",
        s.violations, s.enforced_violations
    );
    let by_code = cells::counts_text(
        cells::findings_by_code(report)
            .into_iter()
            .map(|(c, n)| (cells::code(c), n)),
    );
    let findings = format!("{} repositories ({by_code})", s.with_findings);
    wrapped(&mut out, "  findings:", "    ", &findings);

    let c = &report.cost;
    let p = &c.prices;
    out.push_str("COST (USD per month, from AWS KMS prices)\n");
    let _ = writeln!(
        out,
        "  customer-managed keys: {} x {} = {}",
        c.customer_managed_keys,
        cells::usd(p.kms_key_monthly_usd),
        cells::usd(c.key_monthly_usd)
    );
    let _ = writeln!(
        out,
        "  KMS requests: {} x {} per 10,000 = {}",
        cells::thousands(p.kms_requests_per_month),
        cells::usd(p.kms_request_usd_per_10k),
        cells::usd(c.requests_monthly_usd)
    );
    let _ = writeln!(out, "  monthly: {}", cells::usd(c.monthly_usd));
    let _ = writeln!(
        out,
        "  to comply: {} more a month (one customer-managed key per account and region)",
        cells::usd(c.to_comply_monthly_usd)
    );
    for a in &c.assumptions {
        wrapped(&mut out, "  assumption:", "    ", a);
    }
    if !report.errors.is_empty() {
        out.push_str("ERRORS (the repositories of these registries are missing)\n");
        for e in &report.errors {
            let text = format!("{} {} {}: {}", e.account, e.region, e.api, e.message);
            wrapped(&mut out, "  ", "    ", &text);
        }
    }
    let _ = writeln!(
        out,
        "{} scanned: {} denied, {} violations, {} with findings, {} a month",
        s.repositories,
        s.by_verdict
            .get(VerdictClass::Denied.key())
            .copied()
            .unwrap_or(0),
        s.violations,
        s.with_findings,
        cells::usd(c.monthly_usd)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::render::sample;

    #[test]
    fn no_line_is_wider_than_100_columns() {
        let text = render(&sample::report());
        for l in text.lines() {
            assert!(
                l.chars().count() <= WIDTH,
                "{} chars: {l}",
                l.chars().count()
            );
        }
        // Long names and ARNs are cut with `…`, not wrapped.
        assert!(text.contains("platform-engineerin… "));
        assert!(!text.contains(sample::LONG_NAME));
        assert!(text.contains("mrk-0123…"));
    }

    #[test]
    fn repositories_are_grouped_under_their_registry() {
        let text = render(&sample::report());
        let headings: Vec<&str> = text
            .lines()
            .filter(|l| l.ends_with(" repositories") && !l.starts_with(' '))
            .collect();
        assert_eq!(
            headings,
            [
                "111122223333 eu-west-1: 7 repositories",
                "111122223333 us-east-1: 3 repositories",
                "444455556666 eu-west-1: 2 repositories",
            ]
        );
        let after = |heading: &str| -> Vec<String> {
            text.split(heading)
                .nth(1)
                .unwrap()
                .lines()
                .skip(2)
                .take_while(|l| !l.is_empty())
                .map(|l| l.split(' ').next().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            after("444455556666 eu-west-1: 2 repositories"),
            ["cross/unknown-key", "unjudged/app"]
        );
    }

    #[test]
    fn each_repository_line_shows_its_facts() {
        let text = render(&sample::report());
        let line = |name: &str| -> Vec<String> {
            let l = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap();
            // Columns are separated by at least one space; KEY STATE and
            // VERDICT hold single spaces, so split on the padded layout.
            let header = text.lines().find(|l| l.starts_with("REPOSITORY")).unwrap();
            let starts: Vec<usize> = HEADERS.iter().map(|h| header.find(h).unwrap()).collect();
            let chars: Vec<char> = l.chars().collect();
            starts
                .iter()
                .enumerate()
                .map(|(n, &s)| {
                    let end = starts.get(n + 1).copied().unwrap_or(chars.len());
                    chars[s..end].iter().collect::<String>().trim().to_owned()
                })
                .collect()
        };
        assert_eq!(
            line("pending/deletion"),
            [
                "pending/deletion",
                "KMS",
                "4d5e6f7a…",
                "CMK PendingDeletion 2026-12-07",
                "denied by require-k…",
                "2"
            ]
        );
        assert_eq!(
            line("legacy/plain"),
            [
                "legacy/plain",
                "AES256",
                "-",
                "-",
                "denied by require-k…",
                "1"
            ]
        );
        assert_eq!(
            line("cmk/shared-2"),
            [
                "cmk/shared-2",
                "KMS",
                "1a2b3c4d…",
                "CMK Enabled rot on",
                "allowed",
                "0"
            ]
        );
        assert_eq!(
            line("aws-managed/app"),
            [
                "aws-managed/app",
                "KMS",
                "aws/ecr",
                "AWS Enabled",
                "warned by require-c…",
                "0"
            ]
        );
        assert_eq!(
            line("unjudged/app"),
            ["unjudged/app", "AES256", "-", "-", "no policy", "0"]
        );
    }

    #[test]
    fn summary_and_cost_lines_carry_the_exact_figures() {
        let text = render(&sample::report());
        for expected in [
            "  repositories: 12 in 4 registries",
            "  by encryption type: AES256 3, KMS 8, KMS_DSSE 1",
            "  by verdict: denied 4, warned 2, dry-run 1, allowed 5",
            "  violations: 7 (4 under Enforce)",
            "  customer-managed keys: 5 x $1.00 = $5.00",
            "  KMS requests: 2,500,000 x $0.03 per 10,000 = $7.50",
            "  monthly: $12.50",
            "  to comply: $3.00 more a month (one customer-managed key per account and region)",
            "12 scanned: 4 denied, 7 violations, 6 with findings, $12.50 a month",
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected}\n{text}");
        }
        assert!(text.contains(
            "  findings: 6 repositories (aes256-where-kms-required 2, key-rotation-disabled 2,"
        ));
        assert!(text.contains("PULL-THROUGH RULES\n  111122223333 eu-west-1 docker-hub <- registry-1.docker.io\n    no template: AES256; denied by require-kms; 1 finding\n"));
        assert!(text.contains("ERRORS (the repositories of these registries are missing)\n  444455556666 us-east-1 DescribeRepositories: AccessDeniedException:"));
        // The order of the sections.
        let at = |s: &str| text.find(s).unwrap();
        assert!(
            at("444455556666 eu-west-1:") < at("PULL-THROUGH")
                && at("PULL-THROUGH") < at("SUMMARY")
                && at("SUMMARY") < at("COST")
                && at("COST") < at("ERRORS")
        );
    }

    #[test]
    fn long_lines_wrap_with_every_word_kept() {
        let mut out = String::new();
        let words = "word ".repeat(50);
        wrapped(&mut out, "  assumption:", "    ", &words);
        assert!(out.lines().all(|l| l.chars().count() <= WIDTH));
        assert_eq!(out.split_whitespace().filter(|w| *w == "word").count(), 50);
        assert!(out.lines().nth(1).unwrap().starts_with("    word"));
    }

    #[test]
    fn an_empty_report_still_has_its_summary() {
        let text = render(&ScanReport::default());
        assert!(text.starts_with("SUMMARY\n  repositories: 0 in 0 registries\n"));
        assert!(
            text.ends_with("0 scanned: 0 denied, 0 violations, 0 with findings, $0.00 a month\n")
        );
    }
}

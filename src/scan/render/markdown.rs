//! `scan -o markdown`: GitHub-flavoured markdown for a pull request, an issue
//! or a wiki: a table per registry with its findings in words, the pull-through
//! rules, then the summary, the cost and the errors.
//!
//! Every text from the report goes through [`escape`]: repository names, key
//! ARNs and AWS's messages may hold `|` (which would split a cell), newlines
//! (which would end the table) or markup.

use std::fmt::Write as _;

use super::cells;
use crate::scan::report::{Encryption, ScanReport};

const REPOSITORY_HEADERS: [&str; 9] = [
    "Repository",
    "Encryption",
    "KMS key",
    "Key manager",
    "Key state",
    "Key rotation",
    "Verdict",
    "Policies",
    "Findings",
];

/// `text` as literal markdown inside a table cell or a list item: markdown
/// punctuation backslash-escaped (CommonMark allows it before any ASCII
/// punctuation), `_` only where it could start or end emphasis (between
/// letters or digits it cannot, so `encryption_type` stays readable), a line
/// break as `<br>` (GitHub's way inside a cell); carriage returns dropped.
pub(super) fn escape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (n, &c) in chars.iter().enumerate() {
        match c {
            '\\' | '|' | '`' | '*' | '[' | ']' | '<' | '>' | '~' | '&' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '_' => {
                let word = |i: Option<usize>| {
                    i.and_then(|i| chars.get(i))
                        .is_some_and(|c| c.is_alphanumeric())
                };
                if !(word(n.checked_sub(1)) && word(Some(n + 1))) {
                    out.push('\\');
                }
                out.push('_');
            }
            '\n' => out.push_str("<br>"),
            '\r' => {}
            _ => out.push(c),
        }
    }
    out
}

fn table_row(out: &mut String, cells: &[String]) {
    out.push('|');
    for cell in cells {
        let _ = write!(out, " {cell} |");
    }
    out.push('\n');
}

fn table_head(out: &mut String, headers: &[&str]) {
    table_row(
        out,
        &headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    table_row(out, &vec!["---".to_owned(); headers.len()]);
}

fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_owned(), escape)
}

/// Key state with the deletion date when there is one:
/// `PendingDeletion (deletion 2026-12-07T09:30:00Z)`.
fn key_state(e: &Encryption) -> String {
    match (&e.key_state, &e.key_deletion_date) {
        (Some(state), Some(date)) => escape(&format!("{state} (deletion {date})")),
        (state, _) => or_dash(state.as_deref()),
    }
}

/// The markdown text (see the module docs).
pub(super) fn render(report: &ScanReport) -> String {
    let mut out = String::from("# ecr-guard scan\n\n");
    let s = &report.summary;
    let c = &report.cost;
    let _ = writeln!(
        out,
        "{} in {}: {} violations ({} under Enforce), {} with findings, {} a month.\n",
        cells::count(s.repositories, "repository", "repositories"),
        cells::count(s.registries, "registry", "registries"),
        s.violations,
        s.enforced_violations,
        s.with_findings,
        cells::usd(c.monthly_usd)
    );
    for group in cells::by_registry(&report.repositories) {
        let _ = writeln!(
            out,
            "## {} {}\n",
            escape(&group[0].account),
            escape(&group[0].region)
        );
        table_head(&mut out, &REPOSITORY_HEADERS);
        for r in group {
            let e = &r.encryption;
            let codes: Vec<&str> = r.findings.iter().map(|f| cells::code(f.code)).collect();
            table_row(
                &mut out,
                &[
                    escape(&r.name),
                    escape(&e.encryption_type),
                    or_dash(e.kms_key.as_deref()),
                    or_dash(e.key_manager.map(cells::manager)),
                    key_state(e),
                    or_dash(e.key_rotation.map(cells::rotation)),
                    escape(&cells::verdict_text(&r.verdicts)),
                    escape(&cells::verdicts_detail(&r.verdicts)),
                    escape(&codes.join(", ")),
                ],
            );
        }
        let findings: Vec<_> = group
            .iter()
            .flat_map(|r| r.findings.iter().map(move |f| (r, f)))
            .collect();
        if !findings.is_empty() {
            out.push_str("\nFindings:\n\n");
            for (r, f) in findings {
                let _ = writeln!(
                    out,
                    "- {}: {}: {}",
                    escape(&r.name),
                    cells::code(f.code),
                    escape(&f.message)
                );
            }
        }
        out.push('\n');
    }
    if !report.pull_through_rules.is_empty() {
        out.push_str("## Pull-through rules\n\n");
        table_head(
            &mut out,
            &[
                "Account",
                "Region",
                "Prefix",
                "Upstream",
                "Template",
                "Encryption",
                "KMS key",
                "Verdict",
                "Findings",
            ],
        );
        for rule in &report.pull_through_rules {
            let findings: Vec<String> = rule
                .findings
                .iter()
                .map(|f| format!("{}: {}", cells::code(f.code), f.message))
                .collect();
            table_row(
                &mut out,
                &[
                    escape(&rule.account),
                    escape(&rule.region),
                    escape(&rule.prefix),
                    escape(&rule.upstream),
                    or_dash(rule.template.as_deref()),
                    escape(&rule.encryption.encryption_type),
                    or_dash(rule.encryption.kms_key.as_deref()),
                    escape(&cells::verdict_text(&rule.verdicts)),
                    escape(&findings.join("\n")),
                ],
            );
        }
        out.push('\n');
    }
    out.push_str("## Summary\n\n");
    let by_type = cells::counts_text(s.by_encryption_type.iter().map(|(k, n)| (k.as_str(), *n)));
    let by_code = cells::counts_text(
        cells::findings_by_code(report)
            .into_iter()
            .map(|(c, n)| (cells::code(c), n)),
    );
    let _ = writeln!(
        out,
        "- Repositories: {} in {}\n- By encryption type: {}\n- By verdict: {}\n- Violations: {} ({} under Enforce)\n- With findings: {} ({})\n",
        s.repositories,
        cells::count(s.registries, "registry", "registries"),
        escape(&by_type),
        cells::counts_text(cells::verdict_counts(report)),
        s.violations,
        s.enforced_violations,
        s.with_findings,
        by_code
    );
    let p = &c.prices;
    out.push_str("## Cost (USD per month, from AWS KMS prices)\n\n");
    table_head(&mut out, &["Item", "Quantity", "Price", "Per month"]);
    for row in [
        [
            "Customer-managed keys".to_owned(),
            c.customer_managed_keys.to_string(),
            format!("{} a key", cells::usd(p.kms_key_monthly_usd)),
            cells::usd(c.key_monthly_usd),
        ],
        [
            "KMS requests".to_owned(),
            cells::thousands(p.kms_requests_per_month),
            format!("{} per 10,000", cells::usd(p.kms_request_usd_per_10k)),
            cells::usd(c.requests_monthly_usd),
        ],
        [
            "Total".to_owned(),
            String::new(),
            String::new(),
            cells::usd(c.monthly_usd),
        ],
        [
            "To comply (more)".to_owned(),
            String::new(),
            "one customer-managed key per account and region".to_owned(),
            cells::usd(c.to_comply_monthly_usd),
        ],
    ] {
        table_row(&mut out, &row.map(|cell| escape(&cell)));
    }
    if !c.assumptions.is_empty() {
        out.push_str("\nAssumptions:\n\n");
        for a in &c.assumptions {
            let _ = writeln!(out, "- {}", escape(a));
        }
    }
    if !report.errors.is_empty() {
        out.push_str("\n## Errors\n\nThe repositories of these registries are missing.\n\n");
        table_head(&mut out, &["Account", "Region", "API", "Message"]);
        for e in &report.errors {
            table_row(
                &mut out,
                &[
                    escape(&e.account),
                    escape(&e.region),
                    escape(&e.api),
                    escape(&e.message),
                ],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::render::sample;

    /// The cells of a table row, unescaped: split on `|` not preceded by `\`,
    /// then `\x` → `x` and `<br>` → newline.
    fn cells_of(line: &str) -> Vec<String> {
        let inner = line
            .strip_prefix("| ")
            .and_then(|l| l.strip_suffix(" |"))
            .unwrap();
        let mut cells = vec![String::new()];
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cells.last_mut().unwrap().push(chars.next().unwrap()),
                '|' => {
                    let cell = cells.last_mut().unwrap();
                    assert_eq!(cell.pop(), Some(' '));
                    assert_eq!(chars.next(), Some(' '));
                    cells.push(String::new());
                }
                _ => cells.last_mut().unwrap().push(c),
            }
        }
        cells.into_iter().map(|c| c.replace("<br>", "\n")).collect()
    }

    #[test]
    fn repository_rows_read_back_cell_for_cell() {
        let report = sample::report();
        let text = render(&report);
        let rows: Vec<Vec<String>> = text
            .lines()
            .filter(|l| l.starts_with("| "))
            .map(cells_of)
            .collect();
        for r in &report.repositories {
            let e = &r.encryption;
            let row = rows
                .iter()
                .find(|row| row[0] == r.name)
                .unwrap_or_else(|| panic!("{} missing", r.name));
            assert_eq!(row.len(), REPOSITORY_HEADERS.len());
            assert_eq!(row[1], e.encryption_type);
            assert_eq!(row[2], e.kms_key.as_deref().unwrap_or("-"));
            assert_eq!(row[3], e.key_manager.map(cells::manager).unwrap_or("-"));
            let state = match (&e.key_state, &e.key_deletion_date) {
                (Some(s), Some(d)) => format!("{s} (deletion {d})"),
                (s, _) => s.clone().unwrap_or("-".into()),
            };
            assert_eq!(row[4], state);
            assert_eq!(row[5], e.key_rotation.map(cells::rotation).unwrap_or("-"));
            assert_eq!(row[6], cells::verdict_text(&r.verdicts));
            let codes: Vec<&str> = r.findings.iter().map(|f| cells::code(f.code)).collect();
            assert_eq!(row[8], codes.join(", "));
        }
        let pending = rows.iter().find(|r| r[0] == "pending/deletion").unwrap();
        assert_eq!(
            pending[4],
            "PendingDeletion (deletion 2026-12-07T09:30:00Z)"
        );
        assert_eq!(
            pending[7],
            "require-cmk-rotation (Warn): rotation_disabled; require-kms (Enforce): key_unusable"
        );
        // The error's message, `<&>` and all, reads back whole.
        let error = rows
            .iter()
            .find(|r| r[2] == "DescribeRepositories")
            .unwrap();
        assert_eq!(error[3], report.errors[0].message);
    }

    #[test]
    fn hostile_text_neither_splits_cells_nor_ends_the_table() {
        let text = render(&sample::report());
        assert!(!text.contains("<script>"));
        assert!(text.contains(r#"\<script\>alert("x")\</script\>\&a\|b"#));
        // A message's newline becomes <br>, so the list item stays one line.
        assert!(text.contains("AES256;<br>second line \\| with a pipe"));
        // Every table line of a table has the header's number of cells.
        let mut width = None;
        for line in text.lines() {
            if line.starts_with("| ") {
                let n = cells_of(line).len();
                assert_eq!(*width.get_or_insert(n), n, "{line}");
            } else {
                width = None;
            }
        }
    }

    #[test]
    fn a_table_per_registry_then_summary_and_cost() {
        let text = render(&sample::report());
        let headings: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            headings,
            [
                "# ecr-guard scan",
                "## 111122223333 eu-west-1",
                "## 111122223333 us-east-1",
                "## 444455556666 eu-west-1",
                "## Pull-through rules",
                "## Summary",
                "## Cost (USD per month, from AWS KMS prices)",
                "## Errors",
            ]
        );
        for expected in [
            "- Repositories: 12 in 4 registries",
            "- By encryption type: AES256 3, KMS 8, KMS_DSSE 1",
            "- By verdict: denied 4, warned 2, dry-run 1, allowed 5",
            "- Violations: 7 (4 under Enforce)",
            "| Customer-managed keys | 5 | $1.00 a key | $5.00 |",
            "| KMS requests | 2,500,000 | $0.03 per 10,000 | $7.50 |",
            "| Total |  |  | $12.50 |",
            "| To comply (more) |  | one customer-managed key per account and region | $3.00 |",
            "- pending/deletion: key-pending-deletion: key 4d5e6f7a-8b9c-0d1e-2f3a-4b5c6d7e8f9a is PendingDeletion: pulls fail after 2026-12-07T09:30:00Z; aws kms cancel-key-deletion --key-id 4d5e6f7a-8b9c-0d1e-2f3a-4b5c6d7e8f9a",
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected}\n{text}");
        }
    }

    #[test]
    fn underscores_inside_words_stay_readable() {
        assert_eq!(escape("encryption_type"), "encryption_type");
        assert_eq!(escape("_x_ a_"), r"\_x\_ a\_");
        assert_eq!(escape("a|b\r\nc"), r"a\|b<br>c");
    }
}

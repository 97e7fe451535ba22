//! `scan -o html`: one self-contained page to open in a browser or attach to a
//! ticket: the summary figures, two inline SVG bar charts (repositories by
//! encryption type and by verdict), the repositories grouped by registry with
//! their findings and verdicts, the pull-through rules, the cost with its
//! assumptions, and the errors.
//!
//! Nothing is loaded from elsewhere (no script, font, image or stylesheet: the
//! CSS is inline), so the file reads the same offline and cannot leak that it
//! was opened. The markup is also well-formed XML (void elements closed with
//! `/>`), so its tests can check it with an XML tokenizer.

use std::fmt::Write as _;

use super::cells::{self, VerdictClass};
use crate::scan::report::{Encryption, Finding, PolicyVerdict, ScanReport};

/// `text` safe inside an element or a quoted attribute: the five characters
/// HTML gives a meaning to, as entities. Every text of the report goes
/// through it: repository names, key ARNs and AWS's messages come from
/// outside and may hold `<script>`, `&` or quotes. (Five replacements do not
/// justify a dependency.)
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 2rem; color: #1f2328; background: #fff; }
h1 { margin: 0 0 .25rem; font-size: 1.6rem; }
h2 { margin: 2rem 0 .75rem; font-size: 1.2rem; }
.lead { color: #57606a; margin: 0 0 1.5rem; }
.figures { display: flex; flex-wrap: wrap; gap: .75rem; margin-bottom: 1.5rem; }
.figure { border: 1px solid #d0d7de; border-radius: 8px; padding: .6rem 1rem; min-width: 8.5rem; }
.figure .n { display: block; font-size: 1.7rem; font-weight: 600; }
.figure .l { color: #57606a; font-size: .85rem; }
.figure.bad .n { color: #cf222e; }
.charts { display: flex; flex-wrap: wrap; gap: 2.5rem; margin-bottom: 1rem; }
.charts text { font-size: 13px; fill: #1f2328; }
.charts text.title { font-weight: 600; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; }
tr.registry th { background: #eaeef2; font-weight: 600; }
td.name { word-break: break-all; min-width: 8rem; }
td.registry, time { white-space: nowrap; }
td.verdict { min-width: 8rem; }
td.findings { min-width: 16rem; }
td.policies { min-width: 15rem; }
td.findings, td.policies { overflow-wrap: anywhere; }
table.cost { width: auto; min-width: 40rem; }
td.num { text-align: right; }
code { font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; font-size: .8rem; }
ul { margin: 0; padding-left: 1.1rem; }
.muted { color: #57606a; }
.denied { color: #cf222e; font-weight: 600; }
.warned { color: #9a6700; font-weight: 600; }
.dry-run { color: #0969da; }
.allowed { color: #1a7f37; }
footer { margin-top: 2rem; color: #57606a; font-size: .8rem; }
";

/// One bar of a chart: label, count, fill colour.
type Bar<'a> = (&'a str, usize, &'static str);

/// A horizontal bar chart as inline SVG: a title, then per bar its label, the
/// bar (scaled to the largest count) and the count as text, so the figures
/// are readable in the page's source too.
fn bar_chart(out: &mut String, id: &str, title: &str, bars: &[Bar<'_>]) {
    const LABEL: usize = 90;
    const BAR: usize = 260;
    const ROW: usize = 26;
    let height = 30 + ROW * bars.len();
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let _ = writeln!(
        out,
        "<svg id=\"{id}\" width=\"400\" height=\"{height}\" viewBox=\"0 0 400 {height}\" role=\"img\" aria-labelledby=\"{id}-title\">\n<title id=\"{id}-title\">{}</title>\n<text class=\"title\" x=\"0\" y=\"16\">{}</text>",
        escape(title),
        escape(title)
    );
    for (n, (label, count, fill)) in bars.iter().enumerate() {
        let y = 28 + ROW * n;
        let width = BAR * count / max;
        let _ = writeln!(
            out,
            "<g class=\"bar\" data-label=\"{label}\" data-count=\"{count}\"><text x=\"0\" y=\"{}\">{label}</text><rect x=\"{LABEL}\" y=\"{y}\" width=\"{width}\" height=\"18\" rx=\"2\" fill=\"{fill}\"/><text x=\"{}\" y=\"{}\">{count}</text></g>",
            y + 14,
            LABEL + width + 6,
            y + 14,
            label = escape(label),
        );
    }
    out.push_str("</svg>\n");
}

fn encryption_fill(kind: &str) -> &'static str {
    match kind {
        "AES256" => "#d4a72c",
        "KMS" => "#0969da",
        "KMS_DSSE" => "#8250df",
        _ => "#8c959f",
    }
}

fn verdict_fill(class: VerdictClass) -> &'static str {
    match class {
        VerdictClass::Denied => "#cf222e",
        VerdictClass::Warned => "#d4a72c",
        VerdictClass::DryRun => "#54aeff",
        VerdictClass::Allowed => "#2da44e",
    }
}

fn figure(out: &mut String, name: &str, value: &str, label: &str, bad: bool) {
    let class = if bad { "figure bad" } else { "figure" };
    let _ = writeln!(
        out,
        "<div class=\"{class}\"><span class=\"n\" data-figure=\"{name}\">{}</span><span class=\"l\">{}</span></div>",
        escape(value),
        escape(label)
    );
}

/// A key cell: the short id, the full ARN as its tooltip.
fn key_cell(e: &Encryption) -> String {
    match &e.kms_key {
        Some(key) => format!(
            "<code title=\"{}\">{}</code>",
            escape(key),
            escape(&cells::short_key(Some(key)))
        ),
        None => "<span class=\"muted\">-</span>".to_owned(),
    }
}

/// Manager, state (with the deletion date) and rotation, one per line.
fn key_state_cell(e: &Encryption) -> String {
    let Some(manager) = e.key_manager else {
        return "<span class=\"muted\">-</span>".to_owned();
    };
    let mut out = escape(cells::manager(manager));
    if let Some(state) = &e.key_state {
        let _ = write!(out, "<br/>{}", escape(state));
    }
    if let Some(date) = &e.key_deletion_date {
        let _ = write!(out, " until <time>{}</time>", escape(date));
    }
    if let Some(rotation) = e.key_rotation {
        let _ = write!(out, "<br/>rotation {}", escape(cells::rotation(rotation)));
    }
    out
}

fn verdict_cell(verdicts: &[PolicyVerdict]) -> String {
    let class = VerdictClass::of(verdicts);
    format!(
        "<span class=\"{}\">{}</span>",
        class.label(),
        escape(&cells::verdict_text(verdicts))
    )
}

/// Each policy's verdict with its reasons and, on hover, its messages.
fn policies_cell(verdicts: &[PolicyVerdict]) -> String {
    if verdicts.is_empty() {
        return "<span class=\"muted\">none</span>".to_owned();
    }
    let mut out = String::from("<ul>");
    for v in verdicts {
        let outcome = if v.allowed {
            "<span class=\"allowed\">allowed</span>".to_owned()
        } else {
            format!("<code>{}</code>", escape(&v.reasons.join(", ")))
        };
        let _ = write!(
            out,
            "<li title=\"{}\">{} <span class=\"muted\">({})</span>: {outcome}</li>",
            escape(&v.messages.join("\n")),
            escape(&v.policy),
            escape(&v.mode)
        );
    }
    out.push_str("</ul>");
    out
}

fn findings_cell(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul>");
    for f in findings {
        let _ = write!(
            out,
            "<li><code>{}</code> {}</li>",
            cells::code(f.code),
            escape(&f.message)
        );
    }
    out.push_str("</ul>");
    out
}

/// A row of (CSS class, cell markup); an empty class adds none.
fn row(out: &mut String, cells: &[(&str, String)]) {
    out.push_str("<tr>");
    for (class, cell) in cells {
        if class.is_empty() {
            let _ = write!(out, "<td>{cell}</td>");
        } else {
            let _ = write!(out, "<td class=\"{class}\">{cell}</td>");
        }
    }
    out.push_str("</tr>\n");
}

fn head(out: &mut String, headers: &[&str]) {
    head_with_class(out, headers, "");
}

fn head_with_class(out: &mut String, headers: &[&str], class: &str) {
    // The wrapper scrolls a wide table sideways in a narrow window, not the page.
    let _ = write!(out, "<div class=\"scroll\">\n<table{class}>\n<thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead>\n");
}

fn repositories(out: &mut String, report: &ScanReport) {
    out.push_str("<h2 id=\"repositories\">Repositories</h2>\n");
    if report.repositories.is_empty() {
        out.push_str("<p class=\"muted\">No repository was scanned.</p>\n");
        return;
    }
    head(
        out,
        &[
            "Repository",
            "Encryption",
            "KMS key",
            "Key state",
            "Verdict",
            "Policies",
            "Findings",
        ],
    );
    for group in cells::by_registry(&report.repositories) {
        let _ = writeln!(
            out,
            "<tbody>\n<tr class=\"registry\"><th colspan=\"7\">{} {} <span class=\"muted\">· {}</span></th></tr>",
            escape(&group[0].account),
            escape(&group[0].region),
            cells::count(group.len(), "repository", "repositories")
        );
        for r in group {
            let e = &r.encryption;
            let _ = write!(
                out,
                "<tr><td class=\"name\"><code>{}</code></td>",
                escape(&r.name)
            );
            let _ = writeln!(
                out,
                "<td>{}</td><td>{}</td><td>{}</td><td class=\"verdict\">{}</td><td class=\"policies\">{}</td><td class=\"findings\">{}</td></tr>",
                escape(&e.encryption_type),
                key_cell(e),
                key_state_cell(e),
                verdict_cell(&r.verdicts),
                policies_cell(&r.verdicts),
                findings_cell(&r.findings),
            );
        }
        out.push_str("</tbody>\n");
    }
    out.push_str("</table>\n</div>\n");
}

fn pull_through_rules(out: &mut String, report: &ScanReport) {
    if report.pull_through_rules.is_empty() {
        return;
    }
    out.push_str("<h2 id=\"pull-through-rules\">Pull-through rules</h2>\n");
    head(
        out,
        &[
            "Registry",
            "Prefix",
            "Upstream",
            "Creation template",
            "Encryption",
            "KMS key",
            "Verdict",
            "Findings",
        ],
    );
    for rule in &report.pull_through_rules {
        let template = match &rule.template {
            Some(t) => format!("<code>{}</code>", escape(t)),
            None => "<span class=\"muted\">none (ECR's default)</span>".to_owned(),
        };
        row(
            out,
            &[
                (
                    "registry",
                    format!("{} {}", escape(&rule.account), escape(&rule.region)),
                ),
                ("", format!("<code>{}</code>", escape(&rule.prefix))),
                ("", escape(&rule.upstream)),
                ("", template),
                ("", escape(&rule.encryption.encryption_type)),
                ("", key_cell(&rule.encryption)),
                ("verdict", verdict_cell(&rule.verdicts)),
                ("findings", findings_cell(&rule.findings)),
            ],
        );
    }
    out.push_str("</table>\n</div>\n");
}

fn cost(out: &mut String, report: &ScanReport) {
    let c = &report.cost;
    let p = &c.prices;
    out.push_str("<h2 id=\"cost\">Cost per month</h2>\n");
    head_with_class(
        out,
        &["Item", "Quantity", "Price", "USD per month"],
        " class=\"cost\"",
    );
    let lines = [
        (
            "Customer-managed keys (each counted once)",
            c.customer_managed_keys.to_string(),
            format!("{} a key", cells::usd(p.kms_key_monthly_usd)),
            c.key_monthly_usd,
            "keys",
        ),
        (
            "KMS requests",
            cells::thousands(p.kms_requests_per_month),
            format!("{} per 10,000", cells::usd(p.kms_request_usd_per_10k)),
            c.requests_monthly_usd,
            "requests",
        ),
        (
            "Total",
            String::new(),
            String::new(),
            c.monthly_usd,
            "total",
        ),
        (
            "To comply: one more customer-managed key per account and region with a failing repository",
            String::new(),
            String::new(),
            c.to_comply_monthly_usd,
            "to-comply",
        ),
    ];
    for (item, quantity, price, usd, name) in lines {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{quantity}</td><td>{}</td><td class=\"num\" data-cost=\"{name}\">{}</td></tr>",
            escape(item),
            escape(&price),
            cells::usd(usd)
        );
    }
    out.push_str("</table>\n</div>\n");
    if !c.assumptions.is_empty() {
        out.push_str("<h2 id=\"assumptions\">Assumptions</h2>\n<ul>\n");
        for a in &c.assumptions {
            let _ = writeln!(out, "<li>{}</li>", escape(a));
        }
        out.push_str("</ul>\n");
    }
}

fn errors(out: &mut String, report: &ScanReport) {
    if report.errors.is_empty() {
        return;
    }
    out.push_str(
        "<h2 id=\"errors\">Errors</h2>\n<p>The repositories of these registries are missing from this report.</p>\n",
    );
    head(out, &["Registry", "API", "Message"]);
    for e in &report.errors {
        row(
            out,
            &[
                (
                    "registry",
                    format!("{} {}", escape(&e.account), escape(&e.region)),
                ),
                ("", escape(&e.api)),
                ("", escape(&e.message)),
            ],
        );
    }
    out.push_str("</table>\n</div>\n");
}

/// The page (see the module docs).
pub(super) fn render(report: &ScanReport) -> String {
    let s = &report.summary;
    let c = &report.cost;
    let title = format!(
        "ecr-guard scan: {}, {} violations",
        cells::count(s.repositories, "repository", "repositories"),
        s.violations
    );
    let mut out = String::with_capacity(4096 + 1024 * report.repositories.len());
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>ecr-guard scan</h1>\n",
        escape(&title)
    );
    let _ = writeln!(
        out,
        "<p class=\"lead\">{} in {}{}.</p>",
        cells::count(s.repositories, "repository", "repositories"),
        cells::count(s.registries, "registry", "registries"),
        match report.errors.len() {
            0 => String::new(),
            n => format!(
                "; {} left part of them unread or unjudged (see Errors)",
                cells::count(n, "error", "errors")
            ),
        }
    );
    out.push_str("<section class=\"figures\">\n");
    figure(
        &mut out,
        "repositories",
        &s.repositories.to_string(),
        "repositories",
        false,
    );
    figure(
        &mut out,
        "violations",
        &s.violations.to_string(),
        &format!("violations ({} under Enforce)", s.enforced_violations),
        s.violations > 0,
    );
    figure(
        &mut out,
        "with-findings",
        &s.with_findings.to_string(),
        "with findings",
        s.with_findings > 0,
    );
    figure(
        &mut out,
        "customer-managed-keys",
        &c.customer_managed_keys.to_string(),
        "customer-managed keys",
        false,
    );
    figure(
        &mut out,
        "monthly",
        &cells::usd(c.monthly_usd),
        "a month",
        false,
    );
    figure(
        &mut out,
        "to-comply",
        &cells::usd(c.to_comply_monthly_usd),
        "more a month to comply",
        false,
    );
    out.push_str("</section>\n<section class=\"charts\">\n");
    let by_type: Vec<Bar<'_>> = s
        .by_encryption_type
        .iter()
        .map(|(kind, n)| (kind.as_str(), *n, encryption_fill(kind)))
        .collect();
    bar_chart(
        &mut out,
        "by-encryption-type",
        "Repositories by encryption type",
        &by_type,
    );
    let by_verdict: Vec<Bar<'_>> = VerdictClass::ALL
        .iter()
        .map(|class| {
            let n = s.by_verdict.get(class.key()).copied().unwrap_or(0);
            (class.label(), n, verdict_fill(*class))
        })
        .collect();
    bar_chart(
        &mut out,
        "by-verdict",
        "Repositories by verdict",
        &by_verdict,
    );
    out.push_str("</section>\n");
    repositories(&mut out, report);
    pull_through_rules(&mut out, report);
    cost(&mut out, report);
    errors(&mut out, report);
    out.push_str(
        "<footer>Written by <code>ecr-guard scan -o html</code>. Prices are AWS KMS list prices given as flags; AES256 and AWS-managed keys cost nothing a month.</footer>\n</body>\n</html>\n",
    );
    out
}

#[cfg(test)]
mod tests;

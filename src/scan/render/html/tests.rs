//! The HTML page read back with an XML tokenizer: tags balance, every figure
//! is there, every text of the report is escaped, nothing is loaded from
//! elsewhere; and docs/scan-example.html is this page for the sample report.

use std::collections::BTreeMap;

use xmlparser::{ElementEnd, Token, Tokenizer};

use super::render;
use crate::scan::render::sample;

/// What the page holds, as a browser would read it.
#[derive(Default)]
struct Page {
    /// Text nodes, entities decoded, in document order, trimmed, non-empty.
    texts: Vec<String>,
    /// (element, attribute, decoded value).
    attributes: Vec<(String, String, String)>,
    /// `data-figure` → the figure's text.
    figures: BTreeMap<String, String>,
    /// Elements seen, by name.
    elements: BTreeMap<String, usize>,
}

fn decode(text: &str) -> String {
    let decoded = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    // `&amp;` last, so `&amp;lt;` stays the text `&lt;`.
    assert!(
        !decoded.replace("&amp;", "").contains('&'),
        "a raw & or an unknown entity: {text}"
    );
    decoded.replace("&amp;", "&")
}

/// Tokenizes the page as XML and checks that every element is closed by
/// its own end tag; panics (fails the test) otherwise.
fn parse(html: &str) -> Page {
    let mut page = Page::default();
    let mut open: Vec<String> = Vec::new();
    let mut figure: Option<String> = None;
    for token in Tokenizer::from(html) {
        match token.unwrap() {
            Token::ElementStart { local, .. } => {
                open.push(local.to_string());
                *page.elements.entry(local.to_string()).or_default() += 1;
            }
            Token::Attribute { local, value, .. } => {
                let element = open.last().unwrap().clone();
                let value = decode(value.as_str());
                if local.as_str() == "data-figure" {
                    figure = Some(value.clone());
                }
                page.attributes.push((element, local.to_string(), value));
            }
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Empty => {
                    open.pop().unwrap();
                }
                ElementEnd::Close(_, local) => {
                    let name = open.pop().unwrap();
                    assert_eq!(name, local.as_str(), "</{local}> closes <{name}>");
                }
            },
            Token::Text { text } => {
                let text = decode(text.as_str());
                let text = text.trim();
                if !text.is_empty() {
                    if let Some(name) = figure.take() {
                        page.figures.insert(name, text.to_owned());
                    }
                    page.texts.push(text.to_owned());
                }
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
    page
}

#[test]
fn tags_balance_and_the_figures_are_the_summary() {
    let page = parse(&render(&sample::report()));
    let figures: Vec<(&str, &str)> = page
        .figures
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        figures,
        [
            ("customer-managed-keys", "5"),
            ("monthly", "$12.50"),
            ("repositories", "12"),
            ("to-comply", "$3.00"),
            ("violations", "7"),
            ("with-findings", "6"),
        ]
    );
    assert_eq!(page.elements["svg"], 2);
    assert_eq!(page.elements["html"], 1);
}

#[test]
fn the_charts_show_each_count_as_text() {
    let html = render(&sample::report());
    let page = parse(&html);
    let bars: Vec<(String, String)> = page
        .attributes
        .iter()
        .filter(|(element, name, _)| element == "g" && name == "data-label")
        .map(|(_, _, label)| label.clone())
        .zip(
            page.attributes
                .iter()
                .filter(|(element, name, _)| element == "g" && name == "data-count")
                .map(|(_, _, n)| n.clone()),
        )
        .collect();
    let expected = [
        ("AES256", "3"),
        ("KMS", "8"),
        ("KMS_DSSE", "1"),
        ("denied", "4"),
        ("warned", "2"),
        ("dry-run", "1"),
        ("allowed", "5"),
    ];
    assert_eq!(bars, expected.map(|(l, n)| (l.to_owned(), n.to_owned())));
    // Label then count, as text of the SVG (readable without the bars).
    for (label, n) in expected {
        let at = page.texts.iter().position(|t| t == label).unwrap();
        assert_eq!(page.texts[at + 1], n, "{label}");
    }
    // The longest bar is the largest count.
    assert!(html.contains("<rect x=\"90\" y=\"54\" width=\"260\""));
}

#[test]
fn every_text_of_the_report_is_there_and_escaped() {
    let report = sample::report();
    let html = render(&report);
    let page = parse(&html);
    assert!(!html.contains("<script"), "a raw <script> tag");
    let texts = page.texts.join("\n");
    for r in &report.repositories {
        assert!(page.texts.contains(&r.name), "{}", r.name);
        for f in &r.findings {
            assert!(texts.contains(&f.message), "{}", f.message);
        }
        for v in &r.verdicts {
            assert!(texts.contains(&v.policy));
        }
        if let Some(key) = &r.encryption.kms_key {
            assert!(
                page.attributes
                    .iter()
                    .any(|(_, n, v)| n == "title" && v == key),
                "{key}"
            );
        }
        if let Some(date) = &r.encryption.key_deletion_date {
            assert!(page.texts.contains(date));
        }
    }
    assert!(texts.contains(&report.errors[0].message));
    for a in &report.cost.assumptions {
        assert!(page.texts.contains(a), "{a}");
    }
    assert!(page.texts.iter().any(|t| t == "docker-hub"));
    // A policy message with quotes and tags survives in an attribute.
    assert!(
        page.attributes
            .iter()
            .any(|(_, n, v)| n == "title"
                && v == "a message with \"quotes\", commas; and <b>tags</b>")
    );
}

#[test]
fn nothing_is_loaded_from_elsewhere() {
    let html = render(&sample::report());
    let page = parse(&html);
    for (element, name, value) in &page.attributes {
        assert!(
            !matches!(
                name.as_str(),
                "src" | "href" | "srcset" | "action" | "xlink:href"
            ),
            "<{element} {name}=\"{value}\">"
        );
    }
    for banned in [
        "http://", "https://", "url(", "@import", "<link", "<img", "<iframe",
    ] {
        assert!(!html.contains(banned), "{banned}");
    }
    let style = html.split("<style>").nth(1).unwrap();
    assert!(!style.split("</style>").next().unwrap().contains("//"));
}

#[test]
fn an_empty_report_is_a_page_too() {
    let page = parse(&render(&Default::default()));
    assert_eq!(page.figures["repositories"], "0");
    assert!(page.texts.iter().any(|t| t == "No repository was scanned."));
}

/// docs/scan-example.html is the sample report's page, so the example linked
/// from the README stays true. Regenerate it with
/// `ECR_GUARD_WRITE_EXAMPLE=1 cargo test --workspace --lib scan_example`.
#[test]
fn docs_scan_example_is_the_sample_page() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scan-example.html");
    let html = render(&sample::report());
    if std::env::var_os("ECR_GUARD_WRITE_EXAMPLE").is_some() {
        std::fs::write(&path, &html).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == html,
        "{} differs from the sample page: ECR_GUARD_WRITE_EXAMPLE=1 cargo test --workspace --lib scan_example",
        path.display()
    );
}

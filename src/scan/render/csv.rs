//! `scan -o csv`: one row per (repository, policy verdict), for a spreadsheet.
//!
//! A row per verdict lets a spreadsheet filter on one policy (`policy` =
//! `require-kms`, `allowed` = `false`) without splitting cells; the
//! repository's columns repeat on each of its rows. A repository no policy
//! judged has one row with `policy`, `mode`, `allowed` and `reasons` empty.
//! The header row names the columns as the JSON does:
//!
//! `account,region,name,encryptionType,kmsKey,keyManager,keyState,keyDeletionDate,keyRotation,findings,policy,mode,allowed,reasons`
//!
//! `findings` are the repository's finding codes and `reasons` the policy's
//! violation reasons, each joined with `;`; `allowed` is `true` or `false`.
//! Pull-through rules, the summary, the cost and the errors are not rows: read
//! them in another format. Quoting is RFC 4180, by the csv crate.
//!
//! No cell is free text: names, policies and key ARNs are validated by ECR,
//! Kubernetes and KMS to start with a letter or digit (or `arn:`), and codes
//! and reasons are ours, so no cell can start with `=`, `+`, `-` or `@` and be
//! read as a formula by a spreadsheet. (The messages, which could, are left to
//! the other formats.)

use serde::Serialize;

use super::RenderError;
use super::cells;
use crate::scan::report::{PolicyVerdict, ScanReport, ScannedRepository};

/// One row; serde names the header cells.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    account: &'a str,
    region: &'a str,
    name: &'a str,
    encryption_type: &'a str,
    kms_key: Option<&'a str>,
    key_manager: Option<&'static str>,
    key_state: Option<&'a str>,
    key_deletion_date: Option<&'a str>,
    key_rotation: Option<&'static str>,
    findings: String,
    policy: Option<&'a str>,
    mode: Option<&'a str>,
    allowed: Option<bool>,
    reasons: Option<String>,
}

fn row<'a>(r: &'a ScannedRepository, verdict: Option<&'a PolicyVerdict>) -> Row<'a> {
    let e = &r.encryption;
    let codes: Vec<&str> = r.findings.iter().map(|f| cells::code(f.code)).collect();
    Row {
        account: &r.account,
        region: &r.region,
        name: &r.name,
        encryption_type: &e.encryption_type,
        kms_key: e.kms_key.as_deref(),
        key_manager: e.key_manager.map(cells::manager),
        key_state: e.key_state.as_deref(),
        key_deletion_date: e.key_deletion_date.as_deref(),
        key_rotation: e.key_rotation.map(cells::rotation),
        findings: codes.join(";"),
        policy: verdict.map(|v| v.policy.as_str()),
        mode: verdict.map(|v| v.mode.as_str()),
        allowed: verdict.map(|v| v.allowed),
        reasons: verdict.map(|v| v.reasons.join(";")),
    }
}

/// The CSV text (see the module docs).
pub(super) fn render(report: &ScanReport) -> Result<String, RenderError> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let mut wrote = false;
    for r in &report.repositories {
        if r.verdicts.is_empty() {
            writer.serialize(row(r, None))?;
        }
        for v in &r.verdicts {
            writer.serialize(row(r, Some(v)))?;
        }
        wrote = true;
    }
    if !wrote {
        // serde writes the header with the first row: with no repository,
        // write it by hand so the file still says what its columns are.
        writer.write_record(HEADER)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ::csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8(bytes)?)
}

const HEADER: [&str; 14] = [
    "account",
    "region",
    "name",
    "encryptionType",
    "kmsKey",
    "keyManager",
    "keyState",
    "keyDeletionDate",
    "keyRotation",
    "findings",
    "policy",
    "mode",
    "allowed",
    "reasons",
];

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::scan::render::sample;

    /// A row as a spreadsheet (or a script) reads it back.
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct ReadRow {
        account: String,
        region: String,
        name: String,
        encryption_type: String,
        kms_key: Option<String>,
        key_manager: Option<String>,
        key_state: Option<String>,
        key_deletion_date: Option<String>,
        key_rotation: Option<String>,
        findings: String,
        policy: Option<String>,
        mode: Option<String>,
        allowed: Option<bool>,
        /// An empty cell reads back as "", not None.
        reasons: String,
    }

    fn read(text: &str) -> (Vec<String>, Vec<ReadRow>) {
        let mut reader = ::csv::Reader::from_reader(text.as_bytes());
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader.deserialize().collect::<Result<_, _>>().unwrap();
        (header, rows)
    }

    #[test]
    fn rows_read_back_field_for_field() {
        let report = sample::report();
        let (header, rows) = read(&render(&report).unwrap());
        assert_eq!(header, HEADER);
        // One row per verdict, one for the repository no policy judged.
        let expected: usize = report
            .repositories
            .iter()
            .map(|r| r.verdicts.len().max(1))
            .sum();
        assert_eq!(rows.len(), expected);
        let mut rows = rows.iter();
        for r in &report.repositories {
            let e = &r.encryption;
            let verdicts: Vec<Option<&PolicyVerdict>> = if r.verdicts.is_empty() {
                vec![None]
            } else {
                r.verdicts.iter().map(Some).collect()
            };
            for v in verdicts {
                let row = rows.next().unwrap();
                let codes: Vec<String> = r.findings.iter().map(|f| json(f.code)).collect();
                assert_eq!(
                    row,
                    &ReadRow {
                        account: r.account.clone(),
                        region: r.region.clone(),
                        name: r.name.clone(),
                        encryption_type: e.encryption_type.clone(),
                        kms_key: e.kms_key.clone(),
                        key_manager: e.key_manager.map(json),
                        key_state: e.key_state.clone(),
                        key_deletion_date: e.key_deletion_date.clone(),
                        key_rotation: e.key_rotation.map(json),
                        findings: codes.join(";"),
                        policy: v.map(|v| v.policy.clone()),
                        mode: v.map(|v| v.mode.clone()),
                        allowed: v.map(|v| v.allowed),
                        reasons: v.map(|v| v.reasons.join(";")).unwrap_or_default(),
                    },
                    "{}",
                    r.name
                );
            }
        }
    }

    /// The JSON spelling of an enum value, to compare with the CSV's.
    fn json(value: impl Serialize) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn hostile_names_are_quoted_not_split() {
        let text = render(&sample::report()).unwrap();
        // `"x,y"` doubles its quotes inside a quoted cell.
        assert!(text.contains("\"<script>alert(\"\"x\"\")</script>&a|b\"\"x,y\"\"\""));
        let (_, rows) = read(&text);
        let hostile: Vec<&ReadRow> = rows
            .iter()
            .filter(|r| r.name == sample::HOSTILE_NAME)
            .collect();
        assert_eq!(hostile.len(), 1);
        assert_eq!(hostile[0].reasons, "encryption_type");
    }

    #[test]
    fn an_empty_report_is_a_header_row() {
        let text = render(&ScanReport::default()).unwrap();
        assert_eq!(text, format!("{}\n", HEADER.join(",")));
    }
}

//! The output formats of `ecr-guard scan` (`-o/--output`). Each reads only the
//! [`ScanReport`], so they cannot disagree.

use clap::ValueEnum;

use super::report::ScanReport;

mod cells;
mod csv;
mod html;
mod markdown;
#[cfg(test)]
mod sample;
mod table;

/// `-o/--output` of `scan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per repository, grouped by registry, then the summary and the cost; fits 100 columns.
    #[default]
    Table,
    /// The report as JSON (camelCase), for scripts.
    Json,
    /// One row per (repository, policy verdict), with a header row.
    Csv,
    /// A markdown table per registry, then the summary and the cost.
    Markdown,
    /// One self-contained HTML page: figures, an inline SVG chart and the table.
    Html,
}

/// Renders the report in `format`: text ending in a newline, UTF-8. Only the
/// CSV writer can fail (never expected for a well-formed report).
pub fn render(report: &ScanReport, format: OutputFormat) -> Result<String, RenderError> {
    Ok(match format {
        OutputFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        OutputFormat::Table => table::render(report),
        OutputFormat::Csv => csv::render(report)?,
        OutputFormat::Markdown => markdown::render(report),
        OutputFormat::Html => html::render(report),
    })
}

/// A renderer failed (never expected for a well-formed report).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the report as CSV: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("cannot write the report as CSV: {0}")]
    CsvUtf8(#[from] std::string::FromUtf8Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reads_back_as_the_same_report() {
        let report = sample::report();
        let text = render(&report, OutputFormat::Json).unwrap();
        let back: ScanReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        // camelCase, with the encryption fields flattened into the repository.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = &value["repositories"][0];
        assert_eq!(first["encryptionType"], "KMS");
        assert_eq!(first["kmsKey"], "aws/ecr");
        assert_eq!(value["summary"]["byEncryptionType"]["KMS_DSSE"], 1);
        assert_eq!(value["cost"]["toComplyMonthlyUsd"], 3.0);
    }

    #[test]
    fn every_format_ends_in_a_newline() {
        let report = sample::report();
        for format in OutputFormat::value_variants() {
            let text = render(&report, *format).unwrap();
            assert!(text.ends_with('\n'), "{format:?}");
        }
    }
}

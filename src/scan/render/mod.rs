//! The output formats of `ecr-guard scan` (`-o/--output`). Each reads only the
//! [`ScanReport`], so they cannot disagree.

use clap::ValueEnum;

use super::report::ScanReport;

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

/// Renders the report in `format`. JSON cannot fail for this model; the
/// `Result` is for renderers that write through a library.
pub fn render(report: &ScanReport, format: OutputFormat) -> Result<String, RenderError> {
    match format {
        // Placeholder until the other renderers land: every format prints JSON.
        OutputFormat::Json
        | OutputFormat::Table
        | OutputFormat::Csv
        | OutputFormat::Markdown
        | OutputFormat::Html => Ok(serde_json::to_string_pretty(report)? + "\n"),
    }
}

/// A renderer failed (never expected for a well-formed report).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

//! `ecr-guard check`: the webhook's judgement from a terminal or a CI pipeline.
//! Exit 0 when nothing enforced is violated, 1 when something is, 2 on a usage,
//! policy or input error.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::admission::Judge;
use crate::admission::workload::{self, WorkloadKind};
use crate::cli::{CheckArgs, OutputFormat};
use crate::inventory::Inventory;
use crate::policy::{self, Mode, Slot, Subject, Verdict};

/// What `check` failed to do before it could judge anything (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("nothing to check: give --image IMAGE and/or -f FILE")]
    NothingToCheck,
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    #[error("failed to read standard input")]
    ReadStdin(#[source] std::io::Error),
    #[error("{path}: document {index}: {reason}")]
    Manifest {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{count} invalid polic{}:\n{details}", if *count == 1 { "y" } else { "ies" })]
    InvalidPolicies { count: usize, details: String },
}

/// One thing judged: a Pod from --image, or a workload from a manifest.
#[derive(Debug)]
pub struct Unit {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub subjects: Vec<Subject>,
}

/// The judgement of one unit, as printed.
#[derive(Debug, Serialize)]
pub struct UnitReport {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// allowed | denied
    pub decision: &'static str,
    pub violations: Vec<ViolationReport>,
    pub warnings: Vec<String>,
    pub hints: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ViolationReport {
    pub policy: String,
    pub mode: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// Collects what to judge from --image and -f.
pub fn units(args: &CheckArgs) -> Result<Vec<Unit>, CheckError> {
    if args.images.is_empty() && args.files.is_empty() {
        return Err(CheckError::NothingToCheck);
    }
    let mut units: Vec<Unit> = args
        .images
        .iter()
        .map(|image| Unit {
            namespace: args.namespace.clone(),
            kind: "Pod".into(),
            name: format!("(--image {image})"),
            subjects: vec![Subject::new(
                Slot::Container,
                container_name(image),
                image.clone(),
            )],
        })
        .collect();
    for path in &args.files {
        units.extend(manifest_units(path, &args.namespace)?);
    }
    Ok(units)
}

/// A container name for a bare image, as `kubectl run` would pick: the last path
/// segment without tag or digest.
fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let end = last.find(['@', ':']).unwrap_or(last.len());
    match &last[..end] {
        "" => "app".to_string(),
        name => name.to_string(),
    }
}

fn manifest_units(path: &Path, default_namespace: &str) -> Result<Vec<Unit>, CheckError> {
    let docs = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(CheckError::ReadStdin)?;
        crate::local::parse_documents(&text, path)?
    } else {
        crate::local::read_documents(path)?
    };
    let mut out = Vec::new();
    for (index, doc) in docs {
        for item in crate::local::list_items(doc) {
            let bad = |reason: String| CheckError::Manifest {
                path: path.to_path_buf(),
                index,
                reason,
            };
            let api_version = item
                .get("apiVersion")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let kind = item
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            // Other objects (Services, ConfigMaps…) run no images: skipped, as the
            // webhook never sees them.
            let Some(workload) = WorkloadKind::from_api_version_kind(api_version, kind) else {
                continue;
            };
            let meta = item.get("metadata");
            let field = |f: &str| {
                meta.and_then(|m| m.get(f))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let name = field("name")
                .or_else(|| field("generateName").map(|g| format!("{g}*")))
                .ok_or_else(|| bad(format!("{kind} has no metadata.name")))?;
            let subjects = workload::subjects(workload, &item).map_err(|e| bad(e.to_string()))?;
            out.push(Unit {
                namespace: field("namespace").unwrap_or_else(|| default_namespace.to_string()),
                kind: kind.to_string(),
                name,
                subjects,
            });
        }
    }
    Ok(out)
}

/// Fails with every problem when any policy is invalid: in a pipeline a broken
/// policy is an input error, not a verdict.
pub fn require_valid_policies(inventory: &dyn Inventory) -> Result<(), CheckError> {
    let policies = inventory.policies();
    let invalid: Vec<String> = policies
        .iter()
        .filter(|p| !p.is_valid())
        .map(|p| {
            let problems: Vec<String> = p.problems().iter().map(|e| format!("  - {e}")).collect();
            format!("policy {}:\n{}", p.name, problems.join("\n"))
        })
        .collect();
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(CheckError::InvalidPolicies {
            count: invalid.len(),
            details: invalid.join("\n"),
        })
    }
}

/// Judges every unit.
pub async fn judge_all(
    inventory: &dyn Inventory,
    judge: &Judge,
    units: Vec<Unit>,
) -> Vec<UnitReport> {
    let policies = inventory.policies();
    let mut reports = Vec::with_capacity(units.len());
    for unit in units {
        let labels = inventory.namespace_labels(&unit.namespace);
        let verdict = judge.judge(&policies, &labels, &unit.subjects).await;
        reports.push(report(unit, &verdict));
    }
    reports
}

fn report(unit: Unit, verdict: &Verdict) -> UnitReport {
    let violations = verdict
        .violations
        .iter()
        .map(|v| ViolationReport {
            policy: v.policy.clone(),
            mode: v.mode.as_str(),
            reason: v.reason.as_str(),
            message: v.message(),
        })
        .collect();
    UnitReport {
        namespace: unit.namespace,
        kind: unit.kind,
        name: unit.name,
        decision: if verdict.is_denied() {
            "denied"
        } else {
            "allowed"
        },
        violations,
        warnings: verdict.notes.clone(),
        hints: policy::hints(verdict.violations.iter())
            .map(ToString::to_string)
            .collect(),
    }
}

/// Prints the reports; returns the exit code (0 or 1).
pub fn print(
    reports: &[UnitReport],
    format: OutputFormat,
    out: &mut impl std::io::Write,
) -> std::io::Result<i32> {
    let denied = reports.iter().filter(|r| r.decision == "denied").count();
    match format {
        OutputFormat::Json => {
            #[derive(Serialize)]
            struct Out<'a> {
                results: &'a [UnitReport],
                denied: usize,
                allowed: usize,
            }
            let body = Out {
                results: reports,
                denied,
                allowed: reports.len() - denied,
            };
            serde_json::to_writer_pretty(&mut *out, &body)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for r in reports {
                writeln!(
                    out,
                    "{}: {} {}/{}",
                    r.decision.to_uppercase(),
                    r.namespace,
                    r.kind,
                    r.name
                )?;
                for v in &r.violations {
                    let tag = match v.mode {
                        m if m == Mode::Enforce.as_str() => "deny",
                        m if m == Mode::Warn.as_str() => "warn",
                        _ => "dry-run",
                    };
                    writeln!(out, "  [{tag}] {}", v.message)?;
                }
                for w in &r.warnings {
                    writeln!(out, "  [note] {w}")?;
                }
                for h in &r.hints {
                    writeln!(out, "  hint: {h}")?;
                }
            }
            writeln!(
                out,
                "{} checked: {} denied, {} allowed",
                reports.len(),
                denied,
                reports.len() - denied
            )?;
        }
    }
    Ok(i32::from(denied > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_come_from_the_image() {
        assert_eq!(
            container_name("123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.4"),
            "api"
        );
        assert_eq!(container_name("nginx@sha256:abc"), "nginx");
        assert_eq!(container_name("localhost:5000/x/y"), "y");
        assert_eq!(container_name(""), "app");
    }
}

//! `ecr-guard audit --once --pods-file F`: one cycle without a cluster. Pods
//! come from files as `kubectl get pods -A -o yaml` (or `-o json`) prints them,
//! policies and namespace labels from the local policy source (`--policy-file`,
//! `--namespace-labels`, `--namespaces-file`), and the reports are printed, not
//! written: as a summary, or as the `v1` `List` `kubectl get policyreport -A -o
//! yaml` (or `-o json`) would show.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use kube::api::DynamicObject;

use super::pods::AuditedPod;
use super::report::{self, Timestamp};
use super::{CycleSummary, Judged};
use crate::inventory::files::{LocalError, read_documents};

/// Why a `--pods-file` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PodsFileError {
    #[error(transparent)]
    Read(#[from] LocalError),
    #[error("{path}: document {index}: {reason}")]
    Manifest {
        path: PathBuf,
        index: usize,
        reason: String,
    },
}

/// `--output` of a local audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditOutput {
    /// The summary `audit --once` prints in cluster mode.
    Summary,
    /// The reports as `kubectl get policyreport -A -o yaml` prints them.
    Yaml,
    /// The reports as `kubectl get policyreport -A -o json` prints them.
    Json,
}

/// The running Pods of these files (a `List` or one Pod a document; JSON is
/// YAML; read as `check -f` reads manifests), outside `excluded` namespaces:
/// Succeeded and Failed Pods are left out, as the API server's field selector
/// leaves them out in cluster mode. A Pod without a namespace is in `default`.
/// Errors: a file that cannot be read or parsed, any other kind than a v1 Pod.
pub fn read_pods(paths: &[PathBuf], excluded: &[String]) -> Result<Vec<AuditedPod>, PodsFileError> {
    let mut pods = Vec::new();
    for path in paths {
        for (index, doc) in read_documents(path)? {
            let bad = |reason: String| PodsFileError::Manifest {
                path: path.clone(),
                index,
                reason,
            };
            let mut objects = Vec::new();
            crate::check::flatten(doc, &mut objects).map_err(bad)?;
            for object in objects {
                if let Some(pod) = pod(object).map_err(bad)?
                    && !excluded.contains(&pod.namespace)
                {
                    pods.push(pod);
                }
            }
        }
    }
    Ok(pods)
}

/// One object → the Pod to judge; `None` for a Pod that runs no more.
fn pod(mut object: serde_json::Value) -> Result<Option<AuditedPod>, String> {
    let text = |key: &str| object.get(key).and_then(|v| v.as_str()).unwrap_or("");
    if (text("apiVersion"), text("kind")) != ("v1", "Pod") {
        return Err(format!(
            "{} {} is not a Pod (expected Pods as kubectl get pods -A -o yaml prints them)",
            text("apiVersion"),
            text("kind")
        ));
    }
    let phase = object
        .pointer("/status/phase")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    // What RUNNING_PODS selects in cluster mode.
    if matches!(phase, "Succeeded" | "Failed") {
        return Ok(None);
    }
    if object.pointer("/metadata/namespace").is_none()
        && let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut())
    {
        meta.insert("namespace".into(), "default".into());
    }
    let object: DynamicObject = serde_json::from_value(object).map_err(|e| e.to_string())?;
    AuditedPod::from_object(&object)
        .map(Some)
        .ok_or_else(|| "a Pod without metadata.name".to_string())
}

/// The reports of a judged set of Pods as a `v1` `List`, keys sorted as kubectl
/// prints them. Each namespace's results become its parts
/// ([`report::parts`]), timestamped `now`.
pub fn report_list(judged: &Judged, now: SystemTime) -> serde_json::Value {
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let timestamp = Timestamp { seconds, nanos: 0 };
    let mut items = Vec::new();
    for (namespace, results) in &judged.desired {
        if results.is_empty() {
            continue;
        }
        for (name, body) in report::parts(results.clone(), None, timestamp) {
            items.push(body.to_object(namespace, &name));
        }
    }
    let mut list = serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    });
    list.sort_all_objects();
    list
}

/// Prints a local audit's outcome; the summary line says the reports were not
/// written. Returns `--once`'s exit code.
pub fn print(
    judged: Judged,
    now: SystemTime,
    output: AuditOutput,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let list = report_list(&judged, now);
    let mut summary: CycleSummary = judged.summary;
    summary.printed = Some(list["items"].as_array().map_or(0, Vec::len));
    match output {
        AuditOutput::Summary => write!(out, "{summary}")?,
        AuditOutput::Yaml => write!(out, "{}", serde_saphyr::to_string(&list)?)?,
        AuditOutput::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
    }
    Ok(summary.exit_code())
}

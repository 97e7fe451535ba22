//! `ecr-guard check`: the webhook's judgement from a terminal or a CI pipeline.
//! Exit 0 when nothing enforced is violated, 1 when something is, 2 on a usage,
//! policy or input error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::cli::{CheckArgs, OutputFormat};
use crate::inventory::{Inventory, NAME_LABEL};
use crate::judging::Judge;
use crate::policy::{self, ImageUse, Mode, Policy, Slot, Verdict};
use crate::workload::{self, WorkloadKind};

/// What `check` failed to do before it could judge anything (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("nothing to check: give --image IMAGE and/or -f FILE")]
    NothingToCheck,
    #[error(transparent)]
    Local(#[from] crate::inventory::files::LocalError),
    #[error("failed to read standard input")]
    ReadStdin(#[source] std::io::Error),
    #[error("{input}: document {index}: {reason}")]
    Manifest {
        /// The file, or `standard input`.
        input: String,
        index: usize,
        reason: String,
    },
    #[error(
        "{input}: no Pod or workload to check ({found}); check judges Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs"
    )]
    NoWorkloads {
        /// The file, or `standard input`.
        input: String,
        /// What the file holds instead, e.g. `it holds 1 EcrEncryptionPolicy`.
        found: String,
    },
    #[error("invalid --namespace {value:?}: not a valid namespace name: {reason}")]
    Namespace {
        value: String,
        reason: crate::k8s_names::Invalid,
    },
    #[error("invalid --image {value:?}: {reason}")]
    Image { value: String, reason: &'static str },
    #[error("{count} invalid polic{}:\n{details}", if *count == 1 { "y" } else { "ies" })]
    InvalidPolicies { count: usize, details: String },
}

/// The namespace of `--image` and of manifests that name none, without `-n`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One thing judged: a Pod from --image, or a workload from a manifest.
#[derive(Debug)]
pub struct Unit {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub image_uses: Vec<ImageUse>,
}

/// The judgement of one unit, as printed.
#[derive(Debug, Serialize)]
pub struct UnitReport {
    pub namespace: String,
    /// Whether the inventory knows the namespace (`--namespace-labels`,
    /// `--namespaces-file`, or the cluster). `false`: it was judged by its
    /// `kubernetes.io/metadata.name` label alone, which may not be how the
    /// cluster labels it.
    pub namespace_known: bool,
    pub kind: String,
    pub name: String,
    /// allowed | denied
    pub decision: &'static str,
    /// The policies that judged this object (their namespace selector matches
    /// and they select one of its images, or they are invalid), by name; empty
    /// when none did.
    pub policies: Vec<String>,
    pub violations: Vec<ViolationReport>,
    pub warnings: Vec<String>,
    pub hints: Vec<String>,
    /// Where known namespaces come from, for the unknown-namespace warning.
    #[serde(skip)]
    pub namespace_source: &'static str,
    /// Why no policy judged this object, when none did.
    #[serde(skip)]
    pub no_policy: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ViolationReport {
    pub policy: String,
    pub mode: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// Collects what to judge from --image and -f. Fails (exit 2) on a namespace or
/// image the API server would refuse, and on a file with nothing to judge.
pub fn units(args: &CheckArgs) -> Result<Vec<Unit>, CheckError> {
    if args.images.is_empty() && args.files.is_empty() {
        return Err(CheckError::NothingToCheck);
    }
    if let Some(value) = &args.namespace {
        crate::k8s_names::dns1123_label(value).map_err(|reason| CheckError::Namespace {
            value: value.clone(),
            reason,
        })?;
    }
    let namespace = args.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    let mut units = Vec::new();
    for image in &args.images {
        check_image_flag(image)?;
        units.push(Unit {
            namespace: namespace.to_string(),
            kind: "Pod".into(),
            name: format!("(--image {image})"),
            image_uses: vec![ImageUse::new(
                Slot::Container,
                container_name(image),
                image.clone(),
            )],
        });
    }
    for path in &args.files {
        units.extend(manifest_units(path, args.namespace.as_deref())?);
    }
    Ok(units)
}

/// An `--image` the API server would refuse in a Pod is an input error, not a
/// verdict: empty (`--image ''`, `--image a,,b`) or with surrounding whitespace.
fn check_image_flag(image: &str) -> Result<(), CheckError> {
    let reason = if image.trim().is_empty() {
        "empty image reference"
    } else if image.trim() != image {
        "leading or trailing whitespace, which the API server refuses in a Pod"
    } else {
        return Ok(());
    };
    Err(CheckError::Image {
        value: image.to_string(),
        reason,
    })
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

/// How messages name a `-f` argument.
fn source_name(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// The units of one `-f` file (or `-` for standard input). `namespace_flag` is
/// `-n` when given: as with `kubectl apply -n`, an object naming another
/// namespace is then an error.
fn manifest_units(path: &Path, namespace_flag: Option<&str>) -> Result<Vec<Unit>, CheckError> {
    let source = source_name(path);
    let docs = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(CheckError::ReadStdin)?;
        crate::inventory::files::parse_documents(&text, path)?
    } else {
        crate::inventory::files::read_documents(path)?
    };
    let mut out = Vec::new();
    // Objects that run no images (Services, ConfigMaps…), by kind: skipped, as
    // the webhook never sees them, but named if nothing else is found.
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for (index, doc) in docs {
        let bad = |reason: String| CheckError::Manifest {
            input: source.clone(),
            index,
            reason,
        };
        let mut objects = Vec::new();
        flatten(doc, &mut objects).map_err(bad)?;
        for object in objects {
            let api_version = str_field(&object, "apiVersion");
            let kind = str_field(&object, "kind");
            match WorkloadKind::from_api_version_kind(api_version, kind) {
                Some(workload) => out.push(
                    manifest_unit(workload, &object, namespace_flag)
                        .map_err(|reason| bad(format!("{kind}: {reason}")))?,
                ),
                None => *skipped.entry(kind.to_string()).or_default() += 1,
            }
        }
    }
    if out.is_empty() {
        let found = if skipped.is_empty() {
            "it holds no objects".to_string()
        } else {
            let kinds: Vec<String> = skipped
                .iter()
                .map(|(kind, count)| match count {
                    1 => format!("1 {kind}"),
                    n => format!("{n} {kind} objects"),
                })
                .collect();
            format!("it holds {}", kinds.join(", "))
        };
        return Err(CheckError::NoWorkloads {
            input: source,
            found,
        });
    }
    Ok(out)
}

fn str_field<'v>(object: &'v serde_json::Value, field: &str) -> &'v str {
    object
        .get(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// A document → the objects in it: a `List` (`kind: List`, or `…List` with
/// `items`, as `kubectl get -o yaml` prints) gives its items, nested lists
/// included. A document that is not an object, or has no `apiVersion` or `kind`,
/// is an error (kubectl refuses it too) rather than something silently skipped.
pub(crate) fn flatten(
    doc: serde_json::Value,
    out: &mut Vec<serde_json::Value>,
) -> Result<(), String> {
    let serde_json::Value::Object(mut map) = doc else {
        return Err("is not an object (a Kubernetes manifest has apiVersion and kind)".into());
    };
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let kind = text(map.get("kind")).ok_or("has no kind")?;
    if text(map.get("apiVersion")).is_none() {
        return Err(format!("{kind} has no apiVersion"));
    }
    let is_list = kind == "List" || (kind.ends_with("List") && map.contains_key("items"));
    if !is_list {
        out.push(serde_json::Value::Object(map));
        return Ok(());
    }
    match map.remove("items") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                flatten(item, out).map_err(|e| format!("{kind} items[{i}] {e}"))?;
            }
            Ok(())
        }
        Some(_) => Err(format!("{kind}: items is not a list")),
    }
}

/// One Pod or workload object → a unit, in its own namespace (else `-n`, else
/// `default`). The reason an object cannot be judged.
fn manifest_unit(
    workload: WorkloadKind,
    object: &serde_json::Value,
    namespace_flag: Option<&str>,
) -> Result<Unit, String> {
    let meta = object.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = field("name")
        .or_else(|| field("generateName").map(|g| format!("{g}*")))
        .ok_or("no metadata.name")?;
    let namespace = match meta.and_then(|m| m.get("namespace")) {
        // The API server takes an empty namespace as none given.
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(ns)) if ns.is_empty() => None,
        Some(serde_json::Value::String(ns)) => Some(ns.clone()),
        Some(other) => {
            return Err(format!(
                "{name}: metadata.namespace is not a string: {other}"
            ));
        }
    };
    let namespace = match (namespace, namespace_flag) {
        (Some(ns), _) => {
            crate::k8s_names::dns1123_label(&ns).map_err(|e| {
                format!("{name}: metadata.namespace {ns:?} is not a valid namespace name: {e}")
            })?;
            if let Some(flag) = namespace_flag.filter(|flag| *flag != ns) {
                // kubectl apply -n refuses this too.
                return Err(format!(
                    "{name}: the namespace from the object, {ns:?}, does not match --namespace {flag:?}; drop -n or make them agree"
                ));
            }
            ns
        }
        (None, Some(flag)) => flag.to_string(),
        (None, None) => DEFAULT_NAMESPACE.to_string(),
    };
    let image_uses = workload::image_uses(workload, object).map_err(|e| format!("{name}: {e}"))?;
    Ok(Unit {
        namespace,
        kind: workload.as_str().to_string(),
        name,
        image_uses,
    })
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

/// Judges every unit, noting whether its namespace is known and which policies
/// judged it.
pub async fn decide_all(
    inventory: &dyn Inventory,
    judge: &Judge,
    units: Vec<Unit>,
) -> Vec<UnitReport> {
    let policies = inventory.policies();
    let mut reports = Vec::with_capacity(units.len());
    for unit in units {
        let namespace = inventory.namespace(&unit.namespace);
        let verdict = judge
            .decide(&policies, &namespace.labels, &unit.image_uses)
            .await;
        let in_namespace = policy::applicable(&policies, &namespace.labels);
        let judged_by = judged_by(&in_namespace, &unit.image_uses);
        let no_policy = judged_by
            .is_empty()
            .then(|| no_policy_reason(&unit, &in_namespace));
        let mut report = report(unit, &verdict);
        report.namespace_known = namespace.known;
        report.namespace_source = inventory.namespace_source();
        report.policies = judged_by;
        report.no_policy = no_policy;
        reports.push(report);
    }
    reports
}

/// The policies (of those selecting the namespace) that judge some of these
/// image uses, as evaluation does: an invalid policy judges everything, an image
/// that cannot be parsed is judged by every policy, others by their globs.
fn judged_by(in_namespace: &[&Policy], image_uses: &[ImageUse]) -> Vec<String> {
    if image_uses.is_empty() {
        return Vec::new();
    }
    in_namespace
        .iter()
        .filter(|p| {
            !p.is_valid()
                || image_uses.iter().any(|s| match &*s.image {
                    Ok(image) => p.selects_image(&image.name),
                    Err(_) => true,
                })
        })
        .map(|p| p.name.clone())
        .collect()
}

fn no_policy_reason(unit: &Unit, in_namespace: &[&Policy]) -> String {
    if unit.image_uses.is_empty() {
        return "it runs no images".to_string();
    }
    if in_namespace.is_empty() {
        return format!("no policy selects namespace {}", unit.namespace);
    }
    let names: Vec<&str> = in_namespace.iter().map(|p| p.name.as_str()).collect();
    format!(
        "the policies selecting namespace {} ({}) select none of its images",
        unit.namespace,
        names.join(", ")
    )
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
        namespace_known: true,
        kind: unit.kind,
        name: unit.name,
        decision: if verdict.is_denied() {
            "denied"
        } else {
            "allowed"
        },
        policies: Vec::new(),
        violations,
        warnings: verdict.notes.clone(),
        hints: policy::hints(verdict.violations.iter())
            .map(ToString::to_string)
            .collect(),
        namespace_source: "",
        no_policy: None,
    }
}

/// Prints the reports to `out`, and to `err` one warning per namespace that is
/// not known (in either format); returns the exit code (0 or 1).
pub fn print(
    reports: &[UnitReport],
    format: OutputFormat,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> std::io::Result<i32> {
    let denied = reports.iter().filter(|r| r.decision == "denied").count();
    let mut warned = BTreeSet::new();
    for r in reports.iter().filter(|r| !r.namespace_known) {
        if warned.insert(r.namespace.as_str()) {
            writeln!(
                err,
                "ecr-guard: warning: namespace {:?} is not in {}: judged by its {NAME_LABEL} label alone, as if it had no other labels; is the name misspelt, or the namespace missing there?",
                r.namespace, r.namespace_source
            )?;
        }
    }
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
                if let Some(reason) = &r.no_policy {
                    writeln!(out, "  [note] no policy applies: {reason}")?;
                }
                if !r.namespace_known {
                    writeln!(
                        out,
                        "  [note] namespace {} is unknown: judged by its name label alone",
                        r.namespace
                    )?;
                }
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

    fn policy(name: &str, spec: serde_json::Value) -> Policy {
        Policy::compile(name, &serde_json::from_value(spec).unwrap())
    }

    /// "Which policies judged it" follows evaluation: by image glob, except that
    /// an invalid policy, or an image that cannot be parsed, is judged by every
    /// policy selecting the namespace; nothing judges an object with no images.
    #[test]
    fn judged_by_names_the_policies_evaluation_applies() {
        let team = policy("team", serde_json::json!({"images": ["docker.io/team/*"]}));
        let broken = policy("broken", serde_json::json!({"images": ["team/[x"]}));
        assert!(!broken.is_valid());
        let nginx = [ImageUse::new(Slot::Container, "c", "nginx:1.27")];
        let mine = [ImageUse::new(Slot::Container, "c", "team/app:1")];
        let unreadable = [ImageUse::new(Slot::Container, "c", "NGINX::")];
        assert!(judged_by(&[&team], &nginx).is_empty());
        assert_eq!(judged_by(&[&team], &mine), ["team"]);
        assert_eq!(judged_by(&[&team], &unreadable), ["team"]);
        assert_eq!(judged_by(&[&broken, &team], &nginx), ["broken"]);
        assert!(judged_by(&[&broken, &team], &[]).is_empty());
    }

    #[test]
    fn lists_are_flattened_and_non_manifests_refused() {
        let mut out = Vec::new();
        flatten(
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "PodList", "items": [
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}},
                ]},
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}},
            ]}),
            &mut out,
        )
        .unwrap();
        let kinds: Vec<&str> = out.iter().map(|o| str_field(o, "kind")).collect();
        assert_eq!(kinds, ["Pod", "Deployment"]);
        let refused = |doc: serde_json::Value| flatten(doc, &mut Vec::new()).unwrap_err();
        assert!(refused(serde_json::json!("text")).starts_with("is not an object"));
        assert_eq!(
            refused(serde_json::json!({"apiVersion": "v1"})),
            "has no kind"
        );
        assert_eq!(
            refused(serde_json::json!({"kind": "Pod", "apiVersion": ""})),
            "Pod has no apiVersion"
        );
        assert_eq!(
            refused(serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [1]})),
            "List items[0] is not an object (a Kubernetes manifest has apiVersion and kind)"
        );
    }

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

//! Policies and namespace labels from files and flags, for running without a cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::inventory::{StaticInventory, compile_all};
use crate::policy::EcrEncryptionPolicy;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("failed to read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path} as YAML: {reason}")]
    ParseYaml { path: PathBuf, reason: String },
    #[error(
        "{path}: document {index} is {kind:?}, expected an EcrEncryptionPolicy (apiVersion ecrguard.io/v1alpha1)"
    )]
    NotAPolicy {
        path: PathBuf,
        index: usize,
        kind: String,
    },
    #[error("{path}: document {index} (EcrEncryptionPolicy) is malformed: {reason}")]
    MalformedPolicy {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{path}: document {index} has no metadata.name")]
    UnnamedPolicy { path: PathBuf, index: usize },
    #[error("policy {name:?} is defined twice ({first} and {second})")]
    DuplicatePolicy {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("invalid --namespace-labels {value:?}: {reason} (expected NS:KEY=VALUE[,KEY=VALUE…])")]
    NamespaceLabels { value: String, reason: String },
    #[error("{path}: {reason}")]
    NamespacesFile { path: PathBuf, reason: String },
}

/// Reads YAML files, each with one or more documents, into raw JSON values with
/// their document index. Empty documents (a trailing `---`) are skipped.
pub fn read_documents(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, LocalError> {
    let text = std::fs::read_to_string(path).map_err(|source| LocalError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_documents(&text, path)
}

/// Parses YAML text (one or more documents) read from `path` (for messages).
pub fn parse_documents(
    text: &str,
    path: &Path,
) -> Result<Vec<(usize, serde_json::Value)>, LocalError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| LocalError::ParseYaml {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(docs
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
        .map(|(i, d)| (i + 1, d))
        .collect())
}

/// A `List` document (`kind: List`, `EcrEncryptionPolicyList`, as `kubectl get -o
/// yaml` prints) → its items; any other document → itself.
pub fn list_items(doc: serde_json::Value) -> Vec<serde_json::Value> {
    match doc.get("kind").and_then(|k| k.as_str()) {
        Some(k) if k.ends_with("List") => match doc.get("items") {
            Some(serde_json::Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        },
        _ => vec![doc],
    }
}

/// Loads every policy from these files. A `List` of policies is unwrapped.
pub fn load_policies(paths: &[PathBuf]) -> Result<Vec<EcrEncryptionPolicy>, LocalError> {
    let mut policies: Vec<(EcrEncryptionPolicy, PathBuf)> = Vec::new();
    for path in paths {
        for (index, doc) in read_documents(path)? {
            for item in list_items(doc) {
                let policy = parse_policy(path, index, item)?;
                let name = policy.metadata.name.clone().unwrap_or_default();
                if let Some((_, first)) = policies
                    .iter()
                    .find(|(p, _)| p.metadata.name.as_deref() == Some(&name))
                {
                    return Err(LocalError::DuplicatePolicy {
                        name,
                        first: first.clone(),
                        second: path.clone(),
                    });
                }
                policies.push((policy, path.clone()));
            }
        }
    }
    Ok(policies.into_iter().map(|(p, _)| p).collect())
}

fn parse_policy(
    path: &Path,
    index: usize,
    doc: serde_json::Value,
) -> Result<EcrEncryptionPolicy, LocalError> {
    let api_version = doc
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let kind = doc.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if kind != "EcrEncryptionPolicy" || api_version != "ecrguard.io/v1alpha1" {
        return Err(LocalError::NotAPolicy {
            path: path.to_path_buf(),
            index,
            kind: format!("{api_version} {kind}").trim().to_string(),
        });
    }
    let policy: EcrEncryptionPolicy =
        serde_json::from_value(doc).map_err(|e| LocalError::MalformedPolicy {
            path: path.to_path_buf(),
            index,
            reason: e.to_string(),
        })?;
    if policy
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(LocalError::UnnamedPolicy {
            path: path.to_path_buf(),
            index,
        });
    }
    Ok(policy)
}

/// Parses `NS:KEY=VALUE[,KEY=VALUE…]` (`NS:` alone gives a namespace with no labels).
pub fn parse_namespace_labels(
    value: &str,
) -> Result<(String, BTreeMap<String, String>), LocalError> {
    let err = |reason: &str| LocalError::NamespaceLabels {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (ns, rest) = value
        .split_once(':')
        .ok_or_else(|| err("missing ':' after the namespace"))?;
    if ns.is_empty() {
        return Err(err("empty namespace"));
    }
    let mut labels = BTreeMap::new();
    for pair in rest.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| err("a label is missing '='"))?;
        if k.is_empty() {
            return Err(err("empty label key"));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok((ns.to_string(), labels))
}

#[derive(Deserialize)]
struct NamespaceView {
    kind: Option<String>,
    #[serde(default)]
    metadata: MetaView,
    #[serde(default)]
    items: Vec<NamespaceView>,
}

#[derive(Deserialize, Default)]
struct MetaView {
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Reads Namespace objects as `kubectl get ns -o yaml` prints them (a `List`, or
/// one or more Namespace documents).
pub fn load_namespaces(
    path: &Path,
) -> Result<HashMap<String, BTreeMap<String, String>>, LocalError> {
    let mut out = HashMap::new();
    for (index, doc) in read_documents(path)? {
        let view: NamespaceView =
            serde_json::from_value(doc).map_err(|e| LocalError::NamespacesFile {
                path: path.to_path_buf(),
                reason: format!("document {index}: {e}"),
            })?;
        let items = if view.kind.as_deref().is_some_and(|k| k.ends_with("List")) {
            view.items
        } else {
            vec![view]
        };
        for ns in items {
            if ns.kind.as_deref().is_some_and(|k| k != "Namespace") {
                return Err(LocalError::NamespacesFile {
                    path: path.to_path_buf(),
                    reason: format!(
                        "document {index} is a {:?}, expected Namespace",
                        ns.kind.unwrap_or_default()
                    ),
                });
            }
            let name = ns.metadata.name.ok_or_else(|| LocalError::NamespacesFile {
                path: path.to_path_buf(),
                reason: format!("document {index}: a Namespace has no metadata.name"),
            })?;
            out.insert(name, ns.metadata.labels);
        }
    }
    Ok(out)
}

/// Builds the inventory local mode serves from.
pub fn inventory(
    policy_files: &[PathBuf],
    namespaces_files: &[PathBuf],
    namespace_labels: &[String],
) -> Result<StaticInventory, LocalError> {
    let policies = load_policies(policy_files)?;
    let mut namespaces = HashMap::new();
    for path in namespaces_files {
        namespaces.extend(load_namespaces(path)?);
    }
    for value in namespace_labels {
        let (ns, labels) = parse_namespace_labels(value)?;
        namespaces
            .entry(ns)
            .or_insert_with(BTreeMap::new)
            .extend(labels);
    }
    Ok(StaticInventory::new(compile_all(&policies), namespaces))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn namespace_labels_flag_parses() {
        let (ns, labels) =
            parse_namespace_labels("payments:compliance=regulated,env=prod").unwrap();
        assert_eq!(ns, "payments");
        assert_eq!(
            labels.get("compliance").map(String::as_str),
            Some("regulated")
        );
        assert_eq!(labels.len(), 2);
        assert!(parse_namespace_labels("dev:").unwrap().1.is_empty());
    }

    #[test]
    fn namespace_labels_flag_rejects_bad_shapes() {
        for bad in ["payments", ":a=b", "ns:a", "ns:=b"] {
            let err = parse_namespace_labels(bad).unwrap_err().to_string();
            assert!(err.contains("expected NS:KEY=VALUE"), "{bad}: {err}");
        }
    }

    #[test]
    fn namespaces_file_reads_kubectl_list_output() {
        let f = file(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: payments\n    labels: {compliance: regulated}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: dev}\n",
        );
        let got = load_namespaces(f.path()).unwrap();
        assert_eq!(got["payments"]["compliance"], "regulated");
        assert!(got["dev"].is_empty());
    }

    #[test]
    fn policy_files_with_several_documents_load() {
        let f = file(
            "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {name: a}\nspec: {}\n---\napiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {name: b}\nspec: {mode: Warn}\n---\n",
        );
        let got = load_policies(&[f.path().to_path_buf()]).unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_non_policy_document_is_an_error_naming_it() {
        let f = file("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n");
        let err = load_policies(&[f.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("document 1 is \"v1 Pod\""), "{err}");
    }

    #[test]
    fn an_unknown_mode_is_an_error_naming_the_value() {
        let f = file(
            "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {name: a}\nspec: {mode: Enforced}\n",
        );
        let err = load_policies(&[f.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("Enforced"), "{err}");
    }

    #[test]
    fn duplicate_policy_names_are_an_error() {
        let doc = "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\nmetadata: {name: a}\nspec: {}\n";
        let (f1, f2) = (file(doc), file(doc));
        let err = load_policies(&[f1.path().to_path_buf(), f2.path().to_path_buf()]).unwrap_err();
        assert!(matches!(err, LocalError::DuplicatePolicy { .. }), "{err}");
    }

    #[test]
    fn broken_yaml_is_an_error_naming_the_file() {
        let f = file("a: [unclosed\n");
        let err = load_policies(&[f.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("failed to parse") && err.contains(&f.path().display().to_string()),
            "{err}"
        );
    }
}

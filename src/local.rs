//! Policies and namespace labels from files and flags, for running without a cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::inventory::{StaticInventory, compile_all};
use crate::policy::EcrEncryptionPolicy;
use crate::policy::strict::{self, UnknownField};

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
    /// Fields the CRD does not define, every one of the document (kubectl apply's
    /// strict field validation; see [`crate::policy::strict`]).
    #[error("{path}: document {index}: {}", join_fields(fields))]
    UnknownFields {
        path: PathBuf,
        index: usize,
        fields: Vec<UnknownField>,
    },
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
///
/// Errors: a file that cannot be read or parsed, a document that is not an
/// `ecrguard.io/v1alpha1` `EcrEncryptionPolicy`, a field the CRD does not define
/// anywhere in a document ([`LocalError::UnknownFields`], every such field with its
/// path), a value of the wrong type or an unknown enum value, no `metadata.name`,
/// and one name defined twice.
pub fn load_policies(paths: &[PathBuf]) -> Result<Vec<EcrEncryptionPolicy>, LocalError> {
    let mut policies: Vec<(EcrEncryptionPolicy, PathBuf)> = Vec::new();
    for path in paths {
        for (index, doc) in read_documents(path)? {
            let is_list = doc
                .get("kind")
                .and_then(|k| k.as_str())
                .is_some_and(|k| k.ends_with("List"));
            if is_list {
                check_list(path, index, &doc)?;
            }
            for (item, value) in list_items(doc).into_iter().enumerate() {
                let prefix = if is_list {
                    format!("items[{item}].")
                } else {
                    String::new()
                };
                let policy = parse_policy(path, index, &prefix, value)?;
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

/// `a: unknown field, did you mean b?; c: unknown field`
fn join_fields(fields: &[UnknownField]) -> String {
    let texts: Vec<String> = fields.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

fn schema_error(path: &Path, index: usize, e: strict::SchemaUnavailable) -> LocalError {
    LocalError::MalformedPolicy {
        path: path.to_path_buf(),
        index,
        reason: format!("its fields cannot be checked, a bug in ecr-guard: {e}"),
    }
}

/// A `List` wrapper's own fields: `item:` for `items:` would otherwise load nothing.
fn check_list(path: &Path, index: usize, doc: &serde_json::Value) -> Result<(), LocalError> {
    let fields = strict::unknown_list_fields(doc).map_err(|e| schema_error(path, index, e))?;
    if !fields.is_empty() {
        return Err(LocalError::UnknownFields {
            path: path.to_path_buf(),
            index,
            fields,
        });
    }
    if !doc.get("items").is_some_and(serde_json::Value::is_array) {
        return Err(LocalError::MalformedPolicy {
            path: path.to_path_buf(),
            index,
            reason: "a List needs `items`, a list of EcrEncryptionPolicy objects".into(),
        });
    }
    Ok(())
}

/// One policy document (or List item, `prefix` `items[N].` for messages).
fn parse_policy(
    path: &Path,
    index: usize,
    prefix: &str,
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
    let mut fields =
        strict::unknown_policy_fields(&doc).map_err(|e| schema_error(path, index, e))?;
    if !fields.is_empty() {
        for field in &mut fields {
            field.path.insert_str(0, prefix);
        }
        return Err(LocalError::UnknownFields {
            path: path.to_path_buf(),
            index,
            fields,
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

    fn load_err(text: &str) -> (LocalError, String) {
        let f = file(text);
        let err = load_policies(&[f.path().to_path_buf()]).unwrap_err();
        let shown = err.to_string();
        (err, shown)
    }

    const HEAD: &str = "apiVersion: ecrguard.io/v1alpha1\nkind: EcrEncryptionPolicy\n";

    #[test]
    fn a_misspelt_field_is_an_error_naming_its_path_and_the_field_meant() {
        let (err, shown) = load_err(&format!(
            "{HEAD}metadata: {{name: a}}\nspec: {{}}\n---\n{HEAD}metadata: {{name: b}}\nspec:\n  rules:\n    requireKeyRotaton: true\n"
        ));
        assert!(
            matches!(err, LocalError::UnknownFields { index: 2, .. }),
            "{err:?}"
        );
        assert!(
            shown.ends_with(
                ": document 2: spec.rules.requireKeyRotaton: unknown field, did you mean requireKeyRotation?"
            ),
            "{shown}"
        );
    }

    #[test]
    fn every_unknown_field_of_a_document_is_reported() {
        let (err, _) = load_err(&format!(
            "{HEAD}metadata: {{name: a, lables: {{x: y}}}}\nspec:\n  namespaceSelecter: {{matchLabels: {{a: b}}}}\n  rule: {{requireKeyRotation: true}}\n  namespaceSelector:\n    matchExpressions:\n    - {{key: k, operater: Exists}}\n"
        ));
        let LocalError::UnknownFields { fields, .. } = err else {
            panic!("{err:?}")
        };
        let got: Vec<String> = fields.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "metadata.lables: unknown field, did you mean labels?",
                "spec.namespaceSelecter: unknown field, did you mean namespaceSelector?",
                "spec.namespaceSelector.matchExpressions[0].operater: unknown field, did you mean operator?",
                "spec.rule: unknown field, did you mean rules?",
            ]
        );
    }

    #[test]
    fn unknown_fields_in_list_items_and_list_wrappers_are_errors() {
        let (_, shown) = load_err(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: ecrguard.io/v1alpha1\n  kind: EcrEncryptionPolicy\n  metadata: {name: a}\n  spec: {mode: Warn}\n- apiVersion: ecrguard.io/v1alpha1\n  kind: EcrEncryptionPolicy\n  metadata: {name: b}\n  spec: {imagess: []}\n",
        );
        assert!(
            shown.ends_with(
                "document 1: items[1].spec.imagess: unknown field, did you mean images?"
            ),
            "{shown}"
        );
        let (_, shown) = load_err("apiVersion: v1\nkind: List\nitem: []\n");
        assert!(
            shown.ends_with("document 1: item: unknown field, did you mean items?"),
            "{shown}"
        );
        let (err, _) = load_err("apiVersion: v1\nkind: List\nmetadata: {}\n");
        assert!(matches!(err, LocalError::MalformedPolicy { .. }), "{err:?}");
    }

    #[test]
    fn kubectl_get_output_with_metadata_and_status_loads() {
        let f = file(
            "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n- apiVersion: ecrguard.io/v1alpha1\n  kind: EcrEncryptionPolicy\n  metadata:\n    annotations:\n      kubectl.kubernetes.io/last-applied-configuration: '{}'\n    creationTimestamp: \"2026-11-01T10:00:00Z\"\n    generation: 3\n    labels: {team: payments}\n    managedFields:\n    - apiVersion: ecrguard.io/v1alpha1\n      fieldsType: FieldsV1\n      fieldsV1:\n        f:spec:\n          f:mode: {}\n      manager: kubectl\n      operation: Apply\n      time: \"2026-11-01T10:00:00Z\"\n    name: a\n    resourceVersion: \"123\"\n    uid: 0b7c5a2e-0000-4000-8000-000000000001\n  spec:\n    mode: Warn\n    namespaceSelector:\n      matchExpressions:\n      - {key: env, operator: In, values: [prod]}\n  status:\n    observedGeneration: 3\n    conditions:\n    - {type: Ready, status: \"True\", reason: Accepted, message: ok, lastTransitionTime: \"2026-11-01T10:00:01Z\", observedGeneration: 3}\n",
        );
        let got = load_policies(&[f.path().to_path_buf()]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].spec.mode, crate::policy::Mode::Warn);
    }

    #[test]
    fn a_field_given_twice_is_an_error_not_the_last_one_winning() {
        let (err, shown) = load_err(&format!(
            "{HEAD}metadata: {{name: a}}\nspec:\n  rules: {{requireKeyRotation: true}}\n  rules: {{}}\n"
        ));
        assert!(matches!(err, LocalError::ParseYaml { .. }), "{err:?}");
        assert!(shown.contains("duplicate mapping key: rules"), "{shown}");
    }

    #[test]
    fn a_policy_without_a_name_is_still_its_own_error() {
        let (err, _) = load_err(&format!(
            "{HEAD}metadata: {{labels: {{a: b}}}}\nspec: {{}}\n"
        ));
        assert!(matches!(err, LocalError::UnnamedPolicy { .. }), "{err:?}");
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

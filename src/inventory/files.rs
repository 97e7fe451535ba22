//! Local mode's source, for running without a cluster: policies from
//! `--policy-file`s, namespace labels from `--namespaces-file`s and
//! `--namespace-labels`, held to the rules the API server would apply (schema,
//! names, label syntax) so a file the cluster would refuse does not load here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tracing::warn;

use super::{Inventory, NAME_LABEL, NamespaceInfo, compile_all};
use crate::k8s_names;
use crate::policy::strict::{self, UnknownField};
use crate::policy::{EcrEncryptionPolicy, Policy};

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

/// Parses `NS:KEY=VALUE[,KEY=VALUE…]`, the labels of one namespace.
///
/// At least one label is required: `NS:` alone is refused, because it is most
/// often labels left out by mistake, and a namespace with no labels of its own
/// is written as the API server labels it, `NS:kubernetes.io/metadata.name=NS`.
/// The namespace must be a DNS-1123 label, each key a qualified name and each
/// value a label value, as the API server requires ([`crate::k8s_names`]); a
/// key given twice must have one value. Errors name what was wrong and the rule.
pub fn parse_namespace_labels(
    value: &str,
) -> Result<(String, BTreeMap<String, String>), LocalError> {
    let err = |reason: String| LocalError::NamespaceLabels {
        value: value.to_string(),
        reason,
    };
    let (ns, rest) = value
        .split_once(':')
        .ok_or_else(|| err("missing ':' after the namespace".to_string()))?;
    if ns.is_empty() {
        return Err(err("empty namespace".to_string()));
    }
    k8s_names::dns1123_label(ns).map_err(|e| {
        err(format!(
            "namespace {ns:?} is not a valid namespace name: {e}"
        ))
    })?;
    let mut labels = BTreeMap::new();
    if rest.is_empty() {
        return Err(err(format!(
            "no labels after '{ns}:' (for a namespace with no labels of its own, give the \
             label the API server sets on every namespace: {ns}:kubernetes.io/metadata.name={ns})"
        )));
    }
    for pair in rest.split(',') {
        if pair.is_empty() {
            return Err(err(
                "an empty label (two ',' in a row, or a ',' at an end)".to_string()
            ));
        }
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            err(format!(
                "label {pair:?} has no '=' (KEY= gives an empty value)"
            ))
        })?;
        check_label(ns, k, v).map_err(err)?;
        if let Some(first) = labels.get(k).filter(|first| *first != v) {
            return Err(err(format!(
                "label {k} is given twice, as {first:?} and {v:?}"
            )));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok((ns.to_string(), labels))
}

/// Whether `key=value` is a label the API server would accept on namespace `ns`;
/// the reason it would not.
fn check_label(ns: &str, key: &str, value: &str) -> Result<(), String> {
    k8s_names::qualified_name(key)
        .map_err(|e| format!("label key {key:?} is not a valid label key: {e}"))?;
    k8s_names::label_value(value).map_err(|e| {
        // `a=b c=d`: spaces where ',' was meant.
        let tip = if value.contains('=') {
            " (labels are separated by ',')"
        } else {
            ""
        };
        format!("label {key}: value {value:?} is not a valid label value{tip}: {e}")
    })?;
    if key == NAME_LABEL && value != ns {
        return Err(format!(
            "label {NAME_LABEL} is {value:?}, but the API server always sets it to the namespace's own name, {ns:?}"
        ));
    }
    Ok(())
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

/// Namespaces and their labels, with where each label came from so that a
/// conflict can name both sources.
#[derive(Default)]
struct NamespaceSet {
    labels: HashMap<String, BTreeMap<String, String>>,
    sources: HashMap<(String, String), String>,
}

impl NamespaceSet {
    /// Adds a namespace's labels from `source` (for messages). A namespace given
    /// again gets the union of its labels; a key given again must keep its value.
    fn add(
        &mut self,
        ns: String,
        labels: BTreeMap<String, String>,
        source: &str,
    ) -> Result<(), String> {
        let known = self.labels.entry(ns.clone()).or_default();
        for (key, value) in &labels {
            if let Some(first) = known.get(key).filter(|first| *first != value) {
                let first_source = self
                    .sources
                    .get(&(ns.clone(), key.clone()))
                    .map(String::as_str)
                    .unwrap_or_default();
                return Err(format!(
                    "namespace {ns:?}: label {key} is {first:?} in {first_source} but {value:?} here; a namespace has one value per label"
                ));
            }
        }
        for (key, value) in labels {
            self.sources
                .entry((ns.clone(), key.clone()))
                .or_insert_with(|| source.to_string());
            known.insert(key, value);
        }
        Ok(())
    }
}

/// Reads Namespace objects as `kubectl get ns -o yaml` prints them (a `List`, or
/// one or more Namespace documents). Names and labels are held to Kubernetes'
/// rules ([`crate::k8s_names`]); a file with no Namespace in it is an error, as is
/// one namespace given two values for a label.
pub fn load_namespaces(
    path: &Path,
) -> Result<HashMap<String, BTreeMap<String, String>>, LocalError> {
    let mut set = NamespaceSet::default();
    load_namespaces_into(&mut set, path)?;
    Ok(set.labels)
}

fn load_namespaces_into(set: &mut NamespaceSet, path: &Path) -> Result<(), LocalError> {
    let bad = |reason: String| LocalError::NamespacesFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut found = 0usize;
    for (index, doc) in read_documents(path)? {
        let view: NamespaceView =
            serde_json::from_value(doc).map_err(|e| bad(format!("document {index}: {e}")))?;
        let items = if view.kind.as_deref().is_some_and(|k| k.ends_with("List")) {
            view.items
        } else {
            vec![view]
        };
        for ns in items {
            if ns.kind.as_deref().is_some_and(|k| k != "Namespace") {
                return Err(bad(format!(
                    "document {index} is a {:?}, expected Namespace",
                    ns.kind.unwrap_or_default()
                )));
            }
            let name = ns.metadata.name.ok_or_else(|| {
                bad(format!(
                    "document {index}: a Namespace has no metadata.name"
                ))
            })?;
            k8s_names::dns1123_label(&name).map_err(|e| {
                bad(format!(
                    "document {index}: metadata.name {name:?} is not a valid namespace name: {e}"
                ))
            })?;
            for (key, value) in &ns.metadata.labels {
                check_label(&name, key, value)
                    .map_err(|e| bad(format!("document {index}: namespace {name}: {e}")))?;
            }
            let source = format!("{} document {index}", path.display());
            set.add(name, ns.metadata.labels, &source)
                .map_err(|e| bad(format!("document {index}: {e}")))?;
            found += 1;
        }
    }
    if found == 0 {
        return Err(bad("no Namespace in this file".to_string()));
    }
    Ok(())
}

/// Builds the inventory local mode serves from. Namespaces come from the
/// `--namespaces-file`s, then `--namespace-labels`: a namespace given in several
/// gets the union of their labels, and a label given two values is an error.
pub fn inventory(
    policy_files: &[PathBuf],
    namespaces_files: &[PathBuf],
    namespace_labels: &[String],
) -> Result<StaticInventory, LocalError> {
    let policies = load_policies(policy_files)?;
    let mut namespaces = NamespaceSet::default();
    for path in namespaces_files {
        load_namespaces_into(&mut namespaces, path)?;
    }
    for value in namespace_labels {
        let (ns, labels) = parse_namespace_labels(value)?;
        let source = format!("--namespace-labels {value:?}");
        namespaces
            .add(ns, labels, &source)
            .map_err(|reason| LocalError::NamespaceLabels {
                value: value.clone(),
                reason,
            })?;
    }
    Ok(StaticInventory::new(
        compile_all(&policies),
        namespaces.labels,
    ))
}

/// How many distinct unknown namespaces [`StaticInventory`] logs one by one; past
/// this it says once that it stops, so a caller inventing namespaces cannot grow
/// the set (or the log) without bound.
const MAX_LOGGED_UNKNOWN_NAMESPACES: usize = 1024;

/// A fixed inventory: policies and namespace labels given at start-up (by
/// [`inventory`] in local mode).
#[derive(Clone, Debug)]
pub struct StaticInventory {
    policies: Arc<[Policy]>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Unknown namespaces already logged by `namespace_labels`.
    logged_unknown: Arc<Mutex<UnknownLog>>,
}

#[derive(Debug, Default)]
struct UnknownLog {
    seen: HashSet<String>,
    /// The limit was reached (and said so): nothing more is logged.
    full: bool,
}

impl StaticInventory {
    pub fn new(
        policies: Arc<[Policy]>,
        namespaces: HashMap<String, BTreeMap<String, String>>,
    ) -> Self {
        Self {
            policies,
            namespaces,
            logged_unknown: Arc::default(),
        }
    }

    /// Logs (at warn) the first review in a namespace the files do not describe,
    /// once per namespace: in local `serve` mode that namespace is judged by its
    /// name label alone, which is worth knowing but not worth a line per review.
    fn note_unknown(&self, namespace: &str) {
        // A poisoned lock only means another thread panicked while logging; the
        // set is still usable.
        let mut logged = self
            .logged_unknown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.full || logged.seen.contains(namespace) {
            return;
        }
        if logged.seen.len() == MAX_LOGGED_UNKNOWN_NAMESPACES {
            logged.full = true;
            warn!(
                limit = MAX_LOGGED_UNKNOWN_NAMESPACES,
                "more namespaces not described by --namespace-labels or --namespaces-file; no longer logging each"
            );
            return;
        }
        logged.seen.insert(namespace.to_string());
        warn!(
            namespace,
            "namespace not described by --namespace-labels or --namespaces-file: judged by its {NAME_LABEL} label alone (logged once per namespace)"
        );
    }
}

impl Inventory for StaticInventory {
    fn policies(&self) -> Arc<[Policy]> {
        self.policies.clone()
    }

    fn namespace(&self, namespace: &str) -> NamespaceInfo {
        let known = self.namespaces.get(namespace);
        let mut labels = known.cloned().unwrap_or_default();
        labels.insert(NAME_LABEL.to_string(), namespace.to_string());
        NamespaceInfo {
            labels,
            known: known.is_some(),
        }
    }

    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let info = self.namespace(namespace);
        if !info.known {
            self.note_unknown(namespace);
        }
        info.labels
    }

    fn namespace_source(&self) -> &'static str {
        "--namespace-labels or --namespaces-file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::name_only_labels;
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
        let (_, labels) = parse_namespace_labels("dev:kubernetes.io/metadata.name=dev").unwrap();
        assert_eq!(labels, name_only_labels("dev"));
    }

    #[test]
    fn namespace_labels_flag_rejects_bad_shapes() {
        for bad in ["payments", ":a=b", "ns:a", "ns:=b"] {
            let err = parse_namespace_labels(bad).unwrap_err().to_string();
            assert!(err.contains("expected NS:KEY=VALUE"), "{bad}: {err}");
        }
    }

    /// The forms of issue 14 and their kind: each is refused with the rule it
    /// breaks, rather than taken as labels that change the verdict.
    #[test]
    fn namespace_labels_flag_refuses_what_kubernetes_refuses_naming_the_rule() {
        let cases = [
            (
                "payments: compliance=regulated",
                "label key \" compliance\" is not a valid label key: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ),
            (
                "payments:compliance=regulated env=prod",
                "label compliance: value \"regulated env=prod\" is not a valid label value (labels are separated by ','): a valid label must be an empty string or consist of",
            ),
            (
                "payments:compliance=regulated ",
                "value \"regulated \" is not a valid label value: a valid label must be",
            ),
            (
                "Payments:compliance=regulated",
                "namespace \"Payments\" is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
            ),
            (
                " payments:compliance=regulated",
                "namespace \" payments\" is not a valid namespace name",
            ),
            (
                "pay_ments:compliance=regulated",
                "namespace \"pay_ments\" is not a valid namespace name",
            ),
            (
                &format!("{}:a=b", "n".repeat(64)),
                "is not a valid namespace name: must be no more than 63 characters",
            ),
            (
                "payments:compliance=regulated,",
                "an empty label (two ',' in a row, or a ',' at an end)",
            ),
            ("payments:a=b,,c=d", "an empty label"),
            (
                "payments:",
                "no labels after 'payments:' (for a namespace with no labels of its own, give the label the API server sets on every namespace: payments:kubernetes.io/metadata.name=payments)",
            ),
            ("payments:,", "an empty label"),
            (
                "payments:compliance",
                "label \"compliance\" has no '=' (KEY= gives an empty value)",
            ),
            (
                "payments:a=b,a=c",
                "label a is given twice, as \"b\" and \"c\"",
            ),
            (
                "payments:Example.com/tier=x",
                "label key \"Example.com/tier\" is not a valid label key: prefix part a lowercase RFC 1123 subdomain",
            ),
            (
                "payments:a/b/c=x",
                "is not a valid label key: a qualified name must consist of",
            ),
            (
                &format!("payments:tier={}", "v".repeat(64)),
                "is not a valid label value: must be no more than 63 characters",
            ),
            (
                "payments:kubernetes.io/metadata.name=shop",
                "label kubernetes.io/metadata.name is \"shop\", but the API server always sets it to the namespace's own name, \"payments\"",
            ),
        ];
        for (value, expected) in cases {
            let err = parse_namespace_labels(value).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid --namespace-labels {value:?}: ")),
                "{value}: {err}"
            );
            assert!(err.contains(expected), "{value}: {err}");
            assert!(
                err.ends_with("(expected NS:KEY=VALUE[,KEY=VALUE…])"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn namespace_labels_flag_takes_every_form_kubernetes_takes() {
        let (ns, labels) = parse_namespace_labels(
            "team-1:app.kubernetes.io/part-of=Shop_2.x,empty=,kubernetes.io/metadata.name=team-1,a=b,a=b",
        )
        .unwrap();
        assert_eq!(ns, "team-1");
        assert_eq!(
            labels,
            BTreeMap::from([
                ("a".to_string(), "b".to_string()),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "Shop_2.x".to_string()
                ),
                ("empty".to_string(), String::new()),
                (
                    "kubernetes.io/metadata.name".to_string(),
                    "team-1".to_string()
                ),
            ])
        );
    }

    /// A namespace with no labels of its own is given its name label, as the
    /// API server sets it: it is then known (unlike one not given at all).
    #[test]
    fn a_namespace_given_only_its_name_label_is_known() {
        let inv = inventory(
            &[],
            &[],
            &["dev:kubernetes.io/metadata.name=dev".to_string()],
        )
        .unwrap();
        let dev = inv.namespace("dev");
        assert!(dev.known);
        assert_eq!(dev.labels, name_only_labels("dev"));
        let other = inv.namespace("prod");
        assert!(!other.known);
        assert_eq!(other.labels, name_only_labels("prod"));
    }

    #[test]
    fn a_namespace_given_twice_gets_the_union_of_its_labels_and_one_value_per_key() {
        let flags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let inv = inventory(
            &[],
            &[],
            &flags(&[
                "payments:compliance=regulated",
                "payments:env=prod",
                "payments:kubernetes.io/metadata.name=payments",
            ]),
        )
        .unwrap();
        let labels = inv.namespace("payments").labels;
        assert_eq!(labels["compliance"], "regulated");
        assert_eq!(labels["env"], "prod");

        let err = inventory(
            &[],
            &[],
            &flags(&["payments:env=prod", "payments:env=staging"]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "invalid --namespace-labels \"payments:env=staging\": namespace \"payments\": label env is \"prod\" in --namespace-labels \"payments:env=prod\" but \"staging\" here; a namespace has one value per label (expected NS:KEY=VALUE[,KEY=VALUE…])"
        );

        // A file and a flag: the union, and a conflict names the file's document.
        let f = file(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments, labels: {env: prod}}\n",
        );
        let inv = inventory(
            &[],
            &[f.path().to_path_buf()],
            &flags(&["payments:compliance=regulated"]),
        )
        .unwrap();
        let labels = inv.namespace("payments").labels;
        assert_eq!(
            (labels["env"].as_str(), labels["compliance"].as_str()),
            ("prod", "regulated")
        );
        let err = inventory(
            &[],
            &[f.path().to_path_buf()],
            &flags(&["payments:env=dev"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "label env is \"prod\" in {} document 1 but \"dev\" here",
                f.path().display()
            )),
            "{err}"
        );

        // Two files describing one namespace differently.
        let g = file(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: payments, labels: {env: staging}}\n",
        );
        let err = inventory(&[], &[f.path().to_path_buf(), g.path().to_path_buf()], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{}: document 1: namespace \"payments\": label env",
                g.path().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn namespaces_file_names_and_labels_follow_kubernetes_rules() {
        let ns = |meta: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {meta}\n");
        let cases = [
            (
                ns("{name: Payments}"),
                "document 1: metadata.name \"Payments\" is not a valid namespace name: a lowercase RFC 1123 label",
            ),
            (
                ns("{name: payments, labels: {'compliance ': regulated}}"),
                "document 1: namespace payments: label key \"compliance \" is not a valid label key",
            ),
            (
                ns("{name: payments, labels: {compliance: 'regulated env=prod'}}"),
                "document 1: namespace payments: label compliance: value \"regulated env=prod\" is not a valid label value",
            ),
            (
                ns("{name: payments, labels: {kubernetes.io/metadata.name: shop}}"),
                "always sets it to the namespace's own name",
            ),
            (
                ns("{name: payments, labels: {tier: 1}}"),
                "document 1: invalid type: integer `1`, expected a string",
            ),
            (
                "apiVersion: v1\nkind: List\nitems: []\n".to_string(),
                "no Namespace in this file",
            ),
            (String::new(), "no Namespace in this file"),
            (
                format!(
                    "{}---\n{}",
                    ns("{name: payments, labels: {env: prod}}"),
                    ns("{name: payments, labels: {env: dev}}")
                ),
                "document 2: namespace \"payments\": label env is \"prod\" in",
            ),
        ];
        for (text, expected) in cases {
            let f = file(&text);
            let err = load_namespaces(f.path()).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{}: ", f.path().display())) && err.contains(expected),
                "{text}: {err}"
            );
        }
        // The same namespace twice with the same labels is harmless.
        let f = file(&format!(
            "{}---\n{}",
            ns("{name: dev, labels: {env: dev}}"),
            ns("{name: dev}")
        ));
        assert_eq!(load_namespaces(f.path()).unwrap()["dev"]["env"], "dev");
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

    /// Everything logged while `f` runs, as text lines.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn payments() -> StaticInventory {
        StaticInventory::new(
            Arc::from(Vec::new()),
            HashMap::from([(
                "payments".to_string(),
                BTreeMap::from([("compliance".to_string(), "regulated".to_string())]),
            )]),
        )
    }

    #[test]
    fn a_namespace_is_known_only_when_described() {
        let inv = payments();
        let known = inv.namespace("payments");
        assert!(known.known);
        assert_eq!(known.labels["compliance"], "regulated");
        assert_eq!(known.labels[NAME_LABEL], "payments");
        let unknown = inv.namespace("paymnets");
        assert!(!unknown.known);
        assert_eq!(unknown.labels, name_only_labels("paymnets"));
    }

    /// Local `serve`: admission's read of an unknown namespace is logged once per
    /// namespace, not per review; a known one never; the labels (so the verdict)
    /// are what they were.
    #[test]
    fn unknown_namespaces_are_logged_once_each_and_the_labels_are_unchanged() {
        let inv = payments();
        let lines = logged(|| {
            for _ in 0..3 {
                assert_eq!(inv.namespace_labels("payments")["compliance"], "regulated");
                assert_eq!(
                    inv.namespace_labels("paymnets"),
                    name_only_labels("paymnets")
                );
                assert_eq!(inv.namespace_labels("shop"), name_only_labels("shop"));
                // `namespace` (what `check` reads, and reports itself) logs nothing.
                assert!(!inv.namespace("dev").known);
            }
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains("namespace=\"paymnets\""), "{}", lines[0]);
        assert!(
            lines[0].contains("not described by --namespace-labels or --namespaces-file"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("namespace=\"shop\""), "{}", lines[1]);
        // A clone (as handed to each server task) shares what was logged.
        assert!(logged(|| drop(inv.clone().namespace_labels("shop"))).is_empty());
    }

    /// Through admission, as local `serve` runs it: a review in a namespace the
    /// files do not describe is logged (once), and its verdict is unchanged — the
    /// policy selecting `compliance=regulated` does not apply there.
    #[test]
    fn admission_logs_a_review_in_an_unknown_namespace_once_and_judges_it_as_before() {
        use crate::admission::Admission;
        use crate::judging::{FixedFacts, Judge};
        use crate::metrics::AdmissionMetrics;
        use crate::policy::{EcrEncryptionPolicySpec, NonEcrImages, Options};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

        let spec = EcrEncryptionPolicySpec {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "compliance".to_string(),
                    "regulated".to_string(),
                )])),
                ..LabelSelector::default()
            }),
            non_ecr_images: NonEcrImages::Deny,
            ..serde_json::from_value(serde_json::json!({})).unwrap()
        };
        let mut inv = payments();
        inv.policies = Arc::from(vec![Policy::compile("no-hub", &spec)]);
        let admission = Admission::new(
            Arc::new(inv),
            Judge::new(
                Arc::new(FixedFacts::failing("no AWS in this test")),
                Options::default(),
                std::time::Duration::from_secs(1),
            ),
            AdmissionMetrics::default(),
        );
        let review = |namespace: &str| {
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": namespace,
                    "operation": "CREATE",
                    "userInfo": {"username": "alice"},
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": "web", "namespace": namespace},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                    },
                },
            }))
            .unwrap()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut allowed = Vec::new();
        let lines = logged(|| {
            for namespace in ["payments", "paymnets", "paymnets", "paymnets"] {
                let outcome = runtime
                    .block_on(admission.review(&review(namespace)))
                    .unwrap();
                allowed.push(outcome.review.response.allowed);
            }
        });
        assert_eq!(allowed, [false, true, true, true]);
        let unknown: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("not described by --namespace-labels"))
            .collect();
        assert_eq!(unknown.len(), 1, "{lines:#?}");
        assert!(
            unknown[0].contains("namespace=\"paymnets\""),
            "{}",
            unknown[0]
        );
    }

    #[test]
    fn logging_unknown_namespaces_stops_at_a_bound() {
        let inv = payments();
        let lines = logged(|| {
            for i in 0..MAX_LOGGED_UNKNOWN_NAMESPACES + 10 {
                inv.namespace_labels(&format!("ns-{i}"));
            }
        });
        assert_eq!(lines.len(), MAX_LOGGED_UNKNOWN_NAMESPACES + 1);
        assert!(
            lines[MAX_LOGGED_UNKNOWN_NAMESPACES].contains("no longer logging each"),
            "{}",
            lines[MAX_LOGGED_UNKNOWN_NAMESPACES]
        );
        let logged_set = inv.logged_unknown.lock().unwrap();
        assert_eq!(logged_set.seen.len(), MAX_LOGGED_UNKNOWN_NAMESPACES);
    }
}

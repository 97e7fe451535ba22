//! Strict field validation of policy documents read from files: every field the
//! CRD does not define is an error, as `kubectl apply` (server-side strict field
//! validation, the default since Kubernetes 1.27) reports it against the CRD in a
//! cluster. Without it a misspelt `requireKeyRotaton: true` would simply be absent,
//! and a CI gate would pass on a rule nobody enforces.
//!
//! The known fields are not listed here: they are read from the CRD's own
//! OpenAPI schema (`EcrEncryptionPolicy::crd()`, the schema `ecr-guard crd`
//! prints), plus `apiVersion`, `kind` and `metadata` (ObjectMeta's schema from
//! k8s-openapi, generated the way kube-derive generates the CRD's), which the API
//! server adds to every custom resource. So the check cannot drift from the CRD.

use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use kube::CustomResourceExt;
use serde_json::{Map, Value};

use super::EcrEncryptionPolicy;

/// One field of a document that its schema does not define.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// Where the field is, from the document's root: `spec.rules.requireKeyRotaton`,
    /// `spec.namespaceSelector.matchExpressions[0].operater`.
    pub path: String,
    /// The known field it most likely meant, relative to the unknown field's parent
    /// (`requireKeyRotation`, or `rules.requireKeyRotation` one level down), if one
    /// is close enough.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: unknown field", self.path)?;
        if let Some(meant) = &self.suggestion {
            write!(f, ", did you mean {meant}?")?;
        }
        Ok(())
    }
}

/// The schema could not be built from the CRD (a bug in ecr-guard, not in the input).
#[derive(Clone, Debug, thiserror::Error)]
#[error("the CRD's schema is unavailable: {0}")]
pub struct SchemaUnavailable(String);

/// Every field of `doc`, an `EcrEncryptionPolicy` as JSON (apiVersion and kind
/// already checked), that the CRD does not define, in document order (maps in
/// serde_json's key order). Empty when every field is known. Values of the wrong
/// type are not reported here: deserialising reports them.
pub fn unknown_policy_fields(doc: &Value) -> Result<Vec<UnknownField>, SchemaUnavailable> {
    let schema = policy_schema()?;
    let mut out = Vec::new();
    walk(doc, schema, "", &mut out);
    Ok(out)
}

/// Every unknown field of a `List` document's own (`apiVersion`, `kind`,
/// `metadata` as ListMeta, `items`); the items are not looked into.
pub fn unknown_list_fields(doc: &Value) -> Result<Vec<UnknownField>, SchemaUnavailable> {
    let schema = list_schema()?;
    let mut out = Vec::new();
    walk(doc, schema, "", &mut out);
    Ok(out)
}

/// The schema a policy document is checked against: the CRD's openAPIV3Schema with
/// the fields every object has.
pub fn policy_schema() -> Result<&'static Value, SchemaUnavailable> {
    static SCHEMA: OnceLock<Result<Value, SchemaUnavailable>> = OnceLock::new();
    SCHEMA
        .get_or_init(build_policy_schema)
        .as_ref()
        .map_err(Clone::clone)
}

fn list_schema() -> Result<&'static Value, SchemaUnavailable> {
    static SCHEMA: OnceLock<Result<Value, SchemaUnavailable>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut props = Map::new();
            props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
            props.insert("kind".into(), serde_json::json!({"type": "string"}));
            props.insert("metadata".into(), schema_of::<ListMeta>()?);
            // Items are checked one by one as policies, not here.
            props.insert("items".into(), serde_json::json!({"type": "array"}));
            Ok(serde_json::json!({"type": "object", "properties": props}))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn build_policy_schema() -> Result<Value, SchemaUnavailable> {
    let crd = EcrEncryptionPolicy::crd();
    let version = crd
        .spec
        .versions
        .first()
        .ok_or_else(|| SchemaUnavailable("the CRD has no version".into()))?;
    let props = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| SchemaUnavailable("the CRD has no openAPIV3Schema".into()))?;
    let mut schema = serde_json::to_value(props).map_err(|e| SchemaUnavailable(e.to_string()))?;
    let properties = schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| SchemaUnavailable("the CRD's schema has no properties".into()))?;
    // The API server defines these for every custom resource; a CRD's schema may
    // leave them out, and kube-derive's does.
    properties
        .entry("apiVersion")
        .or_insert_with(|| serde_json::json!({"type": "string"}));
    properties
        .entry("kind")
        .or_insert_with(|| serde_json::json!({"type": "string"}));
    properties.insert("metadata".into(), schema_of::<ObjectMeta>()?);
    Ok(schema)
}

/// `T`'s schema with every subschema inlined, generated as kube-derive generates a
/// CRD's (OpenAPI v3 settings, no `$ref`).
fn schema_of<T: schemars::JsonSchema>() -> Result<Value, SchemaUnavailable> {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>())
        .map_err(|e| SchemaUnavailable(e.to_string()))
}

fn child_path(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// Walks `value` beside its `schema`. An object node with `properties` knows its
/// fields; one with `additionalProperties` is a map (any key, each value checked);
/// one with neither holds anything (only ObjectMeta's `managedFields[].fieldsV1`;
/// tests/crd.rs checks the CRD has no such node).
fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<UnknownField>) {
    match value {
        Value::Object(fields) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, child) in fields {
                    let here = child_path(path, name);
                    match props.get(name) {
                        Some(child_schema) => walk(child, child_schema, &here, out),
                        None => out.push(UnknownField {
                            path: here,
                            suggestion: suggest(name, props),
                        }),
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for (name, child) in fields {
                    walk(child, extra, &child_path(path, name), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// A field name reduced to what a typo does not change: lower case, without `_`
/// and `-` (`namespace_selector`, `NamespaceSelector` → `namespaceselector`).
fn fold(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `typed` is close enough to `known` to suggest it: the same once folded,
/// or at most one edit (insert, delete, substitute, swap two neighbours) per four
/// characters of the known name. strsim is clap's suggestion engine, already built.
fn close(typed: &str, known: &str) -> Option<usize> {
    let (typed, known) = (fold(typed), fold(known));
    let distance = strsim::osa_distance(&typed, &known);
    (distance <= (known.chars().count() / 4).max(1)).then_some(distance)
}

/// The known field `name` most likely meant: the closest sibling, else a field of
/// that name one level down (`spec.requireKeyRotation` → `rules.requireKeyRotation`,
/// a top-level `mode` → `spec.mode`).
fn suggest(name: &str, props: &Map<String, Value>) -> Option<String> {
    let sibling = props
        .keys()
        .filter_map(|known| close(name, known).map(|d| (d, known)))
        .min_by_key(|(d, _)| *d);
    if let Some((_, known)) = sibling {
        return Some(known.clone());
    }
    let folded = fold(name);
    props.iter().find_map(|(parent, schema)| {
        let object = schema
            .get("items")
            .unwrap_or(schema)
            .get("properties")
            .and_then(Value::as_object)?;
        object
            .keys()
            .find(|known| fold(known) == folded)
            .map(|known| format!("{parent}.{known}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(spec: Value) -> Value {
        json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "metadata": {"name": "a"},
            "spec": spec,
        })
    }

    fn messages(doc: &Value) -> Vec<String> {
        unknown_policy_fields(doc)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_known_field_is_accepted() {
        let doc = json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "metadata": {
                "name": "a", "labels": {"team": "x"}, "annotations": {"a.io/b": "c"},
                "uid": "u", "resourceVersion": "1", "generation": 2,
                "creationTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["f"],
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                    "apiVersion": "ecrguard.io/v1alpha1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:mode": {}}}, "time": "2026-01-01T00:00:00Z"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n", "uid": "u"}],
            },
            "spec": {
                "mode": "Warn",
                "namespaceSelector": {
                    "matchLabels": {"compliance": "regulated"},
                    "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
                },
                "images": ["*"], "excludeImages": ["x"], "nonEcrImages": "Deny",
                "onLookupFailure": "Allow",
                "rules": {
                    "allowedEncryptionTypes": ["KMS"], "requireCustomerManagedKey": true,
                    "allowedKmsKeys": ["arn:*"], "requireKeyRotation": true,
                    "requireUsableKey": true,
                },
            },
            "status": {
                "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Accepted",
                    "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "observedGeneration": 2}],
            },
        });
        assert_eq!(messages(&doc), Vec::<String>::new());
    }

    #[test]
    fn the_issue_examples_name_their_path_and_the_field_meant() {
        let doc = policy(json!({
            "namespaceSelecter": {"matchLabels": {"a": "b"}},
            "rule": {"requireKeyRotation": true},
            "rules": {"requireKeyRotaton": true},
        }));
        assert_eq!(
            messages(&doc),
            [
                "spec.namespaceSelecter: unknown field, did you mean namespaceSelector?",
                "spec.rule: unknown field, did you mean rules?",
                "spec.rules.requireKeyRotaton: unknown field, did you mean requireKeyRotation?",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_found_at_every_level() {
        let doc = json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "metdata": {},
            "metadata": {"name": "a", "lables": {"x": "y"},
                "managedFields": [{"manger": "m"}]},
            "spec": {
                "namespaceSelector": {
                    "matchLabel": {"a": "b"},
                    "matchExpressions": [{"key": "k", "operator": "Exists"},
                        {"key": "k", "operater": "Exists", "value": ["v"]}],
                },
                "exludeImages": [],
                "rules": {"allowedKmsKey": [], "RequireUsableKey": false},
            },
            "status": {"observedGeneration": 1, "conditions": [{"typ": "Ready"}]},
            "zzz": 1,
        });
        assert_eq!(
            messages(&doc),
            [
                "metadata.lables: unknown field, did you mean labels?",
                "metadata.managedFields[0].manger: unknown field, did you mean manager?",
                "metdata: unknown field, did you mean metadata?",
                "spec.exludeImages: unknown field, did you mean excludeImages?",
                "spec.namespaceSelector.matchExpressions[1].operater: unknown field, did you mean operator?",
                "spec.namespaceSelector.matchExpressions[1].value: unknown field, did you mean values?",
                "spec.namespaceSelector.matchLabel: unknown field, did you mean matchLabels?",
                "spec.rules.RequireUsableKey: unknown field, did you mean requireUsableKey?",
                "spec.rules.allowedKmsKey: unknown field, did you mean allowedKmsKeys?",
                "status.conditions[0].typ: unknown field, did you mean type?",
                "zzz: unknown field",
            ]
        );
    }

    #[test]
    fn a_field_one_level_too_high_points_to_where_it_belongs() {
        let doc = json!({
            "apiVersion": "ecrguard.io/v1alpha1",
            "kind": "EcrEncryptionPolicy",
            "name": "a",
            "mode": "Warn",
            "spec": {"requireKeyRotation": true, "matchLabels": {"a": "b"}},
        });
        assert_eq!(
            messages(&doc),
            [
                "mode: unknown field, did you mean spec.mode?",
                "name: unknown field, did you mean metadata.name?",
                "spec.matchLabels: unknown field, did you mean namespaceSelector.matchLabels?",
                "spec.requireKeyRotation: unknown field, did you mean rules.requireKeyRotation?",
            ]
        );
    }

    #[test]
    fn map_keys_are_free_but_far_names_get_no_suggestion() {
        let doc = policy(json!({
            "namespaceSelector": {"matchLabels": {"anything.example.com/at-all": "x"}},
            "enforcement": "Enforce",
        }));
        assert_eq!(messages(&doc), ["spec.enforcement: unknown field"]);
    }

    #[test]
    fn wrong_types_are_left_to_deserialisation() {
        let doc = policy(json!({"rules": true, "images": "x", "namespaceSelector": null}));
        assert_eq!(messages(&doc), Vec::<String>::new());
    }

    #[test]
    fn list_wrappers_are_checked_too() {
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "item": []});
        let got: Vec<String> = unknown_list_fields(&list)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["item: unknown field, did you mean items?"]);
    }

    #[test]
    fn closeness_scales_with_the_name() {
        assert!(close("rule", "rules").is_some());
        assert!(close("namespace_selector", "namespaceSelector").is_some());
        assert!(close("requireRotation", "requireKeyRotation").is_some());
        assert!(close("mode", "kind").is_none());
        assert!(close("image", "mode").is_none());
    }
}

//! The CRD `ecr-guard crd` prints: what the API server will accept, and what is
//! committed in manifests/ and the chart.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crd_yaml() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn crd() -> Value {
    serde_saphyr::from_str(&crd_yaml()).unwrap()
}

fn tool(relative: &str) -> PathBuf {
    let path = root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-tools.sh` (make test does)",
        path.display()
    );
    path
}

#[test]
fn crd_passes_kubernetes_validate_strict_for_1_30_and_1_35() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crd.yaml");
    std::fs::write(&file, crd_yaml()).unwrap();
    for version in ["1.30.0", "1.35.0"] {
        let out = Command::new(tool(".venv/bin/kubernetes-validate"))
            .args(["--strict", "-k", version])
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}: {text}");
        assert!(
            text.contains("INFO") && !text.contains("ERROR"),
            "Kubernetes {version}: {text}"
        );
    }
}

#[test]
fn crd_names_scope_and_columns_are_as_designed() {
    let crd = crd();
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "ecrguard.io");
    assert_eq!(spec["scope"], "Cluster");
    assert_eq!(spec["names"]["kind"], "EcrEncryptionPolicy");
    assert_eq!(spec["names"]["plural"], "ecrencryptionpolicies");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["eep"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Mode", "Ready", "Age"]);
}

/// The structural-schema rules the API server enforces on a CRD
/// (apiextensions validation): every node has a type (or is an int-or-string /
/// preserve-unknown-fields node), `additionalProperties` never stands beside
/// `properties`, no `$ref`, and every default is a valid value of its node.
fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    if obj.contains_key("$ref") {
        problems.push(format!("{path}: $ref is not allowed"));
    }
    let special = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !obj.contains_key("type") && !special {
        problems.push(format!("{path}: no type"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        problems.push(format!("{path}: additionalProperties beside properties"));
    }
    for forbidden in ["oneOf", "anyOf", "allOf", "not"] {
        if let Some(list) = obj.get(forbidden) {
            // Allowed only as value validations without types or defaults inside.
            if list.to_string().contains("\"type\"") || list.to_string().contains("\"default\"") {
                problems.push(format!("{path}: {forbidden} carries types or defaults"));
            }
        }
    }
    if let Some(default) = obj.get("default")
        && let Err(why) = valid_value(default, node)
    {
        problems.push(format!("{path}: default {default} is invalid: {why}"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            check_structural(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        check_structural(extra, &format!("{path}{{}}"), problems);
    }
}

fn valid_value(value: &Value, schema: &Value) -> Result<(), String> {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match ty {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    if !ok {
        return Err(format!("not a {ty}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("not one of {allowed:?}"));
    }
    match (value, schema.get("items")) {
        (Value::Array(items), Some(item_schema)) => {
            items.iter().try_for_each(|i| valid_value(i, item_schema))
        }
        _ => Ok(()),
    }
}

#[test]
fn crd_schema_is_structural_with_valid_defaults() {
    let crd = crd();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    check_structural(schema, "openAPIV3Schema", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    // The rules must bite: a node without a type is reported.
    let mut seen = Vec::new();
    check_structural(
        &serde_json::json!({"properties": {"x": {}}}),
        "t",
        &mut seen,
    );
    assert_eq!(seen, ["t: no type", "t.x: no type"]);
}

#[test]
fn crd_enums_reject_unknown_encryption_types_and_modes() {
    let crd = crd();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        spec["mode"]["enum"],
        serde_json::json!(["Enforce", "Warn", "DryRun"])
    );
    assert_eq!(
        spec["rules"]["properties"]["allowedEncryptionTypes"]["items"]["enum"],
        serde_json::json!(["AES256", "KMS", "KMS_DSSE"])
    );
    assert!(
        spec["mode"]["description"]
            .as_str()
            .unwrap()
            .contains("Enforce denies"),
        "field docs become kubectl explain text"
    );
}

#[test]
fn example_policies_are_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .args(["check", "--image", "nginx"])
        .args(
            [
                "regulated-require-cmk.yaml",
                "prod-require-kms.yaml",
                "staging-dry-run.yaml",
            ]
            .iter()
            .flat_map(|f| {
                [
                    "--policy-file".to_string(),
                    root()
                        .join("manifests/examples")
                        .join(f)
                        .display()
                        .to_string(),
                ]
            }),
        )
        .output()
        .unwrap();
    assert!(
        out.status.code() == Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn schema_nodes<'a>(node: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), node));
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            schema_nodes(child, format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = node.get("items") {
        schema_nodes(items, format!("{path}[]"), out);
    }
    if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
        schema_nodes(extra, format!("{path}{{}}"), out);
    }
}

fn all_nodes(crd: &Value) -> Vec<(String, &Value)> {
    let mut nodes = Vec::new();
    schema_nodes(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "openAPIV3Schema".into(),
        &mut nodes,
    );
    nodes
}

/// In a cluster the API server prunes (and with strict field validation, the
/// kubectl default, rejects) every field the schema does not name, unless a node
/// preserves unknown fields or is an object that names none. Local files are
/// checked the same way (src/policy/strict.rs), which relies on this.
#[test]
fn crd_keeps_unknown_fields_out_at_every_level() {
    let crd = crd();
    assert!(
        !crd_yaml().contains("x-kubernetes-preserve-unknown-fields"),
        "the CRD preserves unknown fields somewhere"
    );
    assert_eq!(crd["spec"].get("preserveUnknownFields"), None);
    let nodes = all_nodes(&crd);
    let free: Vec<&String> = nodes
        .iter()
        .filter(|(_, n)| {
            n["type"] == "object"
                && n.get("properties").is_none()
                && n.get("additionalProperties").is_none()
        })
        .map(|(p, _)| p)
        .collect();
    assert!(free.is_empty(), "objects that take any field: {free:?}");
    // The walk reaches the nested selector requirements, so the checks above did too.
    assert!(
        nodes
            .iter()
            .any(|(p, _)| p == "openAPIV3Schema.spec.namespaceSelector.matchExpressions[].operator"),
        "{:?}",
        nodes.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
}

/// `kubectl explain eep` prints these: user documentation, no derive boilerplate.
#[test]
fn crd_descriptions_are_user_documentation() {
    let crd = crd();
    let nodes = all_nodes(&crd);
    let root = nodes[0].1["description"].as_str().unwrap_or_default();
    assert!(
        root.starts_with("A cluster-wide policy on which container images may run")
            && root.contains("ecr-guard admission webhook"),
        "{root}"
    );
    for (path, node) in &nodes {
        let text = node
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for boilerplate in ["Auto-generated", "derived type", "CustomResource", "TODO"] {
            assert!(!text.contains(boilerplate), "{path}: {text}");
        }
    }
    // Every field of ecr-guard's own types is documented (k8s types bring their own).
    let undocumented: Vec<&String> = nodes
        .iter()
        .filter(|(p, _)| {
            p.starts_with("openAPIV3Schema.spec")
                && !p.contains("namespaceSelector.")
                && !p.ends_with("[]")
        })
        .chain(nodes.iter().filter(|(p, _)| {
            p == "openAPIV3Schema.status"
                || p == "openAPIV3Schema.status.conditions"
                || p == "openAPIV3Schema.status.observedGeneration"
        }))
        .filter(|(_, n)| {
            n.get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .map(|(p, _)| p)
        .collect();
    assert!(undocumented.is_empty(), "{undocumented:?}");
}

/// `ecr-guard crd --policy-reports`: the PolicyReport and ClusterPolicyReport
/// CRDs the audit writes to, for clusters without Kyverno or Policy Reporter.
#[test]
fn policy_report_crds_pass_kubernetes_validate_strict_and_name_the_wg_resources() {
    let out = Command::new(env!("CARGO_BIN_EXE_ecr-guard"))
        .args(["crd", "--policy-reports"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = yaml
        .split("---\n")
        .map(|doc| {
            let crd: Value = serde_saphyr::from_str(doc).unwrap();
            crd["metadata"]["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "policyreports.wgpolicyk8s.io",
            "clusterpolicyreports.wgpolicyk8s.io"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy-reports.yaml");
    std::fs::write(&file, &yaml).unwrap();
    for version in ["1.30.0", "1.35.0"] {
        let out = Command::new(tool(".venv/bin/kubernetes-validate"))
            .args(["--strict", "-k", version])
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}: {text}");
        assert_eq!(
            text.matches("passed").count(),
            2,
            "Kubernetes {version}: {text}"
        );
    }
}

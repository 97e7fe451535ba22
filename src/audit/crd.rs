//! The PolicyReport and ClusterPolicyReport CRDs (`wgpolicyk8s.io/v1alpha2`),
//! for clusters where neither Kyverno nor Policy Reporter installed them:
//! `ecr-guard crd --policy-reports`. Same names, short names, scope and printer
//! columns as the Working Group's; the schema spells out what ecr-guard writes
//! and keeps the rest open (`x-kubernetes-preserve-unknown-fields`), so the
//! reports other tools write stay valid.
//!
//! Checked against Kyverno's `config/crds/policyreport/wgpolicyk8s.io_policyreports.yaml`
//! (the CRD clusters run today): the same `result` enum (pass, fail, warn, error,
//! skip), `severity` enum (critical, high, low, medium, info), `policy` the one
//! required field of a result, `properties` string-valued, `timestamp` with
//! `seconds` and `nanos` both required (ecr-guard always writes both), summary
//! fields and printer columns. Kyverno spells out `resources`, `scope` and
//! `resourceSelector` as ObjectReference / LabelSelector; here they stay open.

/// Both CRDs, as one multi-document YAML stream.
pub fn yaml() -> String {
    format!(
        "{}---\n{}",
        crd("PolicyReport", "policyreports", "polr", "Namespaced"),
        crd(
            "ClusterPolicyReport",
            "clusterpolicyreports",
            "cpolr",
            "Cluster"
        )
    )
}

fn crd(kind: &str, plural: &str, short: &str, scope: &str) -> String {
    let columns = ["Pass", "Fail", "Warn", "Error", "Skip"]
        .iter()
        .map(|c| {
            format!(
                "        - name: {c}\n          type: integer\n          jsonPath: .summary.{}\n",
                c.to_lowercase()
            )
        })
        .collect::<String>();
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.wgpolicyk8s.io
spec:
  group: wgpolicyk8s.io
  names:
    kind: {kind}
    listKind: {kind}List
    plural: {plural}
    singular: {singular}
    shortNames:
      - {short}
  scope: {scope}
  versions:
    - name: v1alpha2
      served: true
      storage: true
      additionalPrinterColumns:
        - name: Kind
          type: string
          jsonPath: .scope.kind
          priority: 1
        - name: Name
          type: string
          jsonPath: .scope.name
          priority: 1
{columns}        - name: Age
          type: date
          jsonPath: .metadata.creationTimestamp
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion:
              type: string
            kind:
              type: string
            metadata:
              type: object
            scope:
              type: object
              x-kubernetes-preserve-unknown-fields: true
            scopeSelector:
              type: object
              x-kubernetes-preserve-unknown-fields: true
            summary:
              type: object
              properties:
                pass:
                  type: integer
                fail:
                  type: integer
                warn:
                  type: integer
                error:
                  type: integer
                skip:
                  type: integer
            results:
              type: array
              items:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                required:
                  - policy
                properties:
                  source:
                    type: string
                  policy:
                    type: string
                  rule:
                    type: string
                  category:
                    type: string
                  severity:
                    type: string
                    enum: [critical, high, low, medium, info]
                  result:
                    type: string
                    enum: [pass, fail, warn, error, skip]
                  message:
                    type: string
                  scored:
                    type: boolean
                  properties:
                    type: object
                    additionalProperties:
                      type: string
                  timestamp:
                    type: object
                    required: [nanos, seconds]
                    properties:
                      seconds:
                        type: integer
                        format: int64
                      nanos:
                        type: integer
                        format: int32
                  resources:
                    type: array
                    items:
                      type: object
                      x-kubernetes-preserve-unknown-fields: true
"#,
        singular = kind.to_lowercase()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_crds_parse_as_yaml_and_name_their_resources() {
        let text = super::yaml();
        let docs: Vec<serde_json::Value> = text
            .split("---\n")
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["metadata"]["name"], "policyreports.wgpolicyk8s.io");
        assert_eq!(docs[0]["spec"]["scope"], "Namespaced");
        assert_eq!(
            docs[1]["metadata"]["name"],
            "clusterpolicyreports.wgpolicyk8s.io"
        );
        assert_eq!(docs[1]["spec"]["scope"], "Cluster");
        let columns = &docs[0]["spec"]["versions"][0]["additionalPrinterColumns"];
        assert_eq!(columns[3]["jsonPath"], ".summary.fail");
    }
}

//! `make demo` (scripts/demo.py) does not mislead (issue 14, fault 12): one row
//! per object, every row the same shape, each repository fact once, within 100
//! columns, and no verdict that exists only because of the emulator; at the end
//! the audit's summary (`audit --once --pods-file`) after a key deletion is scheduled.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo's rows: from a row's header line (`NAMESPACE OBJECT REQUEST DECISION`)
/// up to the blank line after it.
fn rows(output: &str) -> Vec<Vec<&str>> {
    let table = output
        .split_once(&"-".repeat(100))
        .expect("the table's rule")
        .1;
    let table = table.split("==> ").next().unwrap_or_default();
    table
        .split("\n\n")
        .map(|row| row.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>())
        .filter(|row| !row.is_empty())
        .collect()
}

/// The field name of a row line (`  image      …`), or "" for a continuation line.
fn field(line: &str) -> &str {
    line.strip_prefix("  ")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|_| !line.starts_with("   "))
        .unwrap_or("")
}

#[test]
fn demo_prints_one_row_per_object_in_one_shape_within_100_columns() {
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/demo.py"))
        .args(["--binary", env!("CARGO_BIN_EXE_ecr-guard")])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run scripts/demo.py (make tools installs .venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");

    for line in stdout.lines() {
        assert!(line.chars().count() <= 100, "over 100 columns: {line:?}");
    }

    let rows = rows(&stdout);
    let headers: Vec<Vec<&str>> = rows
        .iter()
        .map(|row| row[0].split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 11, "one row per object sent\n{report}");
    for (row, header) in rows.iter().zip(&headers) {
        // Same shape: header, then (image, facts) per container, policies, hints.
        let fields: Vec<&str> = row[1..]
            .iter()
            .map(|l| field(l))
            .filter(|f| !f.is_empty())
            .collect();
        let images = fields
            .iter()
            .take_while(|f| **f == "image" || **f == "facts")
            .count();
        assert!(images >= 2 && images % 2 == 0, "{row:#?}");
        for pair in fields[..images].chunks(2) {
            assert_eq!(pair, ["image", "facts"], "{row:#?}");
        }
        let policies = fields[images..]
            .iter()
            .take_while(|f| **f == "policy")
            .count();
        assert!(
            policies >= 1,
            "every row says which policies judged it: {row:#?}"
        );
        assert!(
            fields[images + policies..]
                .iter()
                .all(|f| *f == "note" || *f == "hint")
                && fields.last() == Some(&"hint"),
            "{row:#?}"
        );
        // A repository's facts are said once, on the facts line, not per policy.
        for line in row.iter().filter(|l| field(l) == "policy") {
            assert!(
                !line.contains("is encrypted with"),
                "fact repeated per policy: {line}"
            );
        }
        assert!(
            ["DENIED", "ALLOWED"].contains(&header[header.len() - 1])
                || header.ends_with(&["ALLOWED,", "WARNED"]),
            "{header:?}"
        );
    }

    let row = |object: &str, request: &str| {
        rows.iter()
            .zip(&headers)
            .find(|(_, h)| h[1] == object && h[2..].join(" ").starts_with(request))
            .unwrap_or_else(|| panic!("no row for {object} {request}\n{report}"))
    };
    // The AWS-managed key is answered as AWS would, so shop/catalog is judged on
    // its real facts (KMS, AWS-managed: prod-require-kms admits it), in the open.
    let (catalog, header) = row("Pod/catalog", "CREATE");
    assert_eq!(header.last(), Some(&"ALLOWED"), "{catalog:#?}");
    assert!(
        catalog
            .iter()
            .any(|l| l.contains("AWS-managed key aws/ecr (answered by the proxy)"))
    );
    let gap = stdout
        .lines()
        .find(|l| l.starts_with("==> emulator gap filled: the proxy answered "))
        .unwrap_or_else(|| panic!("the filled emulator gap is not said\n{report}"));
    assert!(!gap.contains("answered 0 "), "{gap}");

    // The warned row has its image and a hint like every other row.
    let (frontend, header) = row("Pod/frontend", "CREATE");
    assert!(header.ends_with(&["ALLOWED,", "WARNED"]), "{header:?}");
    assert!(
        frontend
            .iter()
            .any(|l| l.contains("image") && l.contains("shop/frontend:1.0"))
    );
    assert!(
        frontend.iter().any(|l| l.contains("enable-key-rotation")),
        "{frontend:#?}"
    );

    // Pull-through cache images not pulled yet: judged by the template that will
    // create their repository, the fix pointing at the template.
    let (nginx, header) = row("Pod/nginx", "CREATE");
    assert_eq!(header.last(), Some(&"ALLOWED"), "{nginx:#?}");
    assert!(
        nginx.iter().any(|l| l.contains("template docker-hub: KMS")),
        "{nginx:#?}"
    );
    let (exporter, header) = row("Pod/exporter", "CREATE");
    assert_eq!(header.last(), Some(&"DENIED"), "{exporter:#?}");
    assert!(
        exporter
            .iter()
            .any(|l| l.contains("aws ecr update-repository-creation-template --prefix ROOT")),
        "{exporter:#?}"
    );
    assert!(
        stdout.contains("pull-through cache rule and template call(s)"),
        "{report}"
    );

    // kubectl's dry-run request and the DryRun policy mode read differently.
    let (dry_request, _) = row("Pod/api", "CREATE, dryRun (kubectl --dry-run=server)");
    assert!(
        dry_request
            .iter()
            .any(|l| l.contains("staging-dry-run (DryRun) would deny"))
    );
    assert!(
        !stdout.contains("DRY-RUN") && !stdout.contains("(dry-run)"),
        "{report}"
    );

    // The end: the audit, once, on the admitted Pods after payments' CMK was
    // scheduled for deletion, its summary printed (wrapped lines joined here).
    let audit = stdout
        .split_once("==> later, payments' CMK")
        .unwrap_or_else(|| panic!("no audit at the end\n{report}"))
        .1;
    let audit = audit.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(audit.contains("audited 6 Pods in 4 namespaces:"), "{audit}");
    assert!(
        audit.contains("fail payments/ledger ecr-guard-kms-key-state: KMS key arn:…:key/"),
        "{audit}"
    );
    assert!(
        audit.contains(" is scheduled for deletion on ")
            && audit.contains(
                " (15 days): Pods using repository payments/ledger will fail to pull after that"
            ),
        "{audit}"
    );
    assert!(
        audit.contains("reports: ") && audit.contains("not written (local mode)"),
        "{audit}"
    );
    assert!(
        audit.ends_with("exit code 1: an enforced policy or a key breaks pulls"),
        "{audit}"
    );
}

//! Counts over the scanned repositories (pull-through rules not included).

use std::collections::BTreeMap;

use super::report::{ScannedRepository, Summary};

/// The encryption types ECR knows, always present in `byEncryptionType`.
const ENCRYPTION_TYPES: [&str; 3] = ["AES256", "KMS", "KMS_DSSE"];
/// The verdict buckets, always present in `byVerdict`.
const VERDICTS: [&str; 4] = ["allowed", "denied", "warned", "dryRun"];

pub fn summary(repositories: &[ScannedRepository], registries: usize) -> Summary {
    let mut by_encryption_type: BTreeMap<String, usize> = ENCRYPTION_TYPES
        .iter()
        .map(|t| ((*t).to_owned(), 0))
        .collect();
    let mut by_verdict: BTreeMap<String, usize> =
        VERDICTS.iter().map(|v| ((*v).to_owned(), 0)).collect();
    let mut summary = Summary {
        repositories: repositories.len(),
        registries,
        ..Summary::default()
    };
    for repo in repositories {
        *by_encryption_type
            .entry(repo.encryption.encryption_type.clone())
            .or_default() += 1;
        let refused_in = |mode: &str| repo.verdicts.iter().any(|v| !v.allowed && v.mode == mode);
        let bucket = if refused_in("Enforce") {
            "denied"
        } else if refused_in("Warn") {
            "warned"
        } else if refused_in("DryRun") {
            "dryRun"
        } else {
            "allowed"
        };
        *by_verdict.entry(bucket.to_owned()).or_default() += 1;
        if repo.verdicts.iter().any(|v| !v.allowed) {
            summary.violations += 1;
        }
        if bucket == "denied" {
            summary.enforced_violations += 1;
        }
        if !repo.findings.is_empty() {
            summary.with_findings += 1;
        }
    }
    summary.by_encryption_type = by_encryption_type;
    summary.by_verdict = by_verdict;
    summary
}

//! A scan report with every case the renderers must show (test only): AES256,
//! the AWS-managed key, customer-managed keys with rotation on and off, a
//! disabled key, a key pending deletion, a key that could not be described, a
//! key shared by three repositories, a repository no policy judges, long names
//! and ARNs, hostile text (`<script>`, `a|b`, `"x,y"`, newlines), a pull-through
//! rule and an error. Its summary and cost are computed from its repositories
//! as `scan` defines them, so every figure is consistent.

use std::collections::{BTreeMap, BTreeSet};

use crate::scan::report::{
    Cost, Encryption, Finding, FindingCode, KeyManagerValue, KeyRotationValue, PolicyVerdict,
    Prices, ScanError, ScanReport, ScannedPullThroughRule, ScannedRepository, Summary,
};

pub const A: &str = "111122223333";
pub const B: &str = "444455556666";
pub const SHARED_KEY: &str =
    "arn:aws:kms:eu-west-1:111122223333:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
pub const LONG_KEY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef";
pub const LONG_NAME: &str =
    "platform-engineering/observability/very-long-service-name-of-the-ingest-pipeline-worker";
pub const HOSTILE_NAME: &str = "<script>alert(\"x\")</script>&a|b\"x,y\"";

fn aes256() -> Encryption {
    Encryption {
        encryption_type: "AES256".into(),
        kms_key: None,
        key_manager: None,
        key_state: None,
        key_deletion_date: None,
        key_rotation: None,
    }
}

fn kms(key: &str, manager: KeyManagerValue, state: &str, rotation: KeyRotationValue) -> Encryption {
    Encryption {
        encryption_type: "KMS".into(),
        kms_key: Some(key.into()),
        key_manager: Some(manager),
        key_state: Some(state.into()),
        key_deletion_date: None,
        key_rotation: Some(rotation),
    }
}

fn cmk(id: &str, region: &str, state: &str, rotation: KeyRotationValue) -> Encryption {
    kms(
        &format!("arn:aws:kms:{region}:{A}:key/{id}"),
        KeyManagerValue::Customer,
        state,
        rotation,
    )
}

fn finding(code: FindingCode, message: &str) -> Finding {
    Finding {
        code,
        message: message.into(),
    }
}

fn allowed(policy: &str, mode: &str) -> PolicyVerdict {
    PolicyVerdict {
        policy: policy.into(),
        mode: mode.into(),
        allowed: true,
        reasons: Vec::new(),
        messages: Vec::new(),
    }
}

fn refused(policy: &str, mode: &str, reason: &str, message: &str) -> PolicyVerdict {
    PolicyVerdict {
        policy: policy.into(),
        mode: mode.into(),
        allowed: false,
        reasons: vec![reason.into()],
        messages: vec![message.into()],
    }
}

fn repo(
    account: &str,
    region: &str,
    name: &str,
    encryption: Encryption,
    findings: Vec<Finding>,
    verdicts: Vec<PolicyVerdict>,
) -> ScannedRepository {
    ScannedRepository {
        account: account.into(),
        region: region.into(),
        name: name.into(),
        encryption,
        findings,
        verdicts,
    }
}

/// The policies every judged repository of the sample is judged by:
/// `require-kms` (Enforce), `require-cmk-rotation` (Warn).
fn both_allow() -> Vec<PolicyVerdict> {
    vec![
        allowed("require-cmk-rotation", "Warn"),
        allowed("require-kms", "Enforce"),
    ]
}

fn repositories() -> Vec<ScannedRepository> {
    use KeyManagerValue::{Aws, Customer, Unknown};
    use KeyRotationValue as R;
    let rotation_off = "key 2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e does not rotate: aws kms enable-key-rotation --key-id 2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e";
    let mut pending = cmk(
        "4d5e6f7a-8b9c-0d1e-2f3a-4b5c6d7e8f9a",
        "us-east-1",
        "PendingDeletion",
        R::Disabled,
    );
    pending.key_deletion_date = Some("2026-12-07T09:30:00Z".into());
    let mut dsse = cmk(
        "3c4d5e6f-7a8b-9c0d-1e2f-3a4b5c6d7e8f",
        "eu-west-1",
        "Disabled",
        R::Enabled,
    );
    dsse.encryption_type = "KMS_DSSE".into();
    let shared = || kms(SHARED_KEY, Customer, "Enabled", R::Enabled);
    vec![
        repo(
            A,
            "eu-west-1",
            "aws-managed/app",
            kms("aws/ecr", Aws, "Enabled", R::AwsManaged),
            vec![],
            vec![
                refused(
                    "require-cmk-rotation",
                    "Warn",
                    "customer_managed_key_required",
                    "repository aws-managed/app uses the AWS-managed key aws/ecr; policy require-cmk-rotation requires a customer-managed key",
                ),
                allowed("require-kms", "Enforce"),
            ],
        ),
        repo(
            A,
            "eu-west-1",
            "cmk/not-rotating",
            cmk(
                "2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e",
                "eu-west-1",
                "Enabled",
                R::Disabled,
            ),
            vec![finding(FindingCode::KeyRotationDisabled, rotation_off)],
            vec![
                refused(
                    "require-cmk-rotation",
                    "Warn",
                    "rotation_disabled",
                    rotation_off,
                ),
                allowed("require-kms", "Enforce"),
            ],
        ),
        repo(
            A,
            "eu-west-1",
            "cmk/shared-1",
            shared(),
            vec![],
            both_allow(),
        ),
        repo(
            A,
            "eu-west-1",
            "cmk/shared-2",
            shared(),
            vec![],
            both_allow(),
        ),
        repo(
            A,
            "eu-west-1",
            "cmk/shared-3",
            shared(),
            vec![],
            both_allow(),
        ),
        repo(
            A,
            "eu-west-1",
            "dsse/disabled-key",
            dsse,
            vec![finding(
                FindingCode::KeyDisabled,
                "key 3c4d5e6f-7a8b-9c0d-1e2f-3a4b5c6d7e8f is Disabled: pulls fail now; aws kms enable-key --key-id 3c4d5e6f-7a8b-9c0d-1e2f-3a4b5c6d7e8f",
            )],
            vec![
                allowed("require-cmk-rotation", "Warn"),
                refused(
                    "require-kms",
                    "Enforce",
                    "key_unusable",
                    "the key of repository dsse/disabled-key is Disabled",
                ),
            ],
        ),
        repo(
            A,
            "eu-west-1",
            "legacy/plain",
            aes256(),
            vec![finding(
                FindingCode::Aes256WhereKmsRequired,
                "repository legacy/plain is encrypted with AES256; policy require-kms allows only KMS, KMS_DSSE",
            )],
            vec![
                refused(
                    "require-cmk-rotation",
                    "Warn",
                    "encryption_type",
                    "repository legacy/plain is encrypted with AES256",
                ),
                refused(
                    "require-kms",
                    "Enforce",
                    "encryption_type",
                    "repository legacy/plain is encrypted with AES256; policy require-kms allows only KMS, KMS_DSSE",
                ),
            ],
        ),
        repo(
            A,
            "us-east-1",
            HOSTILE_NAME,
            aes256(),
            vec![finding(
                FindingCode::Aes256WhereKmsRequired,
                "repository <script>&a|b\"x,y\" is encrypted with AES256;\nsecond line | with a pipe",
            )],
            vec![refused(
                "require-kms",
                "Enforce",
                "encryption_type",
                "a message with \"quotes\", commas; and <b>tags</b>",
            )],
        ),
        repo(
            A,
            "us-east-1",
            "pending/deletion",
            pending,
            vec![
                finding(
                    FindingCode::KeyPendingDeletion,
                    "key 4d5e6f7a-8b9c-0d1e-2f3a-4b5c6d7e8f9a is PendingDeletion: pulls fail after 2026-12-07T09:30:00Z; aws kms cancel-key-deletion --key-id 4d5e6f7a-8b9c-0d1e-2f3a-4b5c6d7e8f9a",
                ),
                finding(
                    FindingCode::KeyRotationDisabled,
                    "key 4d5e6f7a-8b9c-0d1e-2f3a-4b5c6d7e8f9a does not rotate",
                ),
            ],
            vec![
                refused(
                    "require-cmk-rotation",
                    "Warn",
                    "rotation_disabled",
                    "key 4d5e6f7a-8b9c-0d1e-2f3a-4b5c6d7e8f9a does not rotate",
                ),
                refused(
                    "require-kms",
                    "Enforce",
                    "key_unusable",
                    "the key of repository pending/deletion is PendingDeletion",
                ),
            ],
        ),
        repo(
            A,
            "us-east-1",
            LONG_NAME,
            kms(LONG_KEY, Customer, "Enabled", R::Enabled),
            vec![],
            both_allow(),
        ),
        repo(
            B,
            "eu-west-1",
            "cross/unknown-key",
            kms(
                "arn:aws:kms:eu-west-1:777788889999:key/5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b",
                Unknown,
                "Unknown",
                R::Unknown,
            ),
            vec![finding(
                FindingCode::KeyNotDescribed,
                "DescribeKey of key 5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b (account 777788889999) was refused: grant kms:DescribeKey to ecr-guard's role in its key policy",
            )],
            vec![refused(
                "audit-only",
                "DryRun",
                "key_unknown",
                "the key of repository cross/unknown-key could not be described",
            )],
        ),
        repo(B, "eu-west-1", "unjudged/app", aes256(), vec![], vec![]),
    ]
}

fn pull_through_rules() -> Vec<ScannedPullThroughRule> {
    vec![ScannedPullThroughRule {
        account: A.into(),
        region: "eu-west-1".into(),
        prefix: "docker-hub".into(),
        upstream: "registry-1.docker.io".into(),
        template: None,
        encryption: aes256(),
        findings: vec![finding(
            FindingCode::PullThroughTemplateNonCompliant,
            "pull-through prefix docker-hub has no creation template: its repositories get AES256, which policy require-kms refuses; aws ecr create-repository-creation-template --prefix docker-hub --applied-for PULL_THROUGH_CACHE --encryption-configuration encryptionType=KMS",
        )],
        verdicts: vec![refused(
            "require-kms",
            "Enforce",
            "encryption_type",
            "a repository created under docker-hub would be encrypted with AES256",
        )],
    }]
}

/// The verdict key of a repository, as [`Summary::by_verdict`] defines it.
fn verdict_key(verdicts: &[PolicyVerdict]) -> &'static str {
    let refused = |mode: &str| verdicts.iter().any(|v| !v.allowed && v.mode == mode);
    if refused("Enforce") {
        "denied"
    } else if refused("Warn") {
        "warned"
    } else if refused("DryRun") {
        "dryRun"
    } else {
        "allowed"
    }
}

/// The sample report (see the module docs).
pub fn report() -> ScanReport {
    let repositories = repositories();
    let mut by_encryption_type: BTreeMap<String, usize> = ["AES256", "KMS", "KMS_DSSE"]
        .into_iter()
        .map(|t| (t.to_owned(), 0))
        .collect();
    let mut by_verdict: BTreeMap<String, usize> = ["allowed", "denied", "warned", "dryRun"]
        .into_iter()
        .map(|t| (t.to_owned(), 0))
        .collect();
    let mut keys = BTreeSet::new();
    let mut failing_registries = BTreeSet::new();
    for r in &repositories {
        *by_encryption_type
            .entry(r.encryption.encryption_type.clone())
            .or_default() += 1;
        *by_verdict
            .entry(verdict_key(&r.verdicts).to_owned())
            .or_default() += 1;
        if r.encryption.key_manager == Some(KeyManagerValue::Customer) {
            keys.extend(r.encryption.kms_key.clone());
        }
        if r.verdicts.iter().any(|v| !v.allowed) {
            failing_registries.insert((r.account.clone(), r.region.clone()));
        }
    }
    let prices = Prices {
        kms_key_monthly_usd: 1.0,
        kms_request_usd_per_10k: 0.03,
        kms_requests_per_month: 2_500_000,
    };
    let key_monthly_usd = keys.len() as f64 * prices.kms_key_monthly_usd;
    let requests_monthly_usd =
        prices.kms_requests_per_month as f64 / 10_000.0 * prices.kms_request_usd_per_10k;
    let summary = Summary {
        repositories: repositories.len(),
        by_encryption_type,
        violations: repositories
            .iter()
            .filter(|r| r.verdicts.iter().any(|v| !v.allowed))
            .count(),
        enforced_violations: repositories
            .iter()
            .filter(|r| verdict_key(&r.verdicts) == "denied")
            .count(),
        with_findings: repositories
            .iter()
            .filter(|r| !r.findings.is_empty())
            .count(),
        by_verdict,
        registries: 4,
    };
    ScanReport {
        repositories,
        pull_through_rules: pull_through_rules(),
        summary,
        cost: Cost {
            customer_managed_keys: keys.len(),
            key_monthly_usd,
            requests_monthly_usd,
            monthly_usd: key_monthly_usd + requests_monthly_usd,
            to_comply_monthly_usd: failing_registries.len() as f64 * prices.kms_key_monthly_usd,
            prices,
            assumptions: vec![
                "AWS-managed keys and AES256 cost nothing a month; a customer-managed key costs $1.00 a month, however many repositories share it".into(),
                "KMS requests: 2,500,000 a month (--kms-requests-per-month) at $0.03 per 10,000".into(),
            ],
        },
        errors: vec![ScanError {
            account: B.into(),
            region: "us-east-1".into(),
            api: "DescribeRepositories".into(),
            message: "AccessDeniedException: User: arn:aws:sts::444455556666:assumed-role/ecr-guard-reader/scan is not authorized to perform: ecr:DescribeRepositories <&>; grant ecr:DescribeRepositories to the role".into(),
        }],
    }
}

#[test]
fn the_sample_is_sorted_and_has_the_figures_its_tests_expect() {
    let r = report();
    let keys: Vec<_> = r
        .repositories
        .iter()
        .map(|r| (&r.account, &r.region, &r.name))
        .collect();
    assert!(keys.is_sorted());
    assert_eq!(r.summary.repositories, 12);
    assert_eq!(r.summary.by_encryption_type["AES256"], 3);
    assert_eq!(r.summary.by_encryption_type["KMS"], 8);
    assert_eq!(r.summary.by_encryption_type["KMS_DSSE"], 1);
    assert_eq!(r.summary.by_verdict["denied"], 4);
    assert_eq!(r.summary.by_verdict["warned"], 2);
    assert_eq!(r.summary.by_verdict["dryRun"], 1);
    assert_eq!(r.summary.by_verdict["allowed"], 5);
    assert_eq!(r.summary.violations, 7);
    assert_eq!(r.summary.enforced_violations, 4);
    assert_eq!(r.summary.with_findings, 6);
    // The shared key counted once: 1a2b…, 2b3c…, 3c4d…, 4d5e…, mrk-….
    assert_eq!(r.cost.customer_managed_keys, 5);
    assert_eq!(r.cost.monthly_usd, 12.5);
    // Three registries have a failing repository.
    assert_eq!(r.cost.to_comply_monthly_usd, 3.0);
}

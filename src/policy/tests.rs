//! Rules and modes, as tables. Facts are built by hand here: this is the pure core.
//!
//! AWS-managed keys are tested only at this level: the moto emulator reports every
//! key as customer-managed and does not create the `aws/ecr` key, so the integration
//! tests cannot show KeyManager=AWS.

use std::collections::{BTreeMap, HashMap};

use rstest::rstest;

use super::*;
use crate::image::EcrRepository;
use crate::policy::facts::*;

const ACCOUNT: &str = "123456789012";
const CMK: &str = "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-0000-0000-0000-000000000001";
const AWS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/2222bbbb-0000-0000-0000-000000000002";
const OTHER_ACCOUNT_KEY: &str =
    "arn:aws:kms:us-east-1:999999999999:key/3333cccc-0000-0000-0000-000000000003";

fn image(repo: &str) -> String {
    format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{repo}:1.0")
}

fn repo(name: &str) -> EcrRepository {
    EcrRepository {
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        name: name.into(),
    }
}

fn policy(name: &str, yaml: &str) -> Policy {
    let spec: EcrEncryptionPolicySpec = serde_saphyr::from_str(yaml).expect("test policy parses");
    Policy::compile(name, &spec)
}

fn key(arn: &str, manager: KeyManager, state: KeyState, rotation: Rotation) -> Option<KeyLookup> {
    Some(KeyLookup::Known(KeyFacts {
        arn: arn.into(),
        manager,
        state,
        rotation,
        deletion_date: None,
    }))
}

fn found(encryption_type: EncryptionType, kms_key: Option<KeyLookup>) -> Lookup {
    Ok(RepositoryLookup::Found(RepositoryFacts {
        encryption_type,
        kms_key,
    }))
}

fn aes256() -> Lookup {
    found(EncryptionType::Aes256, None)
}
fn aws_managed() -> Lookup {
    found(
        EncryptionType::Kms,
        key(
            AWS_KEY,
            KeyManager::Aws,
            KeyState::Enabled,
            Rotation::AwsManaged,
        ),
    )
}
fn cmk(rotation: Rotation, state: KeyState) -> Lookup {
    found(
        EncryptionType::Kms,
        key(CMK, KeyManager::Customer, state, rotation),
    )
}
fn rotating_cmk() -> Lookup {
    cmk(Rotation::Enabled, KeyState::Enabled)
}
fn dsse_cmk() -> Lookup {
    found(
        EncryptionType::KmsDsse,
        key(
            CMK,
            KeyManager::Customer,
            KeyState::Enabled,
            Rotation::Enabled,
        ),
    )
}
fn unknown_key() -> Lookup {
    unknown_key_because(Unlearnt::Denied)
}
fn unknown_key_because(cause: Unlearnt) -> Lookup {
    found(
        EncryptionType::Kms,
        Some(KeyLookup::Unknown {
            arn: OTHER_ACCOUNT_KEY.into(),
            reason: "access denied by the key policy".into(),
            cause,
        }),
    )
}
fn rotation_unknown(cause: Unlearnt) -> Lookup {
    cmk(
        Rotation::Unknown("GetKeyRotationStatus was denied".into(), cause),
        KeyState::Enabled,
    )
}

/// Judges one container `app` running `repo`'s image with these facts, in a
/// namespace labelled `compliance=regulated`.
fn judge(policies: &[Policy], lookup: Lookup, options: Options) -> Verdict {
    let image_uses = vec![ImageUse::new(Slot::Container, "app", image("payments/api"))];
    let mut facts = HashMap::new();
    facts.insert(repo("payments/api"), lookup);
    let labels = BTreeMap::from([("compliance".to_string(), "regulated".to_string())]);
    let applicable = applicable(policies, &labels);
    evaluate(&applicable, &image_uses, &facts, options)
}

fn reasons(v: &Verdict) -> Vec<Reason> {
    v.violations.iter().map(|v| v.reason).collect()
}

const STRICT: &str = "
rules:
  allowedEncryptionTypes: [KMS, KMS_DSSE]
  requireCustomerManagedKey: true
  allowedKmsKeys: ['arn:aws:kms:*:123456789012:key/*']
  requireKeyRotation: true
";

#[rstest]
#[case::aes256_fails_type_and_cmk(aes256(), vec![Reason::EncryptionType])]
#[case::aws_managed_key_fails_cmk(aws_managed(), vec![Reason::CustomerManagedKeyRequired])]
#[case::rotating_cmk_passes(rotating_cmk(), vec![])]
#[case::dsse_with_rotating_cmk_passes(dsse_cmk(), vec![])]
#[case::cmk_without_rotation_fails(cmk(Rotation::Disabled, KeyState::Enabled), vec![Reason::RotationDisabled])]
#[case::rotation_unknown_fails_as_unknown(rotation_unknown(Unlearnt::Denied), vec![Reason::RotationUnknown])]
#[case::key_state_unreported_fails_as_unknown(cmk(Rotation::Enabled, KeyState::Unreported), vec![Reason::KeyStateUnknown])]
#[case::disabled_key_fails(cmk(Rotation::Enabled, KeyState::Disabled), vec![Reason::KeyUnusable])]
#[case::pending_deletion_fails(cmk(Rotation::Enabled, KeyState::PendingDeletion), vec![Reason::KeyUnusable])]
#[case::other_key_state_fails(cmk(Rotation::Enabled, KeyState::Other("PendingImport".into())), vec![Reason::KeyUnusable])]
#[case::undescribable_key_in_other_account(unknown_key(), vec![Reason::KeyNotAllowed, Reason::KeyUnknown])]
#[case::missing_repository(Ok(RepositoryLookup::NotFound), vec![Reason::RepositoryNotFound])]
#[case::lookup_timeout_denied(Err(LookupFailure::Timeout), vec![Reason::LookupFailed])]
#[case::throttling_denied(Err(LookupFailure::Throttled), vec![Reason::LookupFailed])]
fn strict_policy_judges_each_kind_of_repository(
    #[case] lookup: Lookup,
    #[case] expected: Vec<Reason>,
) {
    let v = judge(&[policy("strict", STRICT)], lookup, Options::default());
    assert_eq!(reasons(&v), expected, "{:#?}", v.violations);
    assert_eq!(v.is_denied(), !expected.is_empty());
}

#[rstest]
#[case::aes256_allowed_by_default(aes256(), "{}", vec![])]
#[case::type_only(aes256(), "rules: {allowedEncryptionTypes: [KMS]}", vec![Reason::EncryptionType])]
#[case::dsse_only_rejects_kms(rotating_cmk(), "rules: {allowedEncryptionTypes: [KMS_DSSE]}", vec![Reason::EncryptionType])]
#[case::cmk_rule_fails_on_aes256_when_aes256_allowed(aes256(), "rules: {requireCustomerManagedKey: true}", vec![Reason::CustomerManagedKeyRequired])]
#[case::cmk_rule_passes_customer_key(rotating_cmk(), "rules: {requireCustomerManagedKey: true}", vec![])]
#[case::key_glob_rejects_other_account(unknown_key(), "rules: {allowedKmsKeys: ['arn:aws:kms:*:123456789012:key/*'], requireUsableKey: false}", vec![Reason::KeyNotAllowed])]
#[case::key_glob_accepts_matching(rotating_cmk(), "rules: {allowedKmsKeys: ['arn:aws:kms:us-east-1:123456789012:key/1111*']}", vec![])]
#[case::rotation_passes_aws_managed(aws_managed(), "rules: {requireKeyRotation: true}", vec![])]
#[case::unusable_key_ignored_when_not_required(cmk(Rotation::Enabled, KeyState::Disabled), "rules: {requireUsableKey: false}", vec![])]
#[case::unknown_key_fails_usable_by_default(unknown_key(), "{}", vec![Reason::KeyUnknown])]
#[case::unknown_key_passes_when_nothing_needs_it(unknown_key(), "rules: {requireUsableKey: false}", vec![])]
#[case::lookup_failure_allowed(Err(LookupFailure::Throttled), "onLookupFailure: Allow", vec![])]
#[case::access_denied_denied(Err(LookupFailure::AccessDenied("no".into())), "{}", vec![Reason::LookupFailed])]
#[case::not_found_even_without_rules(Ok(RepositoryLookup::NotFound), "{}", vec![Reason::RepositoryNotFound])]
fn each_rule_alone(#[case] lookup: Lookup, #[case] yaml: &str, #[case] expected: Vec<Reason>) {
    let v = judge(&[policy("p", yaml)], lookup, Options::default());
    assert_eq!(reasons(&v), expected, "{:#?}", v.violations);
}

#[rstest]
#[case::enforce_denies("Enforce", false, true, 0, 0)]
#[case::warn_warns("Warn", false, false, 1, 0)]
#[case::dry_run_records("DryRun", false, false, 0, 1)]
#[case::global_dry_run_turns_enforce_into_dry_run("Enforce", true, false, 0, 1)]
#[case::global_dry_run_leaves_warn("Warn", true, false, 1, 0)]
fn modes(
    #[case] mode: &str,
    #[case] global_dry_run: bool,
    #[case] denied: bool,
    #[case] warnings: usize,
    #[case] dry_runs: usize,
) {
    let p = policy(
        "p",
        &format!("mode: {mode}\nrules: {{allowedEncryptionTypes: [KMS]}}"),
    );
    let v = judge(
        &[p],
        aes256(),
        Options {
            dry_run: global_dry_run,
        },
    );
    assert_eq!(v.is_denied(), denied);
    assert_eq!(v.denial_message().is_some(), denied);
    assert_eq!(v.warnings().len(), warnings);
    assert_eq!(v.in_mode(Mode::DryRun).count(), dry_runs);
}

#[test]
fn a_denial_lists_at_most_ten_violations_and_counts_the_rest() {
    let p = policy("strict", "rules: {allowedEncryptionTypes: [KMS]}");
    let image_uses: Vec<ImageUse> = (0..13)
        .map(|i| ImageUse::new(Slot::Container, format!("c{i}"), image("payments/api")))
        .collect();
    let facts = HashMap::from([(repo("payments/api"), aes256())]);
    let policies = [p];
    let applicable = applicable(&policies, &BTreeMap::new());
    let v = evaluate(&applicable, &image_uses, &facts, Options::default());
    assert_eq!(v.violations.len(), 13);
    let message = v.denial_message().unwrap();
    let lines: Vec<&str> = message.lines().collect();
    assert!(lines[9].starts_with("container \"c9\""), "{message}");
    assert_eq!(lines[10], "… and 3 more like these");
    assert!(lines[11].starts_with("hint: "), "{message}");
    assert_eq!(lines.len(), 12, "one hint for the one problem: {message}");
}

#[test]
fn a_huge_image_reference_is_cut_in_the_message() {
    let p = policy("strict", "rules: {allowedEncryptionTypes: [KMS]}");
    let huge = format!("{}:{}", image("payments/api"), "x".repeat(100_000));
    let image_uses = vec![ImageUse::new(Slot::Container, "app", huge)];
    let policies = [p];
    let applicable = applicable(&policies, &BTreeMap::new());
    let v = evaluate(
        &applicable,
        &image_uses,
        &HashMap::new(),
        Options::default(),
    );
    let message = v.denial_message().unwrap();
    assert!(message.contains("invalid image reference"), "{message}");
    assert!(message.len() < 2_000, "{} bytes", message.len());
}

#[test]
fn denial_names_container_image_repository_what_it_has_what_is_required_and_the_policy() {
    let p = policy(
        "regulated-require-cmk",
        "rules: {allowedEncryptionTypes: [KMS, KMS_DSSE]}",
    );
    let v = judge(&[p], aes256(), Options::default());
    let message = v.denial_message().unwrap();
    let mut lines = message.lines();
    assert_eq!(
        lines.next().unwrap(),
        "container \"app\" image 123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.0: \
         repository payments/api is encrypted with AES256; policy regulated-require-cmk allows only KMS, KMS_DSSE"
    );
    let hint = lines.next().unwrap();
    assert!(
        hint.starts_with("hint: a repository's encryption cannot be changed"),
        "{hint}"
    );
    assert!(
        hint.contains(
            "--encryption-configuration encryptionType=KMS,kmsKey=<customer-managed key ARN>"
        ),
        "{hint}"
    );
    assert_eq!(lines.next(), None);
}

#[rstest]
#[case::rotation(
    cmk(Rotation::Disabled, KeyState::Enabled),
    "aws kms enable-key-rotation --key-id arn:aws:kms:us-east-1:123456789012:key/1111"
)]
#[case::disabled(
    cmk(Rotation::Enabled, KeyState::Disabled),
    "aws kms enable-key --key-id arn:aws:kms:us-east-1:123456789012:key/1111"
)]
#[case::pending_deletion(
    cmk(Rotation::Enabled, KeyState::PendingDeletion),
    "aws kms cancel-key-deletion --key-id"
)]
#[case::unknown(unknown_key(), "kms:DescribeKey")]
#[case::not_found(
    Ok(RepositoryLookup::NotFound),
    "push the image to payments/api in account 123456789012, region us-east-1"
)]
fn each_problem_gets_its_remediation_hint(#[case] lookup: Lookup, #[case] expected: &str) {
    let p = policy("p", "rules: {requireKeyRotation: true}");
    let message = judge(&[p], lookup, Options::default())
        .denial_message()
        .unwrap();
    assert!(message.contains(expected), "{message}");
}

#[test]
fn a_pending_deletion_denial_names_the_deletion_date_when_kms_reported_it() {
    let p = policy("p", "rules: {requireUsableKey: true}");
    // 2026-12-14T00:00:00Z
    let date = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_797_206_400);
    let dated = Ok(RepositoryLookup::Found(RepositoryFacts {
        encryption_type: EncryptionType::Kms,
        kms_key: Some(KeyLookup::Known(KeyFacts {
            arn: "arn:aws:kms:us-east-1:123456789012:key/1111".into(),
            manager: KeyManager::Customer,
            state: KeyState::PendingDeletion,
            rotation: Rotation::Enabled,
            deletion_date: Some(date),
        })),
    }));
    let message = judge(std::slice::from_ref(&p), dated, Options::default())
        .denial_message()
        .unwrap();
    assert!(
        message.contains("is PendingDeletion (to be deleted on 2026-12-14), so pulls from it fail"),
        "{message}"
    );
    // Unknown date: nothing made up.
    let undated = cmk(Rotation::Enabled, KeyState::PendingDeletion);
    let message = judge(&[p], undated, Options::default())
        .denial_message()
        .unwrap();
    assert!(
        message.contains("is PendingDeletion, so pulls"),
        "{message}"
    );
}

/// Every fact ecr-guard could fail to learn, with the reason (the metric
/// label) and the hint it must get: its own, never the one of a value it
/// might have had. `rotation_unknown` is the reported case: a key policy that
/// allows DescribeKey only is not a key without rotation.
#[rstest]
#[case::rotation_denied(
    rotation_unknown(Unlearnt::Denied),
    Reason::RotationUnknown,
    "allow ecr-guard's IAM role kms:GetKeyRotationStatus in the key policy of arn:aws:kms:us-east-1:123456789012:key/1111"
)]
#[case::rotation_rejected(
    rotation_unknown(Unlearnt::Rejected),
    Reason::RotationUnknown,
    "`aws kms get-key-rotation-status --key-id arn:aws:kms:us-east-1:123456789012:key/1111aaaa-0000-0000-0000-000000000001 --region us-east-1`"
)]
#[case::rotation_key_gone(
    rotation_unknown(Unlearnt::NotFound),
    Reason::RotationUnknown,
    "KMS has no key"
)]
#[case::state_unreported(
    cmk(Rotation::Enabled, KeyState::Unreported),
    Reason::KeyStateUnknown,
    "`aws kms describe-key --key-id arn:aws:kms:us-east-1:123456789012:key/1111"
)]
#[case::describe_key_denied(
    unknown_key_because(Unlearnt::Denied),
    Reason::KeyUnknown,
    "kms:DescribeKey"
)]
#[case::key_not_found(
    unknown_key_because(Unlearnt::NotFound),
    Reason::KeyUnknown,
    "KMS has no key arn:aws:kms:us-east-1:999999999999"
)]
#[case::key_not_named(
    unknown_key_because(Unlearnt::NotNamed),
    Reason::KeyUnknown,
    "`aws ecr describe-repositories --repository-names payments/api --registry-id 123456789012 --region us-east-1`"
)]
#[case::describe_key_rejected(
    unknown_key_because(Unlearnt::Rejected),
    Reason::KeyUnknown,
    "`aws kms describe-key --key-id"
)]
#[case::key_manager_unreported(
    unknown_key_because(Unlearnt::Unreported),
    Reason::KeyUnknown,
    "upgrade ecr-guard"
)]
#[case::describe_repositories_denied(
    Err(LookupFailure::AccessDenied("not authorized".into())),
    Reason::LookupFailed,
    "allow ecr-guard's IAM role ecr:DescribeRepositories on repository payments/api in account 123456789012, region us-east-1"
)]
#[case::no_credentials(
    Err(LookupFailure::Credentials("no AWS credentials were found".into())),
    Reason::LookupFailed,
    "give ecr-guard AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
)]
#[case::unrecognised_answer(
    Err(LookupFailure::Unrecognised("encryption type \"AES512\"".into())),
    Reason::LookupFailed,
    "upgrade ecr-guard"
)]
#[case::timeout(Err(LookupFailure::Timeout), Reason::LookupFailed, "hint: retry")]
#[case::throttled(Err(LookupFailure::Throttled), Reason::LookupFailed, "hint: retry")]
#[case::assume_role_refused(
    Err(LookupFailure::AssumeRole {
        role: "arn:aws:iam::111111111111:role/ecr-guard-reader".into(),
        reason: "STS denied AssumeRole: not authorized".into(),
        refused: true,
        external_id: true,
    }),
    Reason::LookupFailed,
    "let ecr-guard assume arn:aws:iam::111111111111:role/ecr-guard-reader: the role must exist, \
     its trust policy must allow sts:AssumeRole to ecr-guard's own role as principal with the \
     condition sts:ExternalId equal to --assume-role-external-id"
)]
#[case::assume_role_throttled(
    Err(LookupFailure::AssumeRole {
        role: "arn:aws:iam::111111111111:role/ecr-guard-reader".into(),
        reason: "STS throttled AssumeRole".into(),
        refused: false,
        external_id: false,
    }),
    Reason::LookupFailed,
    "hint: retry"
)]
fn a_fact_not_learnt_has_its_own_reason_and_hint(
    #[case] lookup: Lookup,
    #[case] reason: Reason,
    #[case] hint: &str,
) {
    let p = policy("p", "rules: {requireKeyRotation: true}");
    let v = judge(&[p], lookup, Options::default());
    assert_eq!(reasons(&v), vec![reason], "{:#?}", v.violations);
    let message = v.denial_message().unwrap();
    assert!(message.contains(hint), "{message}");
    // Never the remedy for a value that was not learnt.
    for wrong in ["enable-key-rotation", "enable-key ", "cancel-key-deletion"] {
        assert!(!message.contains(wrong), "{wrong} in {message}");
    }
    if reason != Reason::LookupFailed {
        assert!(!message.contains("hint: retry"), "{message}");
    }
}

#[test]
fn rotation_unknown_reads_as_unknown_not_as_disabled() {
    let p = policy("p", "rules: {requireKeyRotation: true}");
    let v = judge(&[p], rotation_unknown(Unlearnt::Denied), Options::default());
    assert_eq!(Reason::RotationUnknown.as_str(), "rotation_unknown");
    let message = v.denial_message().unwrap();
    assert_eq!(
        message.lines().next().unwrap(),
        "container \"app\" image 123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.0: \
         the rotation status of KMS key arn:aws:kms:us-east-1:123456789012:key/1111aaaa-0000-0000-0000-000000000001 \
         is unknown (GetKeyRotationStatus was denied); policy p requires key rotation"
    );
    assert!(!message.contains("disabled"), "{message}");
}

#[test]
fn a_key_hint_never_guesses_the_region_from_the_repository() {
    // A key ARN without a region field (hand-made; KMS always gives one) gets a
    // placeholder, not the repository's region.
    let odd = "arn:aws:kms::123456789012:key/1111";
    let p = policy("p", "rules: {requireKeyRotation: true}");
    let lookup = found(
        EncryptionType::Kms,
        key(
            odd,
            KeyManager::Customer,
            KeyState::Disabled,
            Rotation::Disabled,
        ),
    );
    let message = judge(&[p], lookup, Options::default())
        .denial_message()
        .unwrap();
    assert!(
        message.contains(&format!(
            "aws kms enable-key-rotation --key-id {odd} --region <the key's region>"
        )),
        "{message}"
    );
    assert!(!message.contains("--region us-east-1"), "{message}");
}

#[test]
fn an_unreported_key_state_is_no_note_of_failing_pulls() {
    let p = policy("p", "rules: {requireUsableKey: false}");
    let v = judge(
        &[p],
        cmk(Rotation::Enabled, KeyState::Unreported),
        Options::default(),
    );
    assert!(!v.is_denied());
    assert!(v.notes.is_empty(), "{:?}", v.notes);
}

#[test]
fn a_hint_shared_by_two_violations_is_shown_once() {
    let a = policy("a", "rules: {allowedEncryptionTypes: [KMS]}");
    let b = policy("b", "rules: {allowedEncryptionTypes: [KMS]}");
    let message = judge(&[a, b], aes256(), Options::default())
        .denial_message()
        .unwrap();
    assert_eq!(
        message.lines().filter(|l| l.starts_with("hint:")).count(),
        1,
        "{message}"
    );
    assert_eq!(
        message.lines().filter(|l| l.contains("policy a")).count(),
        1
    );
    assert_eq!(
        message.lines().filter(|l| l.contains("policy b")).count(),
        1
    );
}

#[test]
fn warnings_stay_within_120_characters_and_name_the_container() {
    let p = policy(
        "a-policy-with-a-rather-long-name-for-warnings",
        &format!("mode: Warn\n{STRICT}"),
    );
    let v = judge(&[p], unknown_key(), Options::default());
    let warnings = v.warnings();
    assert_eq!(warnings.len(), 2);
    for w in &warnings {
        assert!(w.chars().count() <= 120, "{w}");
        assert!(w.starts_with("container \"app\""), "{w}");
    }
    assert!(
        warnings.iter().all(|w| w.contains("KMS key 3333cccc…")),
        "key ARNs shortened: {warnings:?}"
    );
}

#[test]
fn an_unusable_key_is_noted_even_when_no_rule_asks() {
    let p = policy("p", "rules: {requireUsableKey: false}");
    let v = judge(
        &[p],
        cmk(Rotation::Enabled, KeyState::PendingDeletion),
        Options::default(),
    );
    assert!(!v.is_denied());
    assert_eq!(
        v.notes,
        vec![
            "container \"app\": KMS key of repository payments/api is PendingDeletion; pulls will fail"
        ]
    );
}

#[test]
fn lookup_failure_allowed_is_admitted_with_a_note() {
    let p = policy("p", "onLookupFailure: Allow");
    let v = judge(&[p], Err(LookupFailure::Timeout), Options::default());
    assert!(!v.is_denied());
    assert_eq!(v.notes.len(), 1);
    assert!(v.notes[0].contains("not verified"), "{}", v.notes[0]);
}

// --- which policies and images apply ---

fn judge_in(policies: &[Policy], labels: &[(&str, &str)], image_uses: Vec<ImageUse>) -> Verdict {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let facts: HashMap<EcrRepository, Lookup> = image_uses
        .iter()
        .filter_map(|s| s.ecr_repository().cloned())
        .map(|r| (r, aes256()))
        .collect();
    evaluate(
        &applicable(policies, &labels),
        &image_uses,
        &facts,
        Options::default(),
    )
}

const DENY_AES: &str = "rules: {allowedEncryptionTypes: [KMS]}";

#[rstest]
#[case::no_selector_is_every_namespace("", &[], true)]
#[case::match_labels_hit("namespaceSelector: {matchLabels: {env: prod}}", &[("env", "prod")], true)]
#[case::match_labels_miss("namespaceSelector: {matchLabels: {env: prod}}", &[("env", "dev")], false)]
#[case::in_hit("namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod, stage]}]}", &[("env", "stage")], true)]
#[case::in_miss("namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod]}]}", &[], false)]
#[case::not_in_hit("namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}", &[], true)]
#[case::not_in_miss("namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [dev]}]}", &[("env", "dev")], false)]
#[case::exists_hit("namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}", &[("team", "x")], true)]
#[case::exists_miss("namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}", &[], false)]
#[case::does_not_exist_hit("namespaceSelector: {matchExpressions: [{key: exempt, operator: DoesNotExist}]}", &[], true)]
#[case::does_not_exist_miss("namespaceSelector: {matchExpressions: [{key: exempt, operator: DoesNotExist}]}", &[("exempt", "")], false)]
#[case::labels_and_expressions_are_anded("namespaceSelector: {matchLabels: {env: prod}, matchExpressions: [{key: team, operator: Exists}]}", &[("env", "prod")], false)]
fn namespace_selector(
    #[case] selector: &str,
    #[case] labels: &[(&str, &str)],
    #[case] applies: bool,
) {
    let p = policy("p", &format!("{selector}\n{DENY_AES}"));
    let v = judge_in(
        &[p],
        labels,
        vec![ImageUse::new(Slot::Container, "app", image("team/app"))],
    );
    assert_eq!(v.is_denied(), applies);
}

#[rstest]
#[case::star_matches_all("images: ['*']", "team/app", true)]
#[case::prefix_crosses_slashes(
    "images: ['123456789012.dkr.ecr.us-east-1.amazonaws.com/team/*']",
    "team/a/b",
    true
)]
#[case::prefix_miss(
    "images: ['123456789012.dkr.ecr.us-east-1.amazonaws.com/team/*']",
    "other/app",
    false
)]
#[case::glob_ignores_host_case(
    "images: ['123456789012.DKR.ECR.us-east-1.amazonaws.com/team/*']",
    "team/app",
    true
)]
#[case::exclude_wins("excludeImages: ['*/team/app']", "team/app", false)]
#[case::exclude_other("excludeImages: ['*/team/other']", "team/app", true)]
#[case::alternatives("images: ['*/{team,ops}/*']", "ops/app", true)]
fn image_globs(#[case] globs: &str, #[case] repository: &str, #[case] judged: bool) {
    let p = policy("p", &format!("{globs}\n{DENY_AES}"));
    let v = judge_in(
        &[p],
        &[],
        vec![ImageUse::new(Slot::Container, "app", image(repository))],
    );
    assert_eq!(v.is_denied(), judged);
}

#[rstest]
#[case::docker_hub("nginx:1.27", "Allow", false)]
#[case::docker_hub_denied("nginx:1.27", "Deny", true)]
#[case::ecr_public_is_not_private_ecr("public.ecr.aws/nginx/nginx:1", "Deny", true)]
#[case::ghcr_denied(
    "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "Deny",
    true
)]
fn non_ecr_images(#[case] reference: &str, #[case] setting: &str, #[case] denied: bool) {
    let p = policy("p", &format!("nonEcrImages: {setting}"));
    let v = judge_in(
        &[p],
        &[],
        vec![ImageUse::new(Slot::Container, "app", reference)],
    );
    assert_eq!(v.is_denied(), denied);
    if denied {
        assert_eq!(reasons(&v), vec![Reason::NonEcrImage]);
        assert!(
            v.denial_message()
                .unwrap()
                .contains("is not from a private ECR registry")
        );
    }
}

#[test]
fn non_ecr_images_are_never_looked_up() {
    let p = policy("p", DENY_AES);
    let image_uses = vec![
        ImageUse::new(Slot::Container, "a", "nginx"),
        ImageUse::new(Slot::Container, "b", image("team/app")),
        ImageUse::new(Slot::Container, "c", image("team/app")),
    ];
    let lookups = repositories_to_look_up(&[&p], &image_uses);
    assert_eq!(
        lookups.into_iter().collect::<Vec<_>>(),
        vec![repo("team/app")]
    );
}

#[test]
fn excluded_images_are_never_looked_up() {
    let p = policy("p", &format!("excludeImages: ['*/team/*']\n{DENY_AES}"));
    let image_uses = vec![ImageUse::new(Slot::Container, "b", image("team/app"))];
    assert!(repositories_to_look_up(&[&p], &image_uses).is_empty());
}

#[test]
fn an_invalid_image_reference_fails_closed() {
    let p = policy("p", "{}");
    let v = judge_in(
        &[p],
        &[],
        vec![ImageUse::new(Slot::Container, "app", "Not A Valid Image")],
    );
    assert_eq!(reasons(&v), vec![Reason::InvalidImage]);
}

#[test]
fn every_slot_is_named_in_messages() {
    let p = policy("p", DENY_AES);
    let image_uses = vec![
        ImageUse::new(Slot::InitContainer, "init", image("a")),
        ImageUse::new(Slot::EphemeralContainer, "dbg", image("b")),
        ImageUse::new(Slot::ImageVolume, "data", image("c")),
    ];
    let message = judge_in(&[p], &[], image_uses).denial_message().unwrap();
    assert!(
        message.contains("init container \"init\" image"),
        "{message}"
    );
    assert!(
        message.contains("ephemeral container \"dbg\" image"),
        "{message}"
    );
    assert!(message.contains("image volume \"data\" image"), "{message}");
}

// --- validation ---

#[rstest]
#[case::bad_image_glob("images: ['team/[abc']", &["spec.images[0]"])]
#[case::empty_images("images: []", &["spec.images"])]
#[case::bad_exclude_glob("excludeImages: ['ok', '{a,b']", &["spec.excludeImages[1]"])]
#[case::empty_glob("images: ['']", &["spec.images[0]"])]
#[case::key_not_an_arn("rules: {allowedKmsKeys: ['alias/my-key']}", &["spec.rules.allowedKmsKeys[0]"])]
#[case::no_types("rules: {allowedEncryptionTypes: []}", &["spec.rules.allowedEncryptionTypes"])]
#[case::aes256_only_with_key_rules("rules: {allowedEncryptionTypes: [AES256], requireCustomerManagedKey: true, requireKeyRotation: true}", &["spec.rules.requireCustomerManagedKey", "spec.rules.requireKeyRotation"])]
#[case::bad_operator("namespaceSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}", &["spec.namespaceSelector.matchExpressions[0].operator"])]
#[case::in_without_values("namespaceSelector: {matchExpressions: [{key: a, operator: In}]}", &["spec.namespaceSelector.matchExpressions[0].values"])]
#[case::exists_with_values("namespaceSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}", &["spec.namespaceSelector.matchExpressions[0].values"])]
#[case::empty_key("namespaceSelector: {matchExpressions: [{key: '', operator: Exists}]}", &["spec.namespaceSelector.matchExpressions[0].key"])]
#[case::every_problem_reported("images: ['[']\nexcludeImages: ['[']\nrules: {allowedEncryptionTypes: []}", &["spec.images[0]", "spec.excludeImages[0]", "spec.rules.allowedEncryptionTypes"])]
fn validation_reports_every_problem_with_its_path(#[case] yaml: &str, #[case] paths: &[&str]) {
    let p = policy("bad", yaml);
    let got: Vec<&str> = p.problems().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(got, paths, "{:?}", p.problems());
}

#[test]
fn example_valid_policy_has_no_problems() {
    assert!(policy("strict", STRICT).problems().is_empty());
}

#[test]
fn an_invalid_policy_fails_closed_in_its_mode() {
    let p = policy("broken", "images: ['[']");
    let v = judge_in(
        &[p],
        &[],
        vec![ImageUse::new(Slot::Container, "app", "nginx")],
    );
    assert_eq!(reasons(&v), vec![Reason::InvalidPolicy]);
    let message = v.denial_message().unwrap();
    assert!(
        message.starts_with("policy broken is invalid (spec.images[0]: invalid glob"),
        "{message}"
    );
    assert!(
        message.contains("invalid policies fail closed"),
        "{message}"
    );

    let warn = policy("broken", "mode: Warn\nimages: ['[']");
    let v = judge_in(
        &[warn],
        &[],
        vec![ImageUse::new(Slot::Container, "app", "nginx")],
    );
    assert!(!v.is_denied());
    assert_eq!(v.warnings().len(), 1);
}

#[test]
fn an_invalid_selector_applies_everywhere() {
    let p = policy(
        "broken",
        "namespaceSelector: {matchExpressions: [{key: a, operator: Bogus}]}",
    );
    let v = judge_in(
        &[p],
        &[("unrelated", "x")],
        vec![ImageUse::new(Slot::Container, "app", "nginx")],
    );
    assert!(v.is_denied());
}

#[test]
fn defaults_are_those_the_design_names() {
    let spec: EcrEncryptionPolicySpec = serde_saphyr::from_str("{}").unwrap();
    assert_eq!(spec.mode, Mode::Enforce);
    assert_eq!(spec.images, vec!["*"]);
    assert_eq!(
        spec.rules.allowed_encryption_types,
        EncryptionType::ALL.to_vec()
    );
    assert!(spec.rules.require_usable_key);
    assert!(!spec.rules.require_customer_managed_key);
    assert_eq!(spec.non_ecr_images, NonEcrImages::Allow);
    assert_eq!(spec.on_lookup_failure, OnLookupFailure::Deny);
    assert_eq!(spec.rules, Rules::default());
}

#[test]
fn unknown_encryption_type_is_rejected_with_its_place() {
    let err = serde_saphyr::from_str::<EcrEncryptionPolicySpec>(
        "rules: {allowedEncryptionTypes: [KMS, DES]}",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("DES"), "{err}");
}

// Pull-through cache: a repository that does not exist yet, judged by the
// template that will create it.

fn planned(template: Option<&str>, lookup: Lookup) -> Lookup {
    let Ok(RepositoryLookup::Found(facts)) = lookup else {
        panic!("planned() takes the facts of a found repository");
    };
    Ok(RepositoryLookup::ToBeCreated(PlannedRepository {
        rule: "docker-hub".into(),
        upstream: "registry-1.docker.io".into(),
        template: template.map(str::to_owned),
        facts,
    }))
}

#[rstest]
#[case::rotating_cmk_template_passes(planned(Some("docker-hub"), rotating_cmk()), vec![])]
#[case::aes256_template_fails(planned(Some("docker-hub"), aes256()), vec![Reason::EncryptionType])]
#[case::no_template_is_aes256(planned(None, aes256()), vec![Reason::EncryptionType])]
#[case::aws_managed_key_fails_cmk(planned(Some("ROOT"), aws_managed()), vec![Reason::CustomerManagedKeyRequired])]
#[case::disabled_template_key(planned(Some("docker-hub"), cmk(Rotation::Enabled, KeyState::Disabled)), vec![Reason::KeyUnusable])]
#[case::static_template_key(planned(Some("docker-hub"), cmk(Rotation::Disabled, KeyState::Enabled)), vec![Reason::RotationDisabled])]
fn a_planned_repository_is_judged_by_every_rule(
    #[case] lookup: Lookup,
    #[case] expected: Vec<Reason>,
) {
    let v = judge(&[policy("strict", STRICT)], lookup, Options::default());
    assert_eq!(reasons(&v), expected, "{:#?}", v.violations);
}

#[test]
fn a_planned_repository_says_what_is_judged_and_hints_at_the_template() {
    let v = judge(
        &[policy("strict", STRICT)],
        planned(Some("docker-hub"), aes256()),
        Options::default(),
    );
    let message = v.violations[0].message();
    assert!(
        message.contains(
            "repository payments/api does not exist yet; pull-through cache rule docker-hub \
             will create it with template docker-hub (AES256); policy strict allows only KMS, KMS_DSSE"
        ),
        "{message}"
    );
    let hint = v.violations[0].hint.as_ref().expect("a hint").to_string();
    assert!(
        hint.contains("aws ecr update-repository-creation-template --prefix docker-hub"),
        "{hint}"
    );
    assert!(!hint.contains("create-repository "), "{hint}");

    let v = judge(
        &[policy("strict", STRICT)],
        planned(
            Some("docker-hub"),
            cmk(Rotation::Disabled, KeyState::Enabled),
        ),
        Options::default(),
    );
    let message = v.violations[0].message();
    assert!(
        message.contains(&format!(
            "will create it with template docker-hub (KMS, customer-managed key {CMK}); \
             KMS key {CMK} has automatic rotation disabled; policy strict requires key rotation"
        )),
        "{message}"
    );
    // The key's own fix is the key's, as for an existing repository.
    let hint = v.violations[0].hint.as_ref().expect("a hint").to_string();
    assert!(hint.contains("aws kms enable-key-rotation"), "{hint}");

    let v = judge(
        &[policy("strict", STRICT)],
        planned(None, aes256()),
        Options::default(),
    );
    let hint = v.violations[0].hint.as_ref().expect("a hint").to_string();
    assert!(
        hint.contains(
            "aws ecr create-repository-creation-template --prefix docker-hub --applied-for PULL_THROUGH_CACHE"
        ),
        "{hint}"
    );
}

fn pull_through_failure(cause: PullThroughCause, permission: &'static str) -> Lookup {
    Err(LookupFailure::PullThrough(Box::new(PullThroughFailure {
        permission,
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        cause,
    })))
}

#[rstest]
#[case::deny("{}", vec![Reason::LookupFailed])]
#[case::allow("onLookupFailure: Allow", vec![])]
fn unreadable_rules_are_a_lookup_failure_naming_the_permission(
    #[case] yaml: &str,
    #[case] expected: Vec<Reason>,
) {
    let denied = PullThroughCause::Call(LookupFailure::AccessDenied("not authorized".into()));
    let lookup = pull_through_failure(denied, "ecr:DescribePullThroughCacheRules");
    let v = judge(&[policy("p", yaml)], lookup, Options::default());
    assert_eq!(reasons(&v), expected, "{:#?}", v.violations);
    let text = match v.violations.first() {
        Some(violation) => {
            let hint = violation.hint.as_ref().expect("a hint").to_string();
            assert!(hint.contains("allow ecr-guard's IAM role ecr:DescribePullThroughCacheRules in account 123456789012"), "{hint}");
            violation.message()
        }
        None => v.notes.join("\n"),
    };
    assert!(
        text.contains("ecr:DescribePullThroughCacheRules in account 123456789012, region us-east-1 failed: access denied"),
        "{text}"
    );
}

#[test]
fn templates_of_another_account_need_a_role_there() {
    let cause = PullThroughCause::OtherAccount {
        own: Some("210987654321".into()),
    };
    let lookup = pull_through_failure(cause, "ecr:DescribeRepositoryCreationTemplates");
    let v = judge(&[policy("p", "{}")], lookup, Options::default());
    assert_eq!(reasons(&v), vec![Reason::LookupFailed]);
    let message = v.violations[0].message();
    assert!(
        message.contains("a role in account 123456789012 is needed"),
        "{message}"
    );
    let hint = v.violations[0].hint.as_ref().expect("a hint").to_string();
    assert!(
        hint.contains("give ecr-guard a role in account 123456789012"),
        "{hint}"
    );
}

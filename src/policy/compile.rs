//! Validation: a policy object → a [`Policy`] ready to evaluate, or every problem
//! with its field path. Invalid policies are kept (as [`Policy::invalid`]) so they
//! fail closed instead of silently dropping out.

use std::collections::BTreeMap;
use std::fmt;

use globset::{Glob, GlobBuilder, GlobMatcher};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

use super::crd::{EcrEncryptionPolicySpec, Mode, NonEcrImages, OnLookupFailure, Rules};
use crate::policy::facts::EncryptionType;

/// One thing wrong with a policy, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// e.g. `spec.rules.allowedKmsKeys[1]`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A glob kept with the text it was written as (for messages).
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
    /// `*` (the default of `images`): matches everything, no regex to run.
    everything: bool,
}

impl Pattern {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_match(&self, candidate: &str) -> bool {
        self.everything || self.matcher.is_match(candidate)
    }
}

/// A compiled policy: what evaluation needs, nothing it would have to re-parse.
#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    /// `None` selects every namespace.
    namespaces: Option<Selector>,
    pub(super) body: Body,
}

#[derive(Clone, Debug)]
pub(super) enum Body {
    Valid(Box<Checks>),
    /// Fails closed: every request this policy applies to gets one violation that
    /// lists these problems.
    Invalid(Vec<FieldError>),
}

#[derive(Clone, Debug)]
pub(super) struct Checks {
    pub images: Vec<Pattern>,
    pub exclude_images: Vec<Pattern>,
    pub allowed_types: Vec<EncryptionType>,
    pub require_customer_managed_key: bool,
    pub allowed_kms_keys: Vec<Pattern>,
    pub require_key_rotation: bool,
    pub require_usable_key: bool,
    pub non_ecr_images: NonEcrImages,
    pub on_lookup_failure: OnLookupFailure,
}

impl Policy {
    /// Validates `spec`. Never fails: an invalid spec becomes an invalid policy.
    pub fn compile(name: &str, spec: &EcrEncryptionPolicySpec) -> Policy {
        let mut errors = Vec::new();
        let namespaces = compile_selector(spec.namespace_selector.as_ref(), &mut errors);
        let images = compile_globs("spec.images", &spec.images, true, &mut errors);
        if spec.images.is_empty() {
            errors.push(field(
                "spec.images",
                "must not be empty; use [\"*\"] for every image",
            ));
        }
        let exclude_images = compile_globs(
            "spec.excludeImages",
            &spec.exclude_images,
            true,
            &mut errors,
        );
        let rules = &spec.rules;
        let allowed_kms_keys = compile_key_globs(&rules.allowed_kms_keys, &mut errors);
        let allowed_types = compile_types(rules, &mut errors);

        let body = if errors.is_empty() {
            Body::Valid(Box::new(Checks {
                images,
                exclude_images,
                allowed_types,
                require_customer_managed_key: rules.require_customer_managed_key,
                allowed_kms_keys,
                require_key_rotation: rules.require_key_rotation,
                require_usable_key: rules.require_usable_key,
                non_ecr_images: spec.non_ecr_images,
                on_lookup_failure: spec.on_lookup_failure,
            }))
        } else {
            Body::Invalid(errors)
        };
        Policy {
            name: name.to_string(),
            mode: spec.mode,
            namespaces,
            body,
        }
    }

    /// The validation problems; empty for a valid policy.
    pub fn problems(&self) -> &[FieldError] {
        match &self.body {
            Body::Valid(_) => &[],
            Body::Invalid(errors) => errors,
        }
    }

    /// This policy with problems found outside spec validation (a spec the cluster
    /// holds that this version cannot decode): it becomes invalid and fails closed,
    /// keeping its name, mode and namespace selector.
    pub fn with_problems(mut self, mut problems: Vec<FieldError>) -> Policy {
        if let Body::Invalid(earlier) = self.body {
            problems.extend(earlier);
        }
        self.body = Body::Invalid(problems);
        self
    }

    pub fn is_valid(&self) -> bool {
        matches!(self.body, Body::Valid(_))
    }

    /// Whether this policy applies to a namespace with these labels. An invalid
    /// selector applies everywhere (fail closed).
    pub fn applies_to_namespace(&self, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.as_ref().is_none_or(|s| s.matches(labels))
    }

    /// Whether a valid policy judges an image with this normalised name.
    pub fn selects_image(&self, name: &str) -> bool {
        match &self.body {
            Body::Valid(c) => {
                c.images.iter().any(|p| p.is_match(name))
                    && !c.exclude_images.iter().any(|p| p.is_match(name))
            }
            Body::Invalid(_) => true,
        }
    }
}

fn field(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// `allowedKmsKeys`: globs, each on a key ARN (ECR reports keys by ARN).
fn compile_key_globs(globs: &[String], errors: &mut Vec<FieldError>) -> Vec<Pattern> {
    let patterns = compile_globs("spec.rules.allowedKmsKeys", globs, false, errors);
    for (i, key) in globs.iter().enumerate() {
        if !(key.starts_with("arn:") || key == "*") {
            errors.push(field(
                format!("spec.rules.allowedKmsKeys[{i}]"),
                format!(
                    "{key:?} is not a key ARN glob: ECR reports keys by ARN, e.g. \
                     arn:aws:kms:*:123456789012:key/*"
                ),
            ));
        }
    }
    patterns
}

/// `allowedEncryptionTypes`, sorted and without repeats; a problem for each key
/// rule that can never hold when AES256 (no key) is all it allows.
fn compile_types(rules: &Rules, errors: &mut Vec<FieldError>) -> Vec<EncryptionType> {
    let mut allowed_types = rules.allowed_encryption_types.clone();
    allowed_types.sort();
    allowed_types.dedup();
    if allowed_types.is_empty() {
        errors.push(field(
            "spec.rules.allowedEncryptionTypes",
            "must not be empty: no repository could satisfy it",
        ));
    } else if allowed_types == [EncryptionType::Aes256] {
        let key_rules = [
            (
                rules.require_customer_managed_key,
                "requireCustomerManagedKey",
            ),
            (rules.require_key_rotation, "requireKeyRotation"),
            (!rules.allowed_kms_keys.is_empty(), "allowedKmsKeys"),
        ];
        for (_, rule) in key_rules.iter().filter(|(set, _)| *set) {
            errors.push(field(
                format!("spec.rules.{rule}"),
                "can never hold: allowedEncryptionTypes allows only AES256, which has no KMS key",
            ));
        }
    }
    allowed_types
}

fn compile_globs(
    path: &str,
    globs: &[String],
    case_insensitive: bool,
    errors: &mut Vec<FieldError>,
) -> Vec<Pattern> {
    let mut out = Vec::with_capacity(globs.len());
    for (i, text) in globs.iter().enumerate() {
        let here = format!("{path}[{i}]");
        if text.trim().is_empty() {
            errors.push(field(here, "must not be empty"));
            continue;
        }
        // `*` crosses `/` (repository paths nest); images are matched without case
        // because hosts are case-insensitive and paths are lower-case by grammar.
        let built = GlobBuilder::new(text)
            .literal_separator(false)
            .case_insensitive(case_insensitive)
            .build()
            .map(|g: Glob| g.compile_matcher());
        match built {
            Ok(matcher) => out.push(Pattern {
                everything: text == "*",
                text: text.clone(),
                matcher,
            }),
            Err(e) => errors.push(field(here, format!("invalid glob {text:?}: {}", e.kind()))),
        }
    }
    out
}

fn compile_selector(
    selector: Option<&LabelSelector>,
    errors: &mut Vec<FieldError>,
) -> Option<Selector> {
    let selector = selector?;
    let before = errors.len();
    for (key, _) in selector.match_labels.iter().flatten() {
        if key.is_empty() {
            errors.push(field(
                "spec.namespaceSelector.matchLabels",
                "label keys must not be empty",
            ));
        }
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let here = format!("spec.namespaceSelector.matchExpressions[{i}]");
        if req.key.is_empty() {
            errors.push(field(format!("{here}.key"), "must not be empty"));
        }
        let has_values = req.values.as_ref().is_some_and(|v| !v.is_empty());
        match req.operator.as_str() {
            "In" | "NotIn" if !has_values => errors.push(field(
                format!("{here}.values"),
                format!("must not be empty for operator {}", req.operator),
            )),
            "Exists" | "DoesNotExist" if has_values => errors.push(field(
                format!("{here}.values"),
                format!("must be empty for operator {}", req.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(field(
                format!("{here}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            )),
        }
    }
    if errors.len() > before {
        return None;
    }
    match Selector::try_from(selector.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(field("spec.namespaceSelector", e.to_string()));
            None
        }
    }
}

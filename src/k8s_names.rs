//! Kubernetes' rules for namespace names, label keys and label values, so that
//! names given on the command line or in files are held to what the API server
//! would accept before they decide which policies apply.
//!
//! Written by hand: these are the rules of `k8s.io/apimachinery/pkg/util/validation`
//! (`IsDNS1123Label`, `IsDNS1123Subdomain`, `IsQualifiedName`, `IsValidLabelValue`,
//! with their limits and messages), which no Rust crate we depend on exports
//! (k8s-openapi and kube have the types, not the validation), and the only crates
//! that carry them are parts of unrelated projects that pull in `regex` for a
//! few character classes. Messages follow apimachinery's word for word, so what
//! `ecr-guard` says matches what `kubectl` would.

/// Longest DNS-1123 label (a namespace name), in bytes.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain (a label key's prefix), in bytes.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest name part of a qualified name (a label key without its prefix), in bytes.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value, in bytes.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Why a name breaks Kubernetes' rules: every rule it breaks, as apimachinery
/// words them (e.g. `must be no more than 63 characters; a lowercase RFC 1123
/// label must consist of …, regex used for validation is '…'`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Invalid(pub Vec<String>);

fn result(errors: Vec<String>) -> Result<(), Invalid> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

fn regex_error(message: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
    format!(
        "{message} (e.g. {}, regex used for validation is '{fmt}')",
        examples.join(", or ")
    )
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without the length limit.
fn is_dns1123_label_text(value: &str) -> bool {
    let bytes = value.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => edge(first) && edge(last) && bytes.iter().all(inner),
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` without the length limit.
fn is_qualified_name_text(value: &str) -> bool {
    let bytes = value.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() && bytes.iter().all(inner)
        }
        _ => false,
    }
}

/// A DNS-1123 label, the rule for namespace names: at most 63 characters of
/// `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
pub fn dns1123_label(value: &str) -> Result<(), Invalid> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_dns1123_label_text(value) {
        errors.push(regex_error(
            DNS1123_LABEL_ERR_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    result(errors)
}

/// A DNS-1123 subdomain (at most 253 characters of DNS-1123 labels joined by `.`),
/// the rule for a label key's prefix.
pub fn dns1123_subdomain(value: &str) -> Result<(), Invalid> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(is_dns1123_label_text) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    result(errors)
}

/// A qualified name, the rule for label keys: an optional DNS-1123 subdomain
/// prefix and `/`, then a name of at most 63 characters of letters, digits, `-`,
/// `_` and `.`, starting and ending with a letter or digit.
pub fn qualified_name(value: &str) -> Result<(), Invalid> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else if let Err(Invalid(prefix_errors)) = dns1123_subdomain(prefix) {
                errors.extend(
                    prefix_errors
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            return Err(Invalid(vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            )]));
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX_LENGTH {
            errors.push(format!(
                "name part {}",
                max_len_error(QUALIFIED_NAME_MAX_LENGTH)
            ));
        }
        if !is_qualified_name_text(name) {
            errors.push(format!(
                "name part {}",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
        }
    }
    result(errors)
}

/// A label value: empty, or at most 63 characters of letters, digits, `-`, `_`
/// and `.`, starting and ending with a letter or digit.
pub fn label_value(value: &str) -> Result<(), Invalid> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !is_qualified_name_text(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    result(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("payments")]
    #[case("a")]
    #[case("0")]
    #[case("kube-system")]
    #[case("123-abc")]
    #[case(&"a".repeat(63))]
    fn namespace_names_kubernetes_accepts(#[case] name: &str) {
        assert_eq!(dns1123_label(name), Ok(()));
    }

    #[rstest]
    #[case("", false)]
    #[case("Payments", false)]
    #[case("pay_ments", false)]
    #[case("pay.ments", false)]
    #[case("-payments", false)]
    #[case("payments-", false)]
    #[case(" payments", false)]
    #[case("payments ", false)]
    #[case("paymënts", false)]
    #[case(&"a".repeat(64), true)]
    fn namespace_names_kubernetes_refuses(#[case] name: &str, #[case] too_long: bool) {
        let Invalid(errors) = dns1123_label(name).unwrap_err();
        assert_eq!(
            errors
                .iter()
                .any(|e| e == "must be no more than 63 characters"),
            too_long,
            "{name:?}: {errors:?}"
        );
        if !too_long {
            assert_eq!(
                errors,
                [
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                ],
                "{name:?}"
            );
        }
    }

    #[rstest]
    #[case("compliance")]
    #[case("Compliance")]
    #[case("app.kubernetes.io/name")]
    #[case("kubernetes.io/metadata.name")]
    #[case("my_key-1.x")]
    #[case("a")]
    #[case(&"k".repeat(63))]
    #[case(&format!("{}/{}", "p".repeat(253), "k".repeat(63)))]
    fn label_keys_kubernetes_accepts(#[case] key: &str) {
        assert_eq!(qualified_name(key), Ok(()));
    }

    #[rstest]
    #[case("", "name part must be non-empty")]
    #[case(" compliance", "name part must consist of alphanumeric characters")]
    #[case("compliance ", "name part must consist of alphanumeric characters")]
    #[case("_x", "name part must consist of alphanumeric characters")]
    #[case("x.", "name part must consist of alphanumeric characters")]
    #[case("a b", "name part must consist of alphanumeric characters")]
    #[case(&"k".repeat(64), "name part must be no more than 63 characters")]
    #[case("/name", "prefix part must be non-empty")]
    #[case("example.com/", "name part must be non-empty")]
    #[case("Example.com/name", "prefix part a lowercase RFC 1123 subdomain")]
    #[case("example..com/name", "prefix part a lowercase RFC 1123 subdomain")]
    #[case(&format!("{}/k", "p".repeat(254)), "prefix part must be no more than 253 characters")]
    #[case("a/b/c", "a qualified name must consist of")]
    fn label_keys_kubernetes_refuses(#[case] key: &str, #[case] expected: &str) {
        let message = qualified_name(key).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{key:?}: {message}");
    }

    #[rstest]
    #[case("")]
    #[case("regulated")]
    #[case("Prod_1.x-y")]
    #[case(&"v".repeat(63))]
    fn label_values_kubernetes_accepts(#[case] value: &str) {
        assert_eq!(label_value(value), Ok(()));
    }

    #[rstest]
    #[case("regulated env=prod")]
    #[case(" regulated")]
    #[case("-x")]
    #[case("x_")]
    #[case("a/b")]
    #[case("a=b")]
    #[case("ü")]
    fn label_values_kubernetes_refuses(#[case] value: &str) {
        assert_eq!(
            label_value(value).unwrap_err().to_string(),
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            "{value:?}"
        );
        assert_eq!(
            label_value(&"v".repeat(64)).unwrap_err().to_string(),
            "must be no more than 63 characters"
        );
    }
}

//! Image references → the ECR repository they live in, or "not ECR".
//!
//! The Docker grammar itself is `reference`'s job: oci-spec's `Reference`
//! parser, written out by hand without its regex (see there why, and why that
//! departs from DESIGN.md). Around it this module does what that grammar leaves
//! out: host case and `:443` are normalised first (an ECR image must not pass as
//! "not ECR" by spelling), an upper-case repository path is rejected (the
//! grammar lets one through as a Docker Hub name), and the host is matched label
//! by label against the private ECR endpoint names.

mod reference;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use reference::Error as GrammarError;

/// A private ECR repository an image lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EcrRepository {
    /// The 12-digit account id: the `registryId` for DescribeRepositories.
    pub account: String,
    /// e.g. `us-east-1`, `cn-north-1`, `us-gov-west-1`.
    pub region: String,
    /// The repository name, e.g. `payments/api`.
    pub name: String,
}

impl fmt::Display for EcrRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Which flavour of ECR endpoint the host named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// `<account>.dkr.ecr.<region>.<suffix>`
    Standard,
    /// `<account>.dkr.ecr-fips.<region>.<suffix>`
    Fips,
    /// `<account>.dkr-ecr.<region>.on.aws` (IPv4 and IPv6)
    DualStack,
    /// `<account>.dkr-ecr-fips.<region>.on.aws`
    DualStackFips,
}

impl HostKind {
    /// Whether the host is a FIPS endpoint.
    pub fn is_fips(self) -> bool {
        matches!(self, HostKind::Fips | HostKind::DualStackFips)
    }

    /// Whether the host is a dual-stack (IPv4 and IPv6) endpoint.
    pub fn is_dual_stack(self) -> bool {
        matches!(self, HostKind::DualStack | HostKind::DualStackFips)
    }
}

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A private ECR registry.
    Ecr {
        repository: EcrRepository,
        /// Which endpoint flavour the image names (FIPS, dual-stack).
        host_kind: HostKind,
    },
    /// Docker Hub, ECR Public (`public.ecr.aws`), or any other registry.
    NotEcr,
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Normalised name without tag or digest, host lower-cased and without `:443`,
    /// Docker Hub spelled out: `docker.io/library/nginx`. Policy globs match this.
    pub name: String,
    /// The tag; `latest` when the reference names neither a tag nor a digest, as
    /// a runtime would pull.
    pub tag: Option<String>,
    /// The digest, e.g. `sha256:…`. When both are given, runtimes pull by digest.
    pub digest: Option<String>,
    /// The private ECR repository, or not ECR.
    pub location: Location,
}

impl ImageRef {
    /// The private ECR repository, if the image lives in one.
    pub fn ecr_repository(&self) -> Option<&EcrRepository> {
        match &self.location {
            Location::Ecr { repository, .. } => Some(repository),
            Location::NotEcr => None,
        }
    }
}

/// Why an image reference could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Empty or only whitespace.
    #[error("image reference is empty")]
    Empty,
    /// `reference` is the input as given, cut to [`MAX_REFERENCE_IN_ERROR`]
    /// characters (plus `…`) so a huge input does not flood a denial message.
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
}

/// How many characters of a rejected reference an [`ImageError`] keeps.
pub const MAX_REFERENCE_IN_ERROR: usize = 256;

/// Parses an image reference as a container runtime would.
pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
    let canonical = canonical(reference)?;
    let invalid = |reason: String| ImageError::Invalid {
        reference: shorten(reference),
        reason,
    };
    let parsed = reference::parse(&canonical).map_err(|e| invalid(describe(e, &canonical)))?;
    // The runtime checks digests strictly (lower-case hex); the grammar does not.
    if let Some(digest) = parsed.digest
        && digest.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(invalid("digest must be lower-case hex".to_owned()));
    }

    let location = match ecr_host(parsed.registry) {
        Some(_) if !is_ecr_repository_name(&parsed.repository) => {
            return Err(invalid(format!(
                "{:?} is not a name an ECR repository can have: {ECR_NAME_RULES}",
                parsed.repository
            )));
        }
        Some((account, region, host_kind)) => Location::Ecr {
            repository: EcrRepository {
                account: account.to_owned(),
                region: region.to_owned(),
                name: parsed.repository.clone().into_owned(),
            },
            host_kind,
        },
        None => Location::NotEcr,
    };
    Ok(ImageRef {
        name: [parsed.registry, "/", &parsed.repository].concat(),
        tag: parsed.tag.map(str::to_owned),
        digest: parsed.digest.map(str::to_owned),
        location,
    })
}

/// References longer than this are parsed every time, never remembered.
const MAX_CACHED_REFERENCE: usize = 512;
/// How many parsed references [`parse_cached`] keeps.
const MAX_CACHED_REFERENCES: usize = 4096;

/// [`parse`], remembered and shared. A cluster runs the same few hundred
/// references over and over; a parse costs ~4,500 instructions and five
/// allocations, a hit a hash lookup and a reference count. Bounded (at most
/// 4,096 references of at most 512 bytes) and sharded, so that worker threads
/// do not queue on one lock.
pub fn parse_cached(reference: &str) -> Arc<Result<ImageRef, ImageError>> {
    type Parsed = quick_cache::sync::Cache<Box<str>, Arc<Result<ImageRef, ImageError>>>;
    static CACHE: LazyLock<Parsed> = LazyLock::new(|| Parsed::new(MAX_CACHED_REFERENCES));
    if reference.len() > MAX_CACHED_REFERENCE {
        return Arc::new(parse(reference));
    }
    if let Some(known) = CACHE.get(reference) {
        return known;
    }
    let parsed = Arc::new(parse(reference));
    CACHE.insert(reference.into(), Arc::clone(&parsed));
    parsed
}

/// The checks before the grammar, and the reference with its host in canonical
/// spelling (borrowed when it already is).
fn canonical(reference: &str) -> Result<Cow<'_, str>, ImageError> {
    if reference.trim().is_empty() {
        return Err(ImageError::Empty);
    }
    let invalid = |reason: String| ImageError::Invalid {
        reference: shorten(reference),
        reason,
    };
    let (host, rest) = split_host(reference);
    check_written_form(reference, rest).map_err(invalid)?;
    Ok(match host {
        Some(host) => match canonical_host(host).map_err(invalid)? {
            Cow::Borrowed(_) => Cow::Borrowed(reference),
            Cow::Owned(host) => Cow::Owned(format!("{host}/{rest}")),
        },
        None => Cow::Borrowed(reference),
    })
}

/// What a runtime rejects but the grammar lets through, judged on the reference
/// as written (`rest` is the part after the host, from [`split_host`]).
fn check_written_form(reference: &str, rest: &str) -> Result<(), String> {
    // The grammar is ASCII only (oci-spec's `\w` took any Unicode letter in a tag).
    if !reference.is_ascii() {
        return Err("only ASCII characters are allowed".to_owned());
    }
    // Tags may be mixed case, path components may not. The grammar takes an
    // upper-case first component without a host (`Team/app`) as a Docker Hub path.
    let path = rest.split([':', '@']).next().unwrap_or_default();
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(GrammarError::NameContainsUppercase.to_string());
    }
    // A bare image id names a local image, not a repository.
    let is_hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    if reference.len() == 64 && reference.bytes().all(is_hex) {
        return Err("a 64-character hex image id is not a reference".to_owned());
    }
    Ok(())
}

/// Splits off the registry host the way Docker does: the first component is a
/// host when it has a `.` or a `:` or is `localhost` (in any case: hosts are
/// case-insensitive).
fn split_host(reference: &str) -> (Option<&str>, &str) {
    match reference.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first.eq_ignore_ascii_case("localhost") =>
        {
            (Some(first), rest)
        }
        _ => (None, reference),
    }
}

/// Lower-cases a host and writes its port as the number a client dials, dropping
/// `443`: `A.example:0443` and `a.example` are the same registry. Borrowed when
/// the host is already written that way.
fn canonical_host(host: &str) -> Result<Cow<'_, str>, String> {
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    let Some((name, port)) = host.rsplit_once(':') else {
        return Ok(host);
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        // Not a port at all: leave it for the grammar to reject.
        return Ok(host);
    }
    // `host:5000:443` has two ports; dropping the `:443` would leave a host
    // with a port the grammar then accepts (found by fuzzing). An IPv6 literal
    // (`[::1]:5000`) keeps its colons inside brackets.
    if name.contains(':') && !name.ends_with(']') {
        return Err("the host has more than one port".to_owned());
    }
    match port.parse::<u16>() {
        Ok(443) => Ok(Cow::Owned(name.to_owned())),
        Ok(number) if number > 0 => Ok(Cow::Owned(format!("{name}:{number}"))),
        _ => Err(format!("port {port} is out of range")),
    }
}

/// DNS suffixes of the partitions that host private ECR registries.
const ECR_SUFFIXES: &[&str] = &[
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "on.aws",
    "on.amazonwebservices.com.cn",
    "c2s.ic.gov",
    "sc2s.sgov.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

/// Recognises a private ECR host (already lower-case, port removed) and returns
/// its account, region and kind. Every label must match: a look-alike is not ECR.
fn ecr_host(host: &str) -> Option<(&str, &str, HostKind)> {
    let (account, rest) = host.split_once('.')?;
    // Any service form with any suffix, as the ECR credential helper accepts:
    // calling a host ECR that is not only costs a failed lookup, while missing
    // a real one would let its image through unchecked. (Prefixes end in `.`,
    // so each matches whole labels.)
    let (host_kind, rest) = [
        ("dkr.ecr.", HostKind::Standard),
        ("dkr.ecr-fips.", HostKind::Fips),
        ("dkr-ecr.", HostKind::DualStack),
        ("dkr-ecr-fips.", HostKind::DualStackFips),
    ]
    .into_iter()
    .find_map(|(service, kind)| Some((kind, rest.strip_prefix(service)?)))?;
    let (region, suffix) = rest.split_once('.')?;
    (is_account(account) && is_region(region) && ECR_SUFFIXES.contains(&suffix))
        .then_some((account, region, host_kind))
}

fn is_account(label: &str) -> bool {
    label.len() == 12 && label.bytes().all(|b| b.is_ascii_digit())
}

/// Looks like an AWS region: `us-east-1`, `us-gov-west-1`, `eusc-de-east-1`
/// (letters, one or more words, then a number).
fn is_region(label: &str) -> bool {
    let all =
        |part: &str, test: fn(&u8) -> bool| !part.is_empty() && part.bytes().all(|b| test(&b));
    let Some((area, rest)) = label.split_once('-') else {
        return false;
    };
    let Some((words, number)) = rest.rsplit_once('-') else {
        return false;
    };
    all(area, u8::is_ascii_lowercase)
        && words
            .split('-')
            .all(|word| all(word, u8::is_ascii_alphanumeric))
        && all(number, u8::is_ascii_digit)
}

/// ECR's own rules for a repository name, in words.
const ECR_NAME_RULES: &str = "ECR repository names have at least 2 characters, \
     and each `/`-separated component is lower-case letters and digits joined by \
     single `.`, `_` or `-`";

/// Whether ECR could hold a repository of this name: the ECR API's
/// `repositoryName` is 2 to 256 characters matching
/// `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*` (ECR API
/// Reference, `Repository`). That is stricter than the reference grammar in its
/// separators (no `__`, no `--`) and its minimum; its maximum of 256 is never
/// reached, because the grammar stops at 255. An image naming any other
/// repository cannot be pulled from ECR, and asking ECR about it would only
/// get `InvalidParameterException`.
fn is_ecr_repository_name(name: &str) -> bool {
    let is_run = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        // Runs of [a-z0-9] joined by exactly one separator.
        !bytes.is_empty()
            && bytes.first().is_some_and(is_run)
            && bytes.last().is_some_and(is_run)
            && bytes
                .windows(2)
                .all(|pair| is_run(&pair[0]) || is_run(&pair[1]))
            && bytes
                .iter()
                .all(|b| is_run(b) || matches!(b, b'.' | b'_' | b'-'))
    };
    name.len() >= 2 && name.split('/').all(component_ok)
}

/// The grammar's message (oci-spec's wording), with the limit it applied or
/// the expected shape added, so that the user can see what to change.
fn describe(error: GrammarError, reference: &str) -> String {
    match error {
        GrammarError::NameTooLong { length } => format!(
            "{error}: the limit is on the repository path after the registry host \
             (the host does not count; Docker Hub names count `library/`), and this one has {length}"
        ),
        GrammarError::InvalidFormat => match overlong_tag(reference) {
            Some(length) => format!(
                "{error}: a tag must not be more than {} characters, and this one has {length}",
                reference::TAG_LENGTH_MAX
            ),
            None => format!("{error} (expected [host[:port]/]path[:tag][@digest])"),
        },
        GrammarError::DigestInvalidLength => {
            format!("{error}: sha256 takes 64 hex digits, sha384 96, sha512 128")
        }
        GrammarError::DigestUnsupported => {
            format!("{error}: the algorithm must be sha256, sha384 or sha512")
        }
        GrammarError::NameEmpty | GrammarError::NameContainsUppercase => error.to_string(),
    }
}

/// The length of the reference's tag, when the tag is of the right characters
/// but longer than the grammar allows.
fn overlong_tag(reference: &str) -> Option<usize> {
    let before_digest = reference.split('@').next().unwrap_or_default();
    let (_, tag) = before_digest.rsplit_once(':')?;
    let tag_chars = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    (tag.len() > reference::TAG_LENGTH_MAX && tag.bytes().all(tag_chars)).then_some(tag.len())
}

fn shorten(reference: &str) -> String {
    crate::ellipsize(reference, MAX_REFERENCE_IN_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "123456789012";

    #[test]
    fn parse_cached_answers_as_parse_and_shares_the_answer() {
        for reference in [
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cached/app:1",
            "Cached/App",
            "",
        ] {
            let first = parse_cached(reference);
            assert_eq!(*first, parse(reference), "{reference:?}");
            assert!(
                Arc::ptr_eq(&first, &parse_cached(reference)),
                "{reference:?}"
            );
        }
        // Too long to remember: parsed again every time, with the same answer.
        let long = format!("registry.example/{}:1", "a/".repeat(300));
        let once = parse_cached(&long);
        assert_eq!(*once, parse(&long));
        assert!(!Arc::ptr_eq(&once, &parse_cached(&long)));
    }

    fn ecr(region: &str, name: &str, host_kind: HostKind) -> Location {
        Location::Ecr {
            repository: EcrRepository {
                account: ACCOUNT.to_owned(),
                region: region.to_owned(),
                name: name.to_owned(),
            },
            host_kind,
        }
    }

    fn parsed(reference: &str) -> ImageRef {
        match parse(reference) {
            Ok(image) => image,
            Err(error) => panic!("{reference:?} should parse: {error}"),
        }
    }

    #[rstest]
    #[case::standard(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.4",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api",
        ecr("us-east-1", "payments/api", HostKind::Standard)
    )]
    #[case::govcloud(
        "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/app",
        "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/app",
        ecr("us-gov-west-1", "app", HostKind::Standard)
    )]
    #[case::fips(
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app",
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app",
        ecr("us-gov-west-1", "app", HostKind::Fips)
    )]
    #[case::china(
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
        ecr("cn-north-1", "app", HostKind::Standard)
    )]
    #[case::dual_stack(
        "123456789012.dkr-ecr.eu-west-1.on.aws/app",
        "123456789012.dkr-ecr.eu-west-1.on.aws/app",
        ecr("eu-west-1", "app", HostKind::DualStack)
    )]
    #[case::dual_stack_fips(
        "123456789012.dkr-ecr-fips.us-east-2.on.aws/app",
        "123456789012.dkr-ecr-fips.us-east-2.on.aws/app",
        ecr("us-east-2", "app", HostKind::DualStackFips)
    )]
    #[case::china_dual_stack(
        "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn/app",
        "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn/app",
        ecr("cn-northwest-1", "app", HostKind::DualStack)
    )]
    #[case::us_iso(
        "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov/app",
        "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov/app",
        ecr("us-iso-east-1", "app", HostKind::Standard)
    )]
    #[case::us_iso_fips(
        "123456789012.dkr.ecr-fips.us-iso-east-1.c2s.ic.gov/app",
        "123456789012.dkr.ecr-fips.us-iso-east-1.c2s.ic.gov/app",
        ecr("us-iso-east-1", "app", HostKind::Fips)
    )]
    #[case::us_isob(
        "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov/app",
        "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov/app",
        ecr("us-isob-east-1", "app", HostKind::Standard)
    )]
    #[case::eu_isoe(
        "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk/app",
        "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk/app",
        ecr("eu-isoe-west-1", "app", HostKind::Standard)
    )]
    #[case::us_isof(
        "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov/app",
        "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov/app",
        ecr("us-isof-south-1", "app", HostKind::Standard)
    )]
    #[case::european_sovereign_cloud(
        "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu/app",
        "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu/app",
        ecr("eusc-de-east-1", "app", HostKind::Standard)
    )]
    #[case::upper_case_host(
        "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM/payments/api:1.4",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api",
        ecr("us-east-1", "payments/api", HostKind::Standard)
    )]
    #[case::explicit_port_443(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:443/payments/api",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api",
        ecr("us-east-1", "payments/api", HostKind::Standard)
    )]
    #[case::port_443_with_leading_zero(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:0443/payments/api",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api",
        ecr("us-east-1", "payments/api", HostKind::Standard)
    )]
    #[case::mixed_case_host_and_port_443(
        "123456789012.Dkr.Ecr-Fips.US-East-1.AmazonAWS.com:443/app",
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/app",
        ecr("us-east-1", "app", HostKind::Fips)
    )]
    #[case::nested_repository_path(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/payments/api/v2:3",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/payments/api/v2",
        ecr("us-east-1", "team/payments/api/v2", HostKind::Standard)
    )]
    #[case::pull_through_cache_path(
        "123456789012.dkr.ecr.eu-central-1.amazonaws.com/docker-hub/library/nginx",
        "123456789012.dkr.ecr.eu-central-1.amazonaws.com/docker-hub/library/nginx",
        ecr("eu-central-1", "docker-hub/library/nginx", HostKind::Standard)
    )]
    #[case::pinned_by_digest(
        &format!("123456789012.dkr.ecr.us-west-2.amazonaws.com/app@{SHA}"),
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/app",
        ecr("us-west-2", "app", HostKind::Standard)
    )]
    // Not ECR, by design or by look-alike.
    #[case::docker_hub_short_name("nginx", "docker.io/library/nginx", Location::NotEcr)]
    #[case::docker_hub_library("library/nginx:1.25", "docker.io/library/nginx", Location::NotEcr)]
    #[case::docker_hub_host_spelled_out(
        "docker.io/nginx",
        "docker.io/library/nginx",
        Location::NotEcr
    )]
    #[case::docker_hub_legacy_host(
        "index.docker.io/library/nginx",
        "docker.io/library/nginx",
        Location::NotEcr
    )]
    #[case::docker_hub_upper_case_host(
        "DOCKER.IO/nginx",
        "docker.io/library/nginx",
        Location::NotEcr
    )]
    #[case::docker_hub_port_443("docker.io:443/nginx", "docker.io/library/nginx", Location::NotEcr)]
    #[case::docker_hub_user_repo("bitnami/redis:7", "docker.io/bitnami/redis", Location::NotEcr)]
    #[case::localhost_with_port("localhost:5000/app:v1", "localhost:5000/app", Location::NotEcr)]
    #[case::localhost_port_leading_zero(
        "localhost:05000/app",
        "localhost:5000/app",
        Location::NotEcr
    )]
    #[case::upper_case_localhost("LOCALHOST/app", "localhost/app", Location::NotEcr)]
    #[case::registry_with_port(
        "Registry.Example.com:8443/team/app",
        "registry.example.com:8443/team/app",
        Location::NotEcr
    )]
    #[case::other_registry_port_443(
        "registry.example.com:443/app",
        "registry.example.com/app",
        Location::NotEcr
    )]
    #[case::ghcr("ghcr.io/org/app:main", "ghcr.io/org/app", Location::NotEcr)]
    #[case::quay("quay.io/org/app", "quay.io/org/app", Location::NotEcr)]
    #[case::ecr_public(
        "public.ecr.aws/nginx/nginx:1.25",
        "public.ecr.aws/nginx/nginx",
        Location::NotEcr
    )]
    #[case::ecr_host_on_another_port(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000/app",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000/app",
        Location::NotEcr
    )]
    #[case::ecr_host_on_port_4443(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:4443/app",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:4443/app",
        Location::NotEcr
    )]
    #[case::look_alike_with_extra_suffix(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example/app",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example/app",
        Location::NotEcr
    )]
    #[case::look_alike_with_account_prefix(
        "evil123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        "evil123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        Location::NotEcr
    )]
    #[case::look_alike_with_extra_leading_label(
        "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        "evil.123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        Location::NotEcr
    )]
    #[case::look_alike_tld(
        "123456789012.dkr.ecr.us-east-1.amazonaws.co/app",
        "123456789012.dkr.ecr.us-east-1.amazonaws.co/app",
        Location::NotEcr
    )]
    #[case::eleven_digit_account(
        "12345678901.dkr.ecr.us-east-1.amazonaws.com/app",
        "12345678901.dkr.ecr.us-east-1.amazonaws.com/app",
        Location::NotEcr
    )]
    #[case::thirteen_digit_account(
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com/app",
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com/app",
        Location::NotEcr
    )]
    #[case::missing_region(
        "123456789012.dkr.ecr.amazonaws.com/app",
        "123456789012.dkr.ecr.amazonaws.com/app",
        Location::NotEcr
    )]
    #[case::region_not_region_like(
        "123456789012.dkr.ecr.evil.amazonaws.com/app",
        "123456789012.dkr.ecr.evil.amazonaws.com/app",
        Location::NotEcr
    )]
    #[case::ecr_api_host_without_account(
        "api.ecr.us-east-1.amazonaws.com/app",
        "api.ecr.us-east-1.amazonaws.com/app",
        Location::NotEcr
    )]
    #[case::two_hundred_character_label_host(
        &format!("{}.example.com/app", "a".repeat(200)),
        &format!("{}.example.com/app", "a".repeat(200)),
        Location::NotEcr
    )]
    #[case::two_hundred_digit_account(
        &format!("{}.dkr.ecr.us-east-1.amazonaws.com/app", "1".repeat(200)),
        &format!("{}.dkr.ecr.us-east-1.amazonaws.com/app", "1".repeat(200)),
        Location::NotEcr
    )]
    fn classifies_the_registry_and_normalises_the_name(
        #[case] reference: &str,
        #[case] name: &str,
        #[case] location: Location,
    ) {
        let image = parsed(reference);
        assert_eq!(image.name, name);
        assert_eq!(image.location, location);
    }

    #[rstest]
    #[case::defaults_to_latest("nginx", "docker.io/library/nginx", Some("latest"), None)]
    #[case::tag(
        "nginx:1.25-alpine",
        "docker.io/library/nginx",
        Some("1.25-alpine"),
        None
    )]
    #[case::mixed_case_tag_kept(
        "nginx:RC1_Final",
        "docker.io/library/nginx",
        Some("RC1_Final"),
        None
    )]
    #[case::digest_only_no_latest(
        &format!("nginx@{SHA}"),
        "docker.io/library/nginx",
        None,
        Some(SHA)
    )]
    #[case::tag_and_digest(
        &format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1.4@{SHA}"),
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        Some("1.4"),
        Some(SHA)
    )]
    #[case::port_is_not_a_tag("localhost:5000/app", "localhost:5000/app", Some("latest"), None)]
    #[case::host_port_without_path_is_a_tag(
        "localhost:5000",
        "docker.io/library/localhost",
        Some("5000"),
        None
    )]
    fn splits_tag_and_digest(
        #[case] reference: &str,
        #[case] name: &str,
        #[case] tag: Option<&str>,
        #[case] digest: Option<&str>,
    ) {
        let image = parsed(reference);
        assert_eq!(image.name, name);
        assert_eq!(image.tag.as_deref(), tag);
        assert_eq!(image.digest.as_deref(), digest);
    }

    #[rstest]
    #[case::empty("")]
    #[case::spaces("   ")]
    #[case::whitespace("\t\n")]
    fn rejects_an_empty_reference(#[case] reference: &str) {
        assert_eq!(parse(reference), Err(ImageError::Empty));
    }

    #[rstest]
    #[case::digest_only(&format!("@{SHA}"), "invalid reference format")]
    #[case::upper_case_short_name("NGINX", "must be lowercase")]
    #[case::upper_case_path("registry.example.com/Team/app:1", "must be lowercase")]
    #[case::upper_case_path_on_ecr(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/Payments/api",
        "must be lowercase"
    )]
    #[case::upper_case_first_component_is_not_a_host("Team/app", "must be lowercase")]
    #[case::invalid_character("nginx$:1", "invalid reference format")]
    #[case::space_in_tag("nginx:1 2", "invalid reference format")]
    #[case::leading_space(" nginx", "invalid reference format")]
    #[case::trailing_newline("nginx\n", "invalid reference format")]
    #[case::control_character("ngi\u{0}nx", "invalid reference format")]
    #[case::empty_path_component("registry.example.com//app", "invalid reference format")]
    #[case::trailing_slash("registry.example.com/", "invalid reference format")]
    #[case::empty_host(":443/app", "invalid reference format")]
    #[case::trailing_dot_host(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com./app",
        "invalid reference format"
    )]
    #[case::ipv6_host("[::1]:5000/app", "invalid reference format")]
    #[case::non_ascii_tag("nginx:tägé", "ASCII")]
    #[case::non_ascii_host("régistry.example.com/app", "ASCII")]
    #[case::short_digest("nginx@sha256:0123456789abcdef0123456789abcdef", "digest length")]
    #[case::unsupported_digest(
        "nginx@md5:0123456789abcdef0123456789abcdef",
        "unsupported digest algorithm"
    )]
    #[case::upper_case_digest(
        "nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "lower-case hex"
    )]
    #[case::port_out_of_range("localhost:65536/app", "port 65536 is out of range")]
    #[case::huge_port("localhost:99999999999999999999/app", "out of range")]
    #[case::port_zero("localhost:0/app", "port 0 is out of range")]
    #[case::repository_too_long(&"a".repeat(256), "not be more than 255")]
    #[case::bare_image_id(&"f".repeat(64), "image id")]
    fn rejects_what_the_grammar_rejects(#[case] reference: &str, #[case] reason_part: &str) {
        match parse(reference) {
            Err(ImageError::Invalid {
                reference: echoed,
                reason,
            }) => {
                assert_eq!(echoed, reference);
                assert!(
                    reason.contains(reason_part),
                    "{reason:?} lacks {reason_part:?}"
                );
            }
            other => panic!("{reference:?} should be invalid, got {other:?}"),
        }
    }

    fn reason(reference: &str) -> String {
        match parse(reference) {
            Err(ImageError::Invalid { reason, .. }) => reason,
            other => panic!("{reference:?} should be invalid, got {other:?}"),
        }
    }

    const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    /// A repository path of exactly `length` characters.
    fn path_of(length: usize) -> String {
        format!("team/{}", "a".repeat(length - 5))
    }

    #[test]
    fn the_255_character_limit_is_on_the_path_after_the_host() {
        // The reported case: a 230-character ECR repository (ECR allows 256).
        let name = path_of(230);
        let image = parsed(&format!("{ECR_HOST}/{name}:1.0"));
        assert_eq!(
            image.ecr_repository().map(|r| r.name.as_str()),
            Some(name.as_str())
        );
        // 255 is the most, whatever the host's length.
        let name = path_of(255);
        let image = parsed(&format!("{ECR_HOST}/{name}"));
        assert_eq!(image.ecr_repository().map(|r| r.name.len()), Some(255));
        let long_host = format!("{}.example.com", "h".repeat(240));
        assert_eq!(
            parsed(&format!("{long_host}/{name}")).name.len(),
            240 + 12 + 1 + 255
        );
        // 256 is refused, and the message says what the limit counts.
        assert_eq!(
            reason(&format!("{ECR_HOST}/{}:1.0", path_of(256))),
            "repository name must not be more than 255 characters: the limit is on the \
             repository path after the registry host (the host does not count; Docker Hub \
             names count `library/`), and this one has 256"
        );
        // ECR's own maximum (256) is never the one that bites: 256 is refused above.
        // Docker Hub's one-component names count the `library/` a runtime adds.
        assert_eq!(
            parsed(&"a".repeat(247)).name.len(),
            "docker.io/".len() + 255
        );
        assert!(reason(&"a".repeat(248)).ends_with("this one has 256"));
    }

    #[test]
    fn a_tag_is_at_most_128_characters_and_the_message_says_so() {
        let tag = "v".repeat(128);
        assert_eq!(parsed(&format!("{ECR_HOST}/app:{tag}")).tag, Some(tag));
        assert_eq!(
            reason(&format!("{ECR_HOST}/app:{}", "v".repeat(129))),
            "invalid reference format: a tag must not be more than 128 characters, and this one has 129"
        );
        // A tag with a bad character is just malformed.
        assert!(reason(&format!("app:{}$", "v".repeat(130))).contains("expected [host[:port]/]"));
    }

    #[rstest]
    #[case::sha256(&format!("sha256:{}", "a".repeat(64)))]
    #[case::sha384(&format!("sha384:{}", "a".repeat(96)))]
    #[case::sha512(&format!("sha512:{}", "a".repeat(128)))]
    fn digests_of_the_three_registered_algorithms_are_accepted(#[case] digest: &str) {
        let image = parsed(&format!("{ECR_HOST}/app@{digest}"));
        assert_eq!(image.digest.as_deref(), Some(digest));
        assert_eq!(image.tag, None);
    }

    #[rstest]
    #[case::sha256_short(&format!("sha256:{}", "a".repeat(63)), "invalid checksum digest length: sha256 takes 64")]
    #[case::sha256_long(&format!("sha256:{}", "a".repeat(65)), "sha256 takes 64 hex digits")]
    #[case::sha512_of_sha256_length(&format!("sha512:{}", "a".repeat(64)), "sha512 128")]
    #[case::md5(&format!("md5:{}", "a".repeat(32)), "unsupported digest algorithm: the algorithm must be sha256, sha384 or sha512")]
    #[case::upper_case_hex(&format!("sha256:{}", "A".repeat(64)), "digest must be lower-case hex")]
    #[case::too_short_for_the_grammar(&format!("sha256:{}", "a".repeat(31)), "invalid reference format")]
    fn other_digests_are_refused_with_what_is_expected(
        #[case] digest: &str,
        #[case] expected: &str,
    ) {
        let reason = reason(&format!("{ECR_HOST}/app@{digest}"));
        assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
    }

    #[rstest]
    #[case::one_character("a")]
    #[case::double_underscore("team/a__b")]
    #[case::double_dash("a--b")]
    #[case::triple_dash("app---x")]
    fn an_ecr_image_naming_a_repository_ecr_cannot_hold_is_invalid(#[case] name: &str) {
        let reason = reason(&format!("{ECR_HOST}/{name}:1"));
        assert!(
            reason.starts_with(&format!(
                "{name:?} is not a name an ECR repository can have"
            )),
            "{reason}"
        );
        assert!(reason.contains("at least 2 characters"), "{reason}");
        // The grammar allows these names, so elsewhere they parse.
        assert!(parse(&format!("registry.example.com/{name}:1")).is_ok());
    }

    #[rstest]
    #[case("ab")]
    #[case("a/b")]
    #[case("team.one/app_two/svc-3")]
    #[case("docker-hub/library/nginx")]
    fn names_ecr_allows_are_ecr_repositories(#[case] name: &str) {
        let image = parsed(&format!("{ECR_HOST}/{name}"));
        assert_eq!(image.ecr_repository().map(|r| r.name.as_str()), Some(name));
    }

    #[test]
    fn shortens_a_huge_reference_in_the_error() {
        let huge = "a/".repeat(50_000);
        let Err(ImageError::Invalid { reference, .. }) = parse(&huge) else {
            panic!("a 100 000-character reference should be invalid");
        };
        assert_eq!(reference.chars().count(), MAX_REFERENCE_IN_ERROR + 1);
        assert!(reference.ends_with('…'));
    }

    /// `ecr_host` as first written (labels collected into `Vec`s), the oracle
    /// for the allocation-free one.
    fn ecr_host_by_labels(host: &str) -> Option<(&str, &str, HostKind)> {
        let labels: Vec<&str> = host.split('.').collect();
        let (account, rest) = labels.split_first()?;
        let (host_kind, rest) = match rest {
            ["dkr", "ecr", rest @ ..] => (HostKind::Standard, rest),
            ["dkr", "ecr-fips", rest @ ..] => (HostKind::Fips, rest),
            ["dkr-ecr", rest @ ..] => (HostKind::DualStack, rest),
            ["dkr-ecr-fips", rest @ ..] => (HostKind::DualStackFips, rest),
            _ => return None,
        };
        let (region, suffix) = rest.split_first()?;
        let known_suffix = ECR_SUFFIXES
            .iter()
            .any(|known| known.split('.').eq(suffix.iter().copied()));
        let words: Vec<&str> = region.split('-').collect();
        let all =
            |part: &str, test: fn(&u8) -> bool| !part.is_empty() && part.bytes().all(|b| test(&b));
        let region_like = match words.as_slice() {
            [area, words @ .., number] => {
                !words.is_empty()
                    && all(area, u8::is_ascii_lowercase)
                    && words.iter().all(|w| all(w, u8::is_ascii_alphanumeric))
                    && all(number, u8::is_ascii_digit)
            }
            _ => false,
        };
        (is_account(account) && region_like && known_suffix)
            .then_some((*account, *region, host_kind))
    }

    #[test]
    fn ecr_host_answers_as_the_label_by_label_original() {
        // Pieces of ECR hosts and near misses, joined by `.` in every order
        // (a piece may hold several labels).
        const PIECES: &[&str] = &[
            ACCOUNT,
            "dkr",
            "ecr",
            "ecr-fips",
            "dkr-ecr",
            "dkr-ecr-fips",
            "us-east-1",
            "us-1",
            "amazonaws.com",
            "on.aws",
            "com",
            "",
        ];
        let mut hosts = vec![String::new()];
        let mut ecr = 0;
        for length in 1..=5 {
            hosts = hosts
                .iter()
                .flat_map(|h| {
                    PIECES.iter().map(move |p| match length {
                        1 => (*p).to_owned(),
                        _ => format!("{h}.{p}"),
                    })
                })
                .collect();
            for host in &hosts {
                let answer = ecr_host(host);
                assert_eq!(answer, ecr_host_by_labels(host), "{host:?}");
                ecr += usize::from(answer.is_some());
            }
        }
        assert!(ecr > 0);
        for region in [
            "us-east-1",
            "eusc-de-east-1",
            "us-1",
            "-us-east-1",
            "us--1",
            "us-east-",
            "Us-east-1",
            "us-ea5t-1",
            "us-east-1a",
        ] {
            let host = format!("{ACCOUNT}.dkr.ecr.{region}.amazonaws.com");
            assert_eq!(ecr_host(&host), ecr_host_by_labels(&host), "{host:?}");
        }
    }

    #[test]
    fn exposes_the_ecr_repository() {
        let image = parsed("123456789012.dkr.ecr.us-east-1.amazonaws.com/payments/api:1.4");
        let repository = image.ecr_repository().map(ToString::to_string);
        assert_eq!(repository.as_deref(), Some("payments/api"));
        assert_eq!(parsed("nginx").ecr_repository(), None);
    }

    #[test]
    fn never_panics_and_never_misreads_a_mangled_reference() {
        let seeds = [
            format!("123456789012.dkr.ecr.us-east-1.amazonaws.com:443/team/app:1.4@{SHA}"),
            "localhost:5000/app".to_owned(),
            "nginx".to_owned(),
        ];
        let noise = [
            '/', ':', '@', '.', '-', '_', 'A', '4', ' ', '\u{0}', 'é', '\u{202e}',
        ];
        for seed in &seeds {
            for (at, _) in seed.char_indices().chain([(seed.len(), ' ')]) {
                for c in noise {
                    let mut inserted = seed.clone();
                    inserted.insert(at, c);
                    let mut truncated = seed[..at].to_owned();
                    truncated.push(c);
                    for reference in [inserted, truncated] {
                        let Ok(image) = parse(&reference) else {
                            continue;
                        };
                        assert!(!image.name.bytes().any(|b| b.is_ascii_uppercase()));
                        assert!(!image.name.contains(":443/"), "{reference:?}");
                        if let Some(repository) = image.ecr_repository() {
                            assert_eq!(repository.account, ACCOUNT, "{reference:?}");
                            assert!(image.name.ends_with(&format!("/{}", repository.name)));
                        }
                    }
                }
            }
        }
    }
}

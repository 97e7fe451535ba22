//! The Docker distribution reference grammar, hand-written.
//!
//! This is exactly what oci-spec 0.10's `Reference` parser accepts and returns,
//! restricted to ASCII: its `REFERENCE_REGEXP`, then `split_domain` (Docker Hub
//! normalisation), the 255-character repository limit and the digest length
//! checks. It is written out because that regex's tag class `[\w][\w.-]{0,127}`
//! is Unicode `\w`: ~5.4 MiB of compiled automaton plus ~5–6 MiB of matching
//! scratch per thread that ever parses (~17 MiB with two workers, a quarter of
//! the webhook's 64 MiB goal), for letters [`super::parse`] refuses before the
//! grammar sees them. Without a regex a parse is also cheap. DESIGN.md says
//! to use oci-spec's parser; this departs from it for that memory, and the
//! differential tests below hold it to oci-spec's answers (oci-spec is now only
//! a dev-dependency).
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain "/" ] path-component ( "/" path-component )*
//! domain    := domain-component ( "." domain-component )* [ ":" [0-9]+ ]
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := [a-z0-9]+ ( ( [._] | "__" | "-"* ) [a-z0-9]+ )*
//! tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest    := algorithm ":" [0-9a-fA-F]{32,}
//! algorithm := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
//! ```

use std::borrow::Cow;

/// The most characters in a repository: the path after the registry host, with
/// Docker Hub's `library/` added; the host does not count. This is how
/// distribution/reference (v0.6: `len(repo.path) > RepositoryNameTotalLengthMax`)
/// and oci-spec count; older Docker code counted the host too.
pub(super) const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// The most characters in a tag (`[\w][\w.-]{0,127}`).
pub(super) const TAG_LENGTH_MAX: usize = 128;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const DEFAULT_TAG: &str = "latest";

/// Why a reference does not parse. The messages are oci-spec's `ParseError`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Error {
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("invalid reference format")]
    InvalidFormat,
    /// Never returned by [`parse`] (the grammar just does not match): the
    /// caller's own check for an upper-case path, with oci-spec's wording.
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// `length`: the repository's characters (the path after the registry
    /// host, with Docker Hub's `library/` added), which is what the limit is
    /// on, as in distribution/reference v0.6 (`len(repo.path)`) and oci-spec.
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong { length: usize },
    #[error("invalid checksum digest length")]
    DigestInvalidLength,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

/// A parsed reference, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reference<'a> {
    /// The host (and port) as written, `docker.io` when the name has none.
    pub registry: &'a str,
    /// The path; `library/…` for a one-component Docker Hub name.
    pub repository: Cow<'a, str>,
    /// `latest` when the reference has neither a tag nor a digest.
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Parses `reference` as oci-spec's `Reference::from_str` does (ASCII only: any
/// other character is an invalid format).
pub(super) fn parse(reference: &str) -> Result<Reference<'_>, Error> {
    if reference.is_empty() {
        return Err(Error::NameEmpty);
    }
    // `@` appears only before the digest, and a tag has neither `/` nor `:`,
    // while a `:` in the name (a port) is always followed by a `/`: so the
    // split is unambiguous.
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if !is_name(name) || !tag.is_none_or(is_tag) || !digest.is_none_or(is_digest) {
        return Err(Error::InvalidFormat);
    }

    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(Error::NameTooLong {
            length: repository.len(),
        });
    }
    if let Some((algorithm, hex)) = digest.and_then(|d| d.split_once(':')) {
        let length = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(Error::DigestUnsupported),
        };
        if hex.len() != length {
            return Err(Error::DigestInvalidLength);
        }
    }
    Ok(Reference {
        registry,
        repository,
        tag: tag.or(digest.is_none().then_some(DEFAULT_TAG)),
        digest,
    })
}

/// Docker's `splitDomain` (via oci-spec): the first component is the registry
/// when it has a `.` or a `:` or is `localhost`; otherwise the name is on Docker
/// Hub, where a one-component name is an official `library/` image.
fn split_domain(name: &str) -> (&str, Cow<'_, str>) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DOCKER_HUB, name),
    };
    if domain == DOCKER_HUB_LEGACY {
        domain = DOCKER_HUB;
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        return (domain, Cow::Owned(format!("library/{remainder}")));
    }
    (domain, Cow::Borrowed(remainder))
}

/// `[domain "/"] path-component ("/" path-component)*`. The first component
/// may be read either way (`team/app` is a host `team` or a path `team/…`);
/// what it means is [`split_domain`]'s business, not the grammar's.
fn is_name(name: &str) -> bool {
    let mut components = name.split('/');
    let first = components.next().unwrap_or_default();
    let mut rest = components.peekable();
    let first_ok = is_path_component(first) || (rest.peek().is_some() && is_domain(first));
    first_ok && rest.all(is_path_component)
}

/// `domain-component ("." domain-component)* [":" [0-9]+]`.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && host.split('.').all(is_domain_component)
}

/// `[a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(first), Some(last))
        if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `[a-z0-9]+ (([._] | "__" | "-"*) [a-z0-9]+)*`: runs of lower-case letters
/// and digits, each pair joined by one `.`, one `_`, two `_` or any `-`s.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_run = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut at = 0;
    loop {
        let run = bytes[at..].iter().take_while(|b| is_run(b)).count();
        if run == 0 {
            return false;
        }
        at += run;
        if at == bytes.len() {
            return true;
        }
        let separator = &bytes[at..];
        let separator = &separator[..separator.iter().take_while(|b| !is_run(b)).count()];
        let valid =
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-');
        if !valid {
            return false;
        }
        at += separator.len();
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (oci-spec's `\w`, in ASCII).
fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    match tag.as_bytes() {
        [first, rest @ ..] => {
            rest.len() < TAG_LENGTH_MAX
                && word(first)
                && rest.iter().all(|b| word(b) || matches!(b, b'.' | b'-'))
        }
        [] => false,
    }
}

/// `algorithm ":" [0-9a-fA-F]{32,}`; which algorithms and lengths are supported
/// is checked after the grammar, as oci-spec does.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let is_algorithm_component = |component: &str| match component.as_bytes() {
        [first, rest @ ..] => {
            first.is_ascii_alphabetic() && rest.iter().all(u8::is_ascii_alphanumeric)
        }
        [] => false,
    };
    algorithm
        .split(['-', '_', '+', '.'])
        .all(is_algorithm_component)
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Differential tests: every answer is oci-spec's (`Reference::from_str`) on the
/// same input, for ASCII strings built from grammar pieces and junk, for every
/// short string over the grammar's alphabet, and for a table of corners.
#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    /// Ours and oci-spec's answers to `input` agree: the same four parts, or an
    /// error with the same message. `Ok(true)` when both accept.
    fn agree(input: &str) -> Result<bool, String> {
        let ours = parse(input);
        let theirs = oci_spec::distribution::Reference::from_str(input);
        match (&ours, &theirs) {
            (Ok(o), Ok(t))
                if o.registry == t.registry()
                    && o.repository == t.repository()
                    && o.tag == t.tag()
                    && o.digest == t.digest() =>
            {
                Ok(true)
            }
            (Err(o), Err(t)) if o.to_string() == t.to_string() => Ok(false),
            _ => Err(format!("{input:?}: ours {ours:?}, oci-spec {theirs:?}")),
        }
    }

    /// [`agree`] on the input, and on what `image::parse`'s pre-pass hands the
    /// grammar when that differs. Returns whether the grammar accepted what got
    /// past the pre-pass (`None` when the pre-pass refused it).
    fn agree_before_and_after_the_pre_pass(input: &str) -> Result<Option<bool>, String> {
        let accepted = agree(input)?;
        match super::super::canonical(input) {
            Ok(canonical) if canonical == input => Ok(Some(accepted)),
            Ok(canonical) => agree(&canonical).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn long(min: usize, max: usize, c: char) -> impl Strategy<Value = String> {
        (min..=max).prop_map(move |n| c.to_string().repeat(n))
    }

    fn host() -> impl Strategy<Value = String> {
        let component = prop_oneof![
            6 => "[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?",
            2 => "[a-zA-Z0-9]([a-zA-Z0-9-]{0,3}[a-zA-Z0-9])?",
            1 => "[a-zA-Z0-9_.-]{0,3}",
        ];
        let port = prop_oneof![
            4 => Just(String::new()),
            3 => "[0-9]{1,5}".prop_map(|p| format!(":{p}")),
            1 => "[0-9a-z:]{0,3}".prop_map(|p| format!(":{p}")),
        ];
        let written = (prop::collection::vec(component, 1..4), port)
            .prop_map(|(components, port)| components.join(".") + &port);
        prop_oneof![
            6 => written,
            1 => prop::sample::select(vec![
                "localhost", "LOCALHOST", "localhost:5000", "docker.io", "index.docker.io",
                "Docker.io", "index.docker.io:443", "[::1]:5000",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn path_component() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[a-z0-9]{1,4}(([._]|__|-{1,3})[a-z0-9]{1,4}){0,2}",
            1 => "[a-zA-Z0-9._-]{0,5}",
            1 => long(100, 260, 'a'),
        ]
    }

    fn tag() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}",
            1 => long(126, 130, 'v'),
            1 => "[a-zA-Z0-9_.:/@-]{0,4}",
        ]
    }

    fn digest() -> impl Strategy<Value = String> {
        let algorithm = prop_oneof![
            6 => prop::sample::select(vec!["sha256", "sha384", "sha512"]).prop_map(str::to_owned),
            2 => "[A-Za-z][A-Za-z0-9]{0,3}([-_+.][A-Za-z][A-Za-z0-9]{0,2}){0,2}",
            1 => "[a-zA-Z0-9_+.:-]{0,4}",
        ];
        let hex_of = |lengths: Vec<usize>, class: &'static str| {
            prop::sample::select(lengths).prop_flat_map(move |n| {
                prop::collection::vec(prop::sample::select(class.as_bytes().to_vec()), n)
                    .prop_map(|bytes| String::from_utf8(bytes).unwrap_or_default())
            })
        };
        let hex = prop_oneof![
            6 => hex_of(vec![64, 96, 128], "0123456789abcdef"),
            2 => hex_of(vec![0, 31, 32, 33, 63, 65, 95, 97, 127, 129], "0123456789abcdef"),
            1 => hex_of(vec![32, 64], "0123456789abcdefABCDEF"),
            1 => hex_of(vec![32, 64], "0123456789abcdefg:@/"),
        ];
        (algorithm, hex).prop_map(|(algorithm, hex)| format!("{algorithm}:{hex}"))
    }

    /// A reference from grammar pieces, sometimes with one character inserted,
    /// replaced or removed.
    fn reference() -> impl Strategy<Value = String> {
        let mutation = (
            any::<prop::sample::Index>(),
            0..3u8,
            prop::sample::select(b"aA0.-_:/@ ".to_vec()),
        );
        (
            prop::option::weighted(0.5, host()),
            prop::collection::vec(path_component(), 1..4),
            prop::option::weighted(0.5, tag()),
            prop::option::weighted(0.4, digest()),
            prop::option::weighted(0.25, mutation),
        )
            .prop_map(|(host, path, tag, digest, mutation)| {
                let mut s = host.map(|h| h + "/").unwrap_or_default() + &path.join("/");
                if let Some(tag) = tag {
                    s = s + ":" + &tag;
                }
                if let Some(digest) = digest {
                    s = s + "@" + &digest;
                }
                if let Some((at, kind, c)) = mutation {
                    let at = at.index(s.len() + 1);
                    match kind {
                        0 => s.insert(at, char::from(c)),
                        _ if at == s.len() => s.push(char::from(c)),
                        1 => s.replace_range(at..=at, &char::from(c).to_string()),
                        _ => {
                            s.remove(at);
                        }
                    }
                }
                s
            })
    }

    const CASES: u32 = 2048;

    #[test]
    fn agrees_with_oci_spec_on_generated_references() {
        let config = Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        };
        let counts = std::cell::Cell::new([0u32; 3]);
        let mut runner = TestRunner::new(config);
        let result = runner.run(&reference(), |input| {
            let answer =
                agree_before_and_after_the_pre_pass(&input).map_err(TestCaseError::fail)?;
            let mut seen = counts.get();
            seen[match answer {
                Some(true) => 0,
                Some(false) => 1,
                None => 2,
            }] += 1;
            counts.set(seen);
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
        let [accepted, rejected, refused_before] = counts.get();
        eprintln!(
            "{} generated references: {accepted} accepted, {rejected} rejected by the \
             grammar, {refused_before} refused before it",
            accepted + rejected + refused_before
        );
        // The generator must make both answers common, or the test proves little.
        let total = accepted + rejected + refused_before;
        assert!(accepted * 5 > total, "{accepted} of {total} accepted");
        assert!(rejected * 5 > total, "{rejected} of {total} rejected");
    }

    #[test]
    fn agrees_with_oci_spec_on_every_short_string() {
        const ALPHABET: &[u8] = b"aA0.-_:/@";
        let mut inputs = vec![String::new()];
        let mut count = 0;
        for _ in 0..5 {
            inputs = inputs
                .iter()
                .flat_map(|s| {
                    ALPHABET
                        .iter()
                        .map(move |&c| format!("{s}{}", char::from(c)))
                })
                .collect();
            for input in &inputs {
                if let Err(disagreement) = agree_before_and_after_the_pre_pass(input) {
                    panic!("{disagreement}");
                }
                count += 1;
            }
        }
        eprintln!("{count} short strings");
    }

    #[test]
    fn agrees_with_oci_spec_on_the_corners() {
        let sha256 = format!("sha256:{}", "f".repeat(64));
        let cases = [
            String::new(),
            "a".to_owned(),
            "Foo/bar".to_owned(),
            "Uppercase:tag".to_owned(),
            "test:5000/Uppercase/lowercase:tag".to_owned(),
            "localhost".to_owned(),
            "localhost:5000".to_owned(),
            "localhost/app".to_owned(),
            "LOCALHOST/app".to_owned(),
            "docker.io/app".to_owned(),
            "docker.io/library/app".to_owned(),
            "index.docker.io/app".to_owned(),
            "index.docker.io/team/app".to_owned(),
            "Index.docker.io/app".to_owned(),
            "a_b.c/d".to_owned(),
            "a__b".to_owned(),
            "a___b".to_owned(),
            "a---b".to_owned(),
            "a._b".to_owned(),
            "a-.b".to_owned(),
            "host:/app".to_owned(),
            "host:5000:6000/app".to_owned(),
            "host:5000/app:tag:tag".to_owned(),
            "app:".to_owned(),
            "app@".to_owned(),
            "app@@sha256".to_owned(),
            format!("app@{sha256}@{sha256}"),
            format!("app:{}", "t".repeat(128)),
            format!("app:{}", "t".repeat(129)),
            format!("app:.{}", "t".repeat(10)),
            format!("app:-{}", "t".repeat(10)),
            "a".repeat(247),
            "a".repeat(248),
            format!("x/{}", "a".repeat(253)),
            format!("x/{}", "a".repeat(254)),
            format!("host.example/{}", "a".repeat(255)),
            format!("host.example/{}", "a".repeat(256)),
            format!("{}@sha256:{}", "a".repeat(300), "f".repeat(63)),
            format!("app@{sha256}"),
            format!("app:1@{sha256}"),
            format!("app@SHA256:{}", "f".repeat(64)),
            format!("app@sha256:{}", "F".repeat(64)),
            format!("app@sha384:{}", "f".repeat(96)),
            format!("app@sha512:{}", "f".repeat(128)),
            format!("app@sha512:{}", "f".repeat(64)),
            format!("app@md5:{}", "f".repeat(32)),
            format!("app@md5:{}", "f".repeat(31)),
            format!("app@sha256+b64u:{}", "f".repeat(64)),
            format!("app@a.b-c_d+e:{}", "f".repeat(32)),
            format!("app@a..b:{}", "f".repeat(32)),
            format!("app@1a:{}", "f".repeat(32)),
            format!("app@:{}", "f".repeat(32)),
            format!("app@sha256:{}g", "f".repeat(64)),
            "a-.example/app".to_owned(),
            "-a.example/app".to_owned(),
            "a.example-/app".to_owned(),
            "a..example/app".to_owned(),
            ".example/app".to_owned(),
            "a.example./app".to_owned(),
            "a.example/".to_owned(),
            "/app".to_owned(),
            "a//b".to_owned(),
        ];
        for input in &cases {
            if let Err(disagreement) = agree_before_and_after_the_pre_pass(input) {
                panic!("{disagreement}");
            }
        }
    }
}

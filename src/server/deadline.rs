//! The API server's deadline for one review, from `POST /validate?timeout=10s`.
//!
//! The API server (k8s.io/apiserver's webhook dispatcher) sets `timeout` to what is
//! left of the webhook's `timeoutSeconds`, rounded *up* to whole seconds, in Go's
//! `time.Duration` syntax (`10s`; `1m0s` for a minute). ecr-guard answers within
//! the smaller of `--lookup-timeout` and that timeout less [`SAFETY_MARGIN`], so no
//! flag or chart mismatch lets the API server give up (and apply failurePolicy)
//! first.

use std::time::Duration;

use tokio::time::Instant;

/// Taken off the API server's timeout: up to 1 s of it may already be gone (it is
/// rounded up to whole seconds), and the rest covers reading the request,
/// evaluating and sending the answer.
pub const SAFETY_MARGIN: Duration = Duration::from_millis(1500);

/// Why a `timeout` parameter was not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("timeout {value:?} is not a Go duration (like 10s, 1m0s or 500ms): {problem}")]
pub struct BadTimeout {
    pub value: String,
    pub problem: &'static str,
}

/// The deadline the API server's `timeout` parameter sets for a review that
/// arrived at `arrived`: the timeout less [`SAFETY_MARGIN`], or `arrived` itself
/// (no time for AWS: cached facts only) when the timeout is not longer than the
/// margin, zero or negative. `Ok(None)` when the query has no `timeout`; an error
/// when it is not a Go duration (the caller then keeps `--lookup-timeout` alone).
/// `query` is the raw, percent-encoded query string; the first `timeout` counts,
/// as with Go's `url.Values.Get`.
pub fn caller_deadline(
    query: Option<&str>,
    arrived: Instant,
) -> Result<Option<Instant>, BadTimeout> {
    let Some(value) = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(key, _)| key == "timeout")
            .map(|(_, value)| value)
    }) else {
        return Ok(None);
    };
    let timeout = parse_go_duration(&value).map_err(|problem| BadTimeout {
        value: value.to_string(),
        problem,
    })?;
    // Negative: already past; the review gets no time for AWS, like zero.
    let budget = timeout
        .map(|t| t.saturating_sub(SAFETY_MARGIN))
        .unwrap_or_default();
    Ok(Some(arrived + budget))
}

/// Parses Go's `time.ParseDuration` syntax: an optional sign, then one or more
/// decimal numbers (with an optional fraction) each followed by a unit (`ns`, `us`,
/// `µs`, `μs`, `ms`, `s`, `m`, `h`), or a bare `0`. `Ok(None)` for a negative
/// duration; an error (what is wrong) for anything else Go refuses, including more
/// than Go's ~292 years. Fractions below a nanosecond are cut, as Go does.
///
/// Hand-written: the one crate porting it (go-parse-duration 0.1.1) loops forever
/// on a fraction of more than 18 digits, which a request could send.
pub fn parse_go_duration(text: &str) -> Result<Option<Duration>, &'static str> {
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    // Go's limit: the nanoseconds of an int64.
    const MAX_NANOS: u128 = i64::MAX as u128;
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Some(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err("empty");
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err("a number must come before each unit");
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err("missing unit");
        }
        let Some(&(_, nanos_per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err("unknown unit");
        };
        let mut value: u128 = 0;
        for digit in whole.bytes() {
            value = value * 10 + u128::from(digit - b'0');
            if value.saturating_mul(nanos_per_unit) > MAX_NANOS {
                return Err("out of range");
            }
        }
        let mut nanos = value * nanos_per_unit;
        // The fraction's digits past a nanosecond's precision change nothing.
        let mut scale = nanos_per_unit;
        for digit in fraction.bytes() {
            if scale < 10 {
                break;
            }
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total += nanos;
        if total > MAX_NANOS {
            return Err("out of range");
        }
        rest = after;
    }
    if negative && total > 0 {
        return Ok(None);
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "out of range")?;
    // Below 10^9, so it fits.
    let subsec = u32::try_from(total % 1_000_000_000).map_err(|_| "out of range")?;
    Ok(Some(Duration::new(secs, subsec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Option<Duration>, &'static str> {
        parse_go_duration(text)
    }

    #[test]
    fn what_go_duration_string_prints_parses_back() {
        // Duration.String() of what the API server sends, and other forms Go accepts.
        for (text, expected) in [
            ("10s", Duration::from_secs(10)),
            ("30s", Duration::from_secs(30)),
            ("1m0s", Duration::from_secs(60)),
            ("1h2m3.5s", Duration::from_millis(3_723_500)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("2µs", Duration::from_micros(2)),
            ("2μs", Duration::from_micros(2)),
            ("2us", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0s", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("1.0000000001s", Duration::from_secs(1)),
            (
                "2562047h47m16.854775807s",
                Duration::new(9_223_372_036, 854_775_807),
            ),
        ] {
            assert_eq!(parsed(text), Ok(Some(expected)), "{text}");
        }
        assert_eq!(parsed("-1s"), Ok(None));
        assert_eq!(parsed("-1.5h"), Ok(None));
    }

    #[test]
    fn what_go_refuses_is_refused_with_the_reason() {
        for (text, problem) in [
            ("", "empty"),
            ("-", "empty"),
            ("10", "missing unit"),
            ("1s5", "missing unit"),
            ("s", "a number must come before each unit"),
            (".s", "a number must come before each unit"),
            ("10 s", "unknown unit"),
            ("10S", "unknown unit"),
            ("1d", "unknown unit"),
            ("10sec", "unknown unit"),
            ("--1s", "a number must come before each unit"),
            ("2562047h47m16.854775808s", "out of range"),
            ("9223372037s", "out of range"),
            ("99999999999999999999999999999999999999999h", "out of range"),
        ] {
            assert_eq!(parsed(text), Err(problem), "{text}");
        }
    }

    #[test]
    fn a_long_fraction_is_cut_at_nanoseconds_not_looped_on() {
        let text = format!("1.{}s", "9".repeat(10_000));
        assert_eq!(parsed(&text), Ok(Some(Duration::new(1, 999_999_999))));
    }

    #[test]
    fn the_deadline_is_the_timeout_less_the_margin() {
        let now = Instant::now();
        let at = |query: &str| caller_deadline(Some(query), now);
        assert_eq!(
            at("timeout=10s"),
            Ok(Some(now + Duration::from_millis(8500)))
        );
        assert_eq!(
            at("dryRun=true&timeout=30s&timeout=1s"),
            Ok(Some(now + Duration::from_millis(28_500))),
            "the first timeout counts"
        );
        // Percent-encoded µ, as a Go client would send a microsecond timeout.
        assert_eq!(
            at("timeout=2000000%C2%B5s"),
            Ok(Some(now + Duration::from_millis(500)))
        );
        // No time left after the margin, zero or negative: no time for AWS at all.
        for short in ["timeout=1s", "timeout=1500ms", "timeout=0", "timeout=-3s"] {
            assert_eq!(at(short), Ok(Some(now)), "{short}");
        }
        assert_eq!(caller_deadline(None, now), Ok(None));
        assert_eq!(at(""), Ok(None));
        assert_eq!(at("dryRun=true"), Ok(None));
        let err = at("timeout=10").unwrap_err();
        assert_eq!(
            err.to_string(),
            "timeout \"10\" is not a Go duration (like 10s, 1m0s or 500ms): missing unit"
        );
        assert!(
            at("timeout=").is_err(),
            "an empty timeout is not a duration"
        );
    }
}

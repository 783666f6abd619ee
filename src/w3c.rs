//! W3C Trace Context (Recommendation, Level 1: <https://www.w3.org/TR/trace-context/>),
//! parsed and written by hand: `traceparent` and `tracestate`.
//!
//! In: `traceparent` version `00` exactly as specified; a higher version read as §3.2.4
//! says (the version-00 fields at their positions, then the end or `-`); the sampled flag is
//! the caller's accept or deny. An invalid or repeated `traceparent` is ignored together with
//! `tracestate` (the caller then starts a new trace). `tracestate` is validated against the
//! grammar and bounded (see [`parse_tracestate`]); a bad one is dropped, the `traceparent`
//! stands. Out: `traceparent` version `00` for the span making the call, with its decision;
//! the caller's `tracestate` unchanged (we add no entry of our own).

use crate::propagation::{Context, Sampling, SpanIds, TraceId, parse_hex as hex};
use std::fmt;

/// Most list members a `tracestate` may have (§3.3.1: the `list` rule, `0*31` after the first).
pub const MAX_MEMBERS: usize = 32;
/// Longest `tracestate` we forward, commas included: the 512 characters the spec asks every
/// participant to propagate (§3.3.1.5).
pub const MAX_TRACESTATE: usize = 512;
/// Members longer than this are the first dropped when truncating (§3.3.1.5).
const LONG_MEMBER: usize = 128;
/// Length of a version-00 `traceparent`, and the least of any version.
const TRACEPARENT_LEN: usize = 55;

/// Why a `traceparent` was rejected. Shown in a debug log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// More than one `traceparent` header: the spec's test suite restarts the trace.
    Repeated,
    Version,
    Length,
    Delimiter,
    TraceId,
    ParentId,
    Flags,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::Repeated => "more than one traceparent header",
            Malformed::Version => "version is not 2 lower-hex digits and a dash, or is ff",
            Malformed::Length => "not 55 characters (version 00), or shorter (later versions)",
            Malformed::Delimiter => "fields are not separated by dashes",
            Malformed::TraceId => "trace id is not 32 lower-hex digits, or is zero",
            Malformed::ParentId => "parent id is not 16 lower-hex digits, or is zero",
            Malformed::Flags => "trace flags are not 2 lower-hex digits",
        })
    }
}

/// Why a `tracestate` was dropped (the `traceparent` stands). Shown in a debug log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadTracestate {
    /// A member is not `key=value` as the grammar says.
    Member,
    DuplicateKey,
    TooManyMembers,
}

impl fmt::Display for BadTracestate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadTracestate::Member => "a list member is not a valid key=value",
            BadTracestate::DuplicateKey => "a key appears twice",
            BadTracestate::TooManyMembers => "more than 32 list members",
        })
    }
}

/// A valid `traceparent`, and the `tracestate` that came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub context: Context,
    pub tracestate: Option<String>,
    pub tracestate_error: Option<BadTracestate>,
}

/// Reads `traceparent` and `tracestate` from all request headers. `Ok(None)`: no
/// `traceparent`. A `tracestate` without a valid `traceparent` is not read (§3.3).
pub fn extract<'a, I>(headers: I) -> Result<Option<Extracted>, Malformed>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
    I::IntoIter: Clone,
{
    let headers = headers.into_iter();
    let named = |name: &'static str| {
        headers
            .clone()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let mut traceparents = named("traceparent");
    let Some(traceparent) = traceparents.next() else {
        return Ok(None);
    };
    if traceparents.next().is_some() {
        return Err(Malformed::Repeated);
    }
    let context = parse_traceparent(trim_ows(traceparent))?;
    let (tracestate, tracestate_error) = match parse_tracestate(named("tracestate")) {
        Ok(t) => (t, None),
        Err(e) => (None, Some(e)),
    };
    Ok(Some(Extracted {
        context,
        tracestate,
        tracestate_error,
    }))
}

/// Parses a `traceparent` value (without surrounding white space). The parent id becomes the
/// span id of the context (the caller's span); the sampled flag its accept or deny.
pub fn parse_traceparent(value: &str) -> Result<Context, Malformed> {
    let b = value.as_bytes();
    let version = b
        .get(..2)
        .and_then(hex)
        .filter(|&v| v != 0xff && b.get(2) == Some(&b'-'))
        .ok_or(Malformed::Version)?;
    // Version 00 is exactly 55 characters; a later version at least 55, and what follows
    // the flags must start with a dash.
    match (version, b.len()) {
        (0, TRACEPARENT_LEN) => {}
        (0, _) => return Err(Malformed::Length),
        (_, n) if n < TRACEPARENT_LEN => return Err(Malformed::Length),
        (_, n) if n > TRACEPARENT_LEN && b[TRACEPARENT_LEN] != b'-' => {
            return Err(Malformed::Delimiter);
        }
        _ => {}
    }
    if b[35] != b'-' || b[52] != b'-' {
        return Err(Malformed::Delimiter);
    }
    let trace_id = match (hex(&b[3..19]), hex(&b[19..35])) {
        (Some(high), Some(low)) if high != 0 || low != 0 => TraceId { high, low },
        _ => return Err(Malformed::TraceId),
    };
    let span_id = hex(&b[36..52])
        .filter(|&id| id != 0)
        .ok_or(Malformed::ParentId)?;
    let flags = hex(&b[53..55]).ok_or(Malformed::Flags)?;
    // Only the sampled bit is defined; the others are ignored.
    let sampling = if flags & 1 == 1 {
        Sampling::Accept
    } else {
        Sampling::Deny
    };
    Ok(Context::of_span(trace_id, span_id, sampling))
}

/// Validates the `tracestate` lines of a request (combined in order, as RFC 7230 joins
/// repeated fields) and returns what to forward: the members without optional white space or
/// empty members, joined by commas; `Ok(None)` when there are none.
///
/// The whole header is dropped when a member breaks the grammar, a key repeats, or there are
/// more than 32 members: the Recommendation allows discarding a `tracestate` that cannot be
/// parsed (§4.3), and the spec's test suite expects exactly that. Past 512 characters whole
/// members are dropped, as §3.3.1.5 orders: first members longer than 128 characters, then
/// from the end, until it fits. Truncating rather than dropping keeps the entries nearest
/// the caller (leftmost) for the vendors downstream; the bound keeps what one request makes
/// us send small whatever the caller sent (up to the 60 KiB head).
pub fn parse_tracestate<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Option<String>, BadTracestate> {
    let mut members: [&str; MAX_MEMBERS] = [""; MAX_MEMBERS];
    let mut count = 0;
    for member in lines.flat_map(|line| line.split(',')).map(trim_ows) {
        if member.is_empty() {
            continue;
        }
        let key = valid_member(member).ok_or(BadTracestate::Member)?;
        if count == MAX_MEMBERS {
            return Err(BadTracestate::TooManyMembers);
        }
        if members[..count]
            .iter()
            .any(|m| m.split_once('=').is_some_and(|(k, _)| k == key))
        {
            return Err(BadTracestate::DuplicateKey);
        }
        members[count] = member;
        count += 1;
    }
    let joined_len = |kept: &[&str]| {
        kept.iter()
            .map(|m| m.len() + 1)
            .sum::<usize>()
            .saturating_sub(1)
    };
    while joined_len(&members[..count]) > MAX_TRACESTATE {
        let drop = members[..count]
            .iter()
            .rposition(|m| m.len() > LONG_MEMBER)
            .unwrap_or(count - 1);
        members.copy_within(drop + 1..count, drop);
        count -= 1;
    }
    Ok((count > 0).then(|| members[..count].join(",")))
}

/// The key of a valid `key=value` list member.
fn valid_member(member: &str) -> Option<&str> {
    let (key, value) = member.split_once('=')?;
    let value_ok = (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|c| matches!(c, 0x20..=0x7e) && c != b',' && c != b'=')
        && !value.ends_with(' ');
    (value_ok && valid_key(key)).then_some(key)
}

/// `simple-key` (`lcalpha` then up to 255 key characters) or `multi-tenant-key`
/// (`tenant-id@system-id`: `lcalpha`/digit then up to 240, `@`, `lcalpha` then up to 13).
fn valid_key(key: &str) -> bool {
    fn part(s: &str, digit_first: bool, max_rest: usize) -> bool {
        let b = s.as_bytes();
        let first_ok = |c: &u8| c.is_ascii_lowercase() || (digit_first && c.is_ascii_digit());
        b.first().is_some_and(first_ok)
            && b.len() <= max_rest + 1
            && b[1..].iter().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/')
            })
    }
    match key.split_once('@') {
        None => part(key, false, 255),
        Some((tenant, system)) => part(tenant, true, 240) && part(system, false, 13),
    }
}

/// Writes `traceparent` for `c` (the span making the call), and the caller's `tracestate`.
/// Nothing for a context without ids (never the case for a client span).
pub fn inject(c: &Context, tracestate: Option<&str>, out: &mut Vec<(&'static str, String)>) {
    let Some(ids) = c.ids else {
        return;
    };
    out.push((
        "traceparent",
        format_traceparent(&ids, c.sampling.is_sampled()),
    ));
    if let Some(state) = tracestate {
        out.push(("tracestate", state.to_owned()));
    }
}

/// A version-00 `traceparent`: the trace id always as 32 digits (a 64-bit id padded with
/// zeros), the span id as parent id, flags `01` or `00`.
pub fn format_traceparent(ids: &SpanIds, sampled: bool) -> String {
    format!(
        "00-{:016x}{:016x}-{:016x}-0{}",
        ids.trace_id.high,
        ids.trace_id.low,
        ids.span_id,
        u8::from(sampled)
    )
}

/// Optional white space (RFC 7230: spaces and tabs) trimmed from both ends.
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test suite's trace id, `12345678901234567890123456789012`.
    const SUITE: TraceId = TraceId {
        high: 0x1234567890123456,
        low: 0x7890123456789012,
    };
    const SPEC: TraceId = TraceId {
        high: 0x4bf92f3577b34da6,
        low: 0xa3ce929d0e0e4736,
    };

    use Context as C;

    /// The examples of the Recommendation (§3.2.2.*, §3.2.4) and every `traceparent` form of
    /// the w3c/trace-context test suite (test/test.py), valid and invalid.
    #[test]
    fn traceparent_cases() {
        use Malformed as M;
        let suite = |s| C::of_span(SUITE, 0x1234567890123456, s);
        let cases: &[(&str, Result<Context, Malformed>)] = &[
            // The spec's examples: sampled and not.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Ok(C::of_span(SPEC, 0x00f067aa0ba902b7, Sampling::Accept)),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                Ok(C::of_span(SPEC, 0x00f067aa0ba902b7, Sampling::Deny)),
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                Ok(C::of_span(
                    TraceId {
                        high: 0x0af7651916cd43dd,
                        low: 0x8448eb211c80319c,
                    },
                    0xb7ad6b7169203331,
                    Sampling::Accept,
                )),
            ),
            // Only the sampled bit counts: `09` is sampled, `08` not.
            (
                "00-12345678901234567890123456789012-1234567890123456-09",
                Ok(suite(Sampling::Accept)),
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-08",
                Ok(suite(Sampling::Deny)),
            ),
            // A 64-bit id padded to 128 bits is kept as 64-bit (high half zero).
            (
                "00-0000000000000000463ac35c9f6413ad-1234567890123456-01",
                Ok(C::of_span(
                    TraceId {
                        high: 0,
                        low: 0x463ac35c9f6413ad,
                    },
                    0x1234567890123456,
                    Sampling::Accept,
                )),
            ),
            // test_traceparent_version_0x00: trailing characters and extra fields.
            (
                "00-12345678901234567890123456789012-1234567890123456-01.",
                Err(M::Length),
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
                Err(M::Length),
            ),
            // test_traceparent_version_0xcc: a future version, with or without more fields.
            (
                "cc-12345678901234567890123456789012-1234567890123456-01",
                Ok(suite(Sampling::Accept)),
            ),
            (
                "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
                Ok(suite(Sampling::Accept)),
            ),
            (
                "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
                Err(M::Delimiter),
            ),
            (
                "cc-12345678901234567890123456789012-1234567890123456-0",
                Err(M::Length),
            ),
            // test_traceparent_version_0xff, _illegal_characters, _too_long, _too_short.
            (
                "ff-12345678901234567890123456789012-1234567890123456-01",
                Err(M::Version),
            ),
            (
                ".0-12345678901234567890123456789012-1234567890123456-01",
                Err(M::Version),
            ),
            (
                "0.-12345678901234567890123456789012-1234567890123456-01",
                Err(M::Version),
            ),
            (
                "000-12345678901234567890123456789012-1234567890123456-01",
                Err(M::Version),
            ),
            (
                "0000-12345678901234567890123456789012-1234567890123456-01",
                Err(M::Version),
            ),
            (
                "0-12345678901234567890123456789012-1234567890123456-01",
                Err(M::Version),
            ),
            (
                "0A-12345678901234567890123456789012-1234567890123456-01",
                Err(M::Version),
            ),
            // test_traceparent_trace_id_*.
            (
                "00-00000000000000000000000000000000-1234567890123456-01",
                Err(M::TraceId),
            ),
            (
                "00-.2345678901234567890123456789012-1234567890123456-01",
                Err(M::TraceId),
            ),
            (
                "00-1234567890123456789012345678901.-1234567890123456-01",
                Err(M::TraceId),
            ),
            (
                "00-123456789012345678901234567890123-1234567890123456-01",
                Err(M::Length),
            ),
            (
                "00-1234567890123456789012345678901-1234567890123456-01",
                Err(M::Length),
            ),
            (
                "00-ABCDEF78901234567890123456789012-1234567890123456-01",
                Err(M::TraceId),
            ),
            // test_traceparent_parent_id_*.
            (
                "00-12345678901234567890123456789012-0000000000000000-01",
                Err(M::ParentId),
            ),
            (
                "00-12345678901234567890123456789012-.234567890123456-01",
                Err(M::ParentId),
            ),
            (
                "00-12345678901234567890123456789012-123456789012345.-01",
                Err(M::ParentId),
            ),
            (
                "00-12345678901234567890123456789012-12345678901234567-01",
                Err(M::Length),
            ),
            (
                "00-12345678901234567890123456789012-123456789012345-01",
                Err(M::Length),
            ),
            // test_traceparent_trace_flags_*.
            (
                "00-12345678901234567890123456789012-1234567890123456-.0",
                Err(M::Flags),
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-0.",
                Err(M::Flags),
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-001",
                Err(M::Length),
            ),
            (
                "00-12345678901234567890123456789012-1234567890123456-1",
                Err(M::Length),
            ),
            // Right length, wrong places for the dashes.
            (
                "00-12345678901234567890123456789012_1234567890123456-01",
                Err(M::Delimiter),
            ),
            (
                "cc-123456789012345678901234567890121-234567890123456-01",
                Err(M::Delimiter),
            ),
            ("", Err(M::Version)),
            ("00", Err(M::Version)),
            // 55 bytes, not ASCII: no panic on a character boundary.
            (
                "00-123456789012345678901234567890é-1234567890123456-01",
                Err(M::TraceId),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(parse_traceparent(value), *want, "traceparent: {value:?}");
        }
    }

    fn extract_pairs(pairs: &[(&str, &str)]) -> Result<Option<Extracted>, Malformed> {
        extract(pairs.iter().copied())
    }

    /// The test suite's header-level cases: names in any case, white space, repeats, and a
    /// tracestate without a traceparent.
    #[test]
    fn header_cases() {
        const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";
        let suite = C::of_span(SUITE, 0x1234567890123456, Sampling::Accept);
        for name in ["traceparent", "TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
            let got = extract_pairs(&[(name, TP)]).unwrap().unwrap();
            assert_eq!(got.context, suite, "{name}");
        }
        for value in [
            " 00-12345678901234567890123456789012-1234567890123456-01",
            "\t00-12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-01 ",
            "00-12345678901234567890123456789012-1234567890123456-01\t",
            "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
        ] {
            let got = extract_pairs(&[("traceparent", value)]).unwrap().unwrap();
            assert_eq!(got.context, suite, "{value:?}");
        }
        // Wrong names are other headers; a tracestate alone is not read.
        for name in ["trace-parent", "trace.parent"] {
            assert_eq!(extract_pairs(&[(name, TP)]), Ok(None), "{name}");
        }
        assert_eq!(extract_pairs(&[("tracestate", "foo=1")]), Ok(None));
        // test_traceparent_duplicated: two traceparent headers restart the trace.
        assert_eq!(
            extract_pairs(&[
                (
                    "traceparent",
                    "00-12345678901234567890123456789011-1234567890123456-01"
                ),
                ("traceparent", TP),
            ]),
            Err(Malformed::Repeated)
        );
        // An invalid traceparent: its tracestate goes with it.
        assert_eq!(
            extract_pairs(&[
                (
                    "traceparent",
                    "ff-12345678901234567890123456789012-1234567890123456-01"
                ),
                ("tracestate", "foo=1"),
            ]),
            Err(Malformed::Version)
        );
        // A bad tracestate does not affect the traceparent.
        let got = extract_pairs(&[("traceparent", TP), ("tracestate", "FOO=1")])
            .unwrap()
            .unwrap();
        assert_eq!(got.context, suite);
        assert_eq!(got.tracestate, None);
        assert_eq!(got.tracestate_error, Some(BadTracestate::Member));
        // Names of tracestate in any case, and the wrong names ignored.
        let got = extract_pairs(&[
            ("traceparent", TP),
            ("TrAcEsTaTe", "foo=1"),
            ("trace-state", "bar=2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(got.tracestate.as_deref(), Some("foo=1"));
    }

    fn tracestate(lines: &[&str]) -> Result<Option<String>, BadTracestate> {
        parse_tracestate(lines.iter().copied())
    }

    /// The test suite's tracestate cases, and the spec's examples.
    #[test]
    fn tracestate_cases() {
        use BadTracestate::*;
        let some = |s: &str| Ok(Some(s.to_string()));
        let lcalpha: String = ('a'..='z').collect();
        let key = format!("{lcalpha}0123456789_-*/");
        let vendor_key = format!("{key}@a-z0-9_-*/");
        let value: String = (0x20u8..=0x7e)
            .filter(|&c| c != b',' && c != b'=')
            .map(char::from)
            .collect();
        let all_chars = format!("{key}={value}");
        let all_chars_vendor = format!("{vendor_key}={value}");
        let members = |from: usize, to: usize| {
            (from..=to)
                .map(|i| format!("bar{i:02}={i:02}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let (m1, m2, m3, m4) = (
            members(1, 10),
            members(11, 20),
            members(21, 30),
            members(31, 32),
        );
        let m4_over = members(31, 33);
        let z256 = format!("{}=1", "z".repeat(256));
        let z257 = format!("{}=1", "z".repeat(257));
        let tenant_max = format!("{}@{}=1", "t".repeat(241), "v".repeat(14));
        let tenant_over = format!("{}@v=1", "t".repeat(242));
        let system_over = format!("t@{}=1", "v".repeat(15));
        let value_max = format!("k={}", "v".repeat(256));
        let value_over = format!("k={}", "v".repeat(257));
        type Case<'a> = (Vec<&'a str>, Result<Option<String>, BadTracestate>);
        let cases: Vec<Case> = vec![
            // The spec's examples.
            (vec!["rojo=00f067aa0ba902b7"], some("rojo=00f067aa0ba902b7")),
            (
                vec!["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
                some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            ),
            // Empty headers and members: accepted, not sent.
            (vec![""], Ok(None)),
            (vec!["foo=1", ""], some("foo=1")),
            (vec!["", "foo=1"], some("foo=1")),
            (vec![" , ,\t"], Ok(None)),
            // Several headers combine in order.
            (
                vec!["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
                some("foo=1,bar=2,rojo=1,congo=2,baz=3"),
            ),
            // Optional white space around members is dropped; inside a value it stays.
            (
                vec!["foo=1 \t , \t bar=2, \t baz=3"],
                some("foo=1,bar=2,baz=3"),
            ),
            (
                vec!["foo=1\t \t,\t \tbar=2,\t \tbaz=3"],
                some("foo=1,bar=2,baz=3"),
            ),
            (vec![" foo=1"], some("foo=1")),
            (vec!["\t foo=1 \t"], some("foo=1")),
            (vec!["foo= 1"], some("foo= 1")),
            // All allowed characters, with and without a vendor.
            (vec![all_chars.as_str()], some(&all_chars)),
            (vec![all_chars_vendor.as_str()], some(&all_chars_vendor)),
            // Keys: limits and illegal forms.
            (vec!["foo=1", z256.as_str()], some(&format!("foo=1,{z256}"))),
            (vec!["foo=1", z257.as_str()], Err(Member)),
            (
                vec!["foo=1", tenant_max.as_str()],
                some(&format!("foo=1,{tenant_max}")),
            ),
            (vec!["foo=1", tenant_over.as_str()], Err(Member)),
            (vec!["foo=1", system_over.as_str()], Err(Member)),
            (vec!["0foo=1"], Err(Member)),
            (vec!["0foo@bar=1"], some("0foo@bar=1")),
            (vec!["foo =1"], Err(Member)),
            (vec!["FOO=1"], Err(Member)),
            (vec!["foo.bar=1"], Err(Member)),
            (vec!["foo@=1,bar=2"], Err(Member)),
            (vec!["@foo=1,bar=2"], Err(Member)),
            (vec!["foo@@bar=1,bar=2"], Err(Member)),
            (vec!["foo@bar@baz=1,bar=2"], Err(Member)),
            (vec!["foo@0bar=1"], Err(Member)),
            // Values: limits and illegal forms.
            (vec![value_max.as_str()], some(&value_max)),
            (vec![value_over.as_str()], Err(Member)),
            (vec!["foo=bar=baz"], Err(Member)),
            (vec!["foo=,bar=3"], Err(Member)),
            (vec!["foo"], Err(Member)),
            (vec!["foo=a\tb"], Err(Member)),
            (vec!["foo=caf\u{e9}"], Err(Member)),
            // Duplicated keys, in one header or across two.
            (vec!["foo=1,foo=1"], Err(DuplicateKey)),
            (vec!["foo=1,foo=2"], Err(DuplicateKey)),
            (vec!["foo=1", "foo=1"], Err(DuplicateKey)),
            (vec!["foo=1", "foo=2"], Err(DuplicateKey)),
            // 32 members pass, 33 do not.
            (
                vec![m1.as_str(), m2.as_str(), m3.as_str(), m4.as_str()],
                some(&members(1, 32)),
            ),
            (
                vec![m1.as_str(), m2.as_str(), m3.as_str(), m4_over.as_str()],
                Err(TooManyMembers),
            ),
        ];
        for (lines, want) in &cases {
            assert_eq!(tracestate(lines), *want, "{lines:?}");
        }
    }

    /// Past 512 characters, whole members go: those over 128 characters first, then from the
    /// end (§3.3.1.5).
    #[test]
    fn long_tracestate_is_truncated_by_whole_members() {
        // 32 members of 20 characters: 32 * 21 - 1 = 671; the first 24 make 503.
        let short: Vec<String> = (0..32)
            .map(|i| format!("k{i:02}={}", "v".repeat(16)))
            .collect();
        let got = tracestate(&[&short.join(",")]).unwrap().unwrap();
        assert_eq!(got, short[..24].join(","));
        assert!(got.len() <= MAX_TRACESTATE);
        // Long members go first, wherever they are, then from the end.
        let long = |key: &str| format!("{key}={}", "x".repeat(200));
        let mut mixed = vec![short[0].clone(), long("long1")];
        mixed.extend(short[1..22].iter().cloned());
        mixed.push(long("long2"));
        let got = tracestate(&[&mixed.join(",")]).unwrap().unwrap();
        assert!(!got.contains("long="), "{got}");
        assert_eq!(got, short[..22].join(","));
        // One long member that fits alone stays.
        let got = tracestate(&[&long("long"), "a=1"]).unwrap().unwrap();
        assert_eq!(got, format!("{},a=1", long("long")));
        // Exactly 512 stays whole (a value is at most 256 characters, so two members).
        let two = format!("a={},b={}", "v".repeat(254), "v".repeat(253));
        assert_eq!(two.len(), 512);
        assert_eq!(tracestate(&[&two]).unwrap().as_deref(), Some(two.as_str()));
    }

    #[test]
    fn written_traceparents() {
        let ids = SpanIds {
            trace_id: TraceId {
                high: 0,
                low: 0x463ac35c9f6413ad,
            },
            span_id: 0xa1,
            parent_id: Some(7),
        };
        assert_eq!(
            format_traceparent(&ids, true),
            "00-0000000000000000463ac35c9f6413ad-00000000000000a1-01"
        );
        let spec = SpanIds {
            trace_id: SPEC,
            span_id: 0x00f067aa0ba902b7,
            parent_id: None,
        };
        assert_eq!(
            format_traceparent(&spec, false),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
        // Debug is an accept in W3C; the caller's tracestate follows the traceparent.
        let mut out = Vec::new();
        let debug = Context {
            ids: Some(spec),
            sampling: Sampling::Debug,
        };
        inject(&debug, Some("congo=t61rcWkgMzE"), &mut out);
        assert_eq!(
            out,
            [
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()
                ),
                ("tracestate", "congo=t61rcWkgMzE".to_string()),
            ]
        );
    }
}

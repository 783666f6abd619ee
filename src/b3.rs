//! B3 trace context, parsed and written by hand.
//!
//! Rules: <https://github.com/openzipkin/b3-propagation>. Everything here is pure: headers in,
//! values out, no I/O; reading allocates nothing, so it can sit on the request path and be
//! tested exhaustively. Writing makes plain strings (the outgoing request head is built anyway).
//!
//! Extraction follows OpenTelemetry's B3 propagator: the single `b3` header wins when it is
//! valid; a malformed `b3` falls back to the multiple `x-b3-*` headers; a malformed value in an
//! encoding invalidates that whole encoding (the caller then starts a new trace).

use crate::propagation::{Context, Sampling, SpanIds, TraceId, parse_hex};
use std::fmt;

/// Why a B3 encoding was rejected. Shown in a debug log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    TraceId,
    SpanId,
    ParentSpanId,
    Sampled,
    MissingTraceId,
    MissingSpanId,
    ParentWithoutIds,
    /// `b3` is not `{sampling}` nor `{trace}-{span}[-{sampling}[-{parent}]]`.
    SingleShape,
    SingleSampling,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::TraceId => "trace id is not 16 or 32 lower-hex digits, or is zero",
            Malformed::SpanId => "span id is not 16 lower-hex digits, or is zero",
            Malformed::ParentSpanId => "parent span id is not 16 lower-hex digits",
            Malformed::Sampled => "x-b3-sampled is not 1, 0, true or false",
            Malformed::MissingTraceId => "x-b3-spanid without x-b3-traceid",
            Malformed::MissingSpanId => "x-b3-traceid without x-b3-spanid",
            Malformed::ParentWithoutIds => "x-b3-parentspanid without trace and span ids",
            Malformed::SingleShape => {
                "b3 is not {sampling} or {trace}-{span}[-{sampling}[-{parent}]]"
            }
            Malformed::SingleSampling => "b3 sampling state is not 0, 1 or d",
        })
    }
}

/// The B3 header values of one request, first value of each name (names compared
/// case-insensitively, values trimmed of surrounding white space).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    pub single: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
    pub parent_span_id: Option<&'a str>,
    pub sampled: Option<&'a str>,
    pub flags: Option<&'a str>,
}

impl<'a> Headers<'a> {
    /// Picks the B3 headers out of all request headers in one pass.
    pub fn collect<I>(headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut h = Headers::default();
        for (name, value) in headers {
            let slot = match name.len() {
                2 if name.eq_ignore_ascii_case("b3") => &mut h.single,
                // Every multi-header name starts with "x-b3-": check that once.
                n if n > 5 && name.as_bytes()[..5].eq_ignore_ascii_case(b"x-b3-") => {
                    let rest = &name[5..];
                    if rest.eq_ignore_ascii_case("traceid") {
                        &mut h.trace_id
                    } else if rest.eq_ignore_ascii_case("spanid") {
                        &mut h.span_id
                    } else if rest.eq_ignore_ascii_case("parentspanid") {
                        &mut h.parent_span_id
                    } else if rest.eq_ignore_ascii_case("sampled") {
                        &mut h.sampled
                    } else if rest.eq_ignore_ascii_case("flags") {
                        &mut h.flags
                    } else {
                        continue;
                    }
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.trim_ascii());
            }
        }
        h
    }
}

/// The result of extraction: the context to use, and what was rejected on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub context: Context,
    /// Set when `b3` was present but malformed (the multiple headers were used instead).
    pub single_error: Option<Malformed>,
    /// Set when the multiple headers were consulted and were malformed.
    pub multi_error: Option<Malformed>,
}

/// Extracts the incoming context: a valid `b3` wins, else the multiple headers, else nothing.
pub fn extract(h: &Headers<'_>) -> Extracted {
    let mut single_error = None;
    match h.single.filter(|v| !v.is_empty()).map(parse_single) {
        Some(Ok(context)) => {
            return Extracted {
                context,
                single_error: None,
                multi_error: None,
            };
        }
        Some(Err(e)) => single_error = Some(e),
        None => {}
    }
    let (context, multi_error) = match parse_multi(h) {
        Ok(c) => (c, None),
        Err(e) => (Context::default(), Some(e)),
    };
    Extracted {
        context,
        single_error,
        multi_error,
    }
}

/// Parses the single `b3` header.
pub fn parse_single(value: &str) -> Result<Context, Malformed> {
    let mut parts = value.split('-');
    let first = parts.next().unwrap_or_default();
    let Some(second) = parts.next() else {
        // A bare sampling state: `b3: 0`, `b3: 1`, `b3: d`.
        return match parse_single_sampling(first) {
            Ok(sampling) => Ok(Context {
                ids: None,
                sampling,
            }),
            Err(_) => Err(Malformed::SingleShape),
        };
    };
    let trace_id = parse_trace_id(first)?;
    let span_id = parse_span_id(second).ok_or(Malformed::SpanId)?;
    let sampling = match parts.next() {
        None => Sampling::Defer,
        Some(s) => parse_single_sampling(s)?,
    };
    let parent_id = match parts.next() {
        None => None,
        Some(p) => parse_parent_id(p)?,
    };
    if parts.next().is_some() {
        return Err(Malformed::SingleShape);
    }
    Ok(Context {
        ids: Some(SpanIds {
            trace_id,
            span_id,
            parent_id,
        }),
        sampling,
    })
}

/// Parses the multiple `x-b3-*` headers. No header at all gives the empty (deferred) context.
pub fn parse_multi(h: &Headers<'_>) -> Result<Context, Malformed> {
    let sampled = match h.sampled {
        None => Sampling::Defer,
        Some("1" | "true") => Sampling::Accept,
        Some("0" | "false") => Sampling::Deny,
        Some(_) => return Err(Malformed::Sampled),
    };
    // Debug implies accept, whatever x-b3-sampled says. The spec defines only `1`; any other
    // value is ignored, as Brave and OpenTelemetry's B3 propagators do (py_zipkin sends `0`
    // on every request, Finagle a bit field).
    let sampling = match h.flags {
        Some("1") => Sampling::Debug,
        _ => sampled,
    };
    let ids = match (h.trace_id, h.span_id) {
        (None, None) if h.parent_span_id.is_some() => return Err(Malformed::ParentWithoutIds),
        (None, None) => None,
        (Some(_), None) => return Err(Malformed::MissingSpanId),
        (None, Some(_)) => return Err(Malformed::MissingTraceId),
        (Some(t), Some(s)) => Some(SpanIds {
            trace_id: parse_trace_id(t)?,
            span_id: parse_span_id(s).ok_or(Malformed::SpanId)?,
            parent_id: match h.parent_span_id {
                None => None,
                Some(p) => parse_parent_id(p)?,
            },
        }),
    };
    Ok(Context { ids, sampling })
}

fn parse_single_sampling(s: &str) -> Result<Sampling, Malformed> {
    match s {
        "0" => Ok(Sampling::Deny),
        "1" => Ok(Sampling::Accept),
        "d" => Ok(Sampling::Debug),
        _ => Err(Malformed::SingleSampling),
    }
}

/// 16 or 32 lower-hex digits, not all zero.
pub fn parse_trace_id(s: &str) -> Result<TraceId, Malformed> {
    let id = match s.len() {
        16 => TraceId {
            high: 0,
            low: parse_hex64(s.as_bytes()).ok_or(Malformed::TraceId)?,
        },
        // Split as bytes: a non-ASCII value may have no character boundary at 16.
        32 => TraceId {
            high: parse_hex64(&s.as_bytes()[..16]).ok_or(Malformed::TraceId)?,
            low: parse_hex64(&s.as_bytes()[16..]).ok_or(Malformed::TraceId)?,
        },
        _ => return Err(Malformed::TraceId),
    };
    if id.high == 0 && id.low == 0 {
        return Err(Malformed::TraceId);
    }
    Ok(id)
}

/// 16 lower-hex digits, not zero.
pub fn parse_span_id(s: &str) -> Option<u64> {
    parse_hex64(s.as_bytes()).filter(|&id| id != 0)
}

/// Like a span id, except that an all-zero parent means "no parent": some tracers write it
/// on a root span, and Jaeger's own convention for a root is parent 0.
fn parse_parent_id(s: &str) -> Result<Option<u64>, Malformed> {
    match parse_hex64(s.as_bytes()) {
        Some(0) => Ok(None),
        Some(id) => Ok(Some(id)),
        None => Err(Malformed::ParentSpanId),
    }
}

/// Exactly 16 lower-hex digits.
fn parse_hex64(s: &[u8]) -> Option<u64> {
    (s.len() == 16).then(|| parse_hex(s)).flatten()
}

/// The single `b3` header value. A deferred context with a parent cannot be written in this
/// encoding (the parent field comes after the sampling field), so the parent is left out.
pub fn format_single(c: &Context) -> String {
    let state = match c.sampling {
        Sampling::Defer => "",
        Sampling::Deny => "0",
        Sampling::Accept => "1",
        Sampling::Debug => "d",
    };
    match c.ids {
        None => state.to_owned(),
        Some(ids) if state.is_empty() => format!("{}-{:016x}", ids.trace_id, ids.span_id),
        Some(SpanIds {
            trace_id,
            span_id,
            parent_id: None,
        }) => format!("{trace_id}-{span_id:016x}-{state}"),
        Some(SpanIds {
            trace_id,
            span_id,
            parent_id: Some(parent),
        }) => format!("{trace_id}-{span_id:016x}-{state}-{parent:016x}"),
    }
}

/// Appends the B3 headers for `c` to `out`: the multiple headers always (Envoy and every B3
/// library read them), in the order B3 lists them, and the single `b3` header as well when
/// `with_single` (the caller sent one). Debug is written as `x-b3-flags: 1` alone (the spec:
/// don't also send `x-b3-sampled`).
pub fn inject(c: &Context, with_single: bool, out: &mut Vec<(&'static str, String)>) {
    if let Some(ids) = c.ids {
        out.push(("x-b3-traceid", ids.trace_id.to_string()));
        out.push(("x-b3-spanid", format!("{:016x}", ids.span_id)));
        if let Some(parent) = ids.parent_id {
            out.push(("x-b3-parentspanid", format!("{parent:016x}")));
        }
    }
    match c.sampling {
        Sampling::Accept => out.push(("x-b3-sampled", "1".into())),
        Sampling::Deny => out.push(("x-b3-sampled", "0".into())),
        Sampling::Debug => out.push(("x-b3-flags", "1".into())),
        Sampling::Defer => {}
    }
    if with_single {
        out.push(("b3", format_single(c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T128: TraceId = TraceId {
        high: 0x80f198ee56343ba8,
        low: 0x64fe8b2a57d3eff7,
    };
    const T64: TraceId = TraceId {
        high: 0,
        low: 0x463ac35c9f6413ad,
    };

    fn ids(trace_id: TraceId, span_id: u64, parent_id: Option<u64>) -> Option<SpanIds> {
        Some(SpanIds {
            trace_id,
            span_id,
            parent_id,
        })
    }

    fn ctx(ids: Option<SpanIds>, sampling: Sampling) -> Context {
        Context { ids, sampling }
    }

    /// Header `(name, value)` pairs of a test case.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn multi<'a>(pairs: Pairs<'a>) -> Headers<'a> {
        Headers::collect(pairs.iter().copied())
    }

    /// The single-header examples of the B3 specification (format line of b3.md).
    #[test]
    fn single_header_spec_cases() {
        let cases: &[(&str, Result<Context, Malformed>)] = &[
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
                Ok(ctx(
                    ids(T128, 0xe457b5a2e4d86bd1, Some(0x05e3ac9a4f6e3b90)),
                    Sampling::Accept,
                )),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
                Ok(ctx(ids(T128, 0xe457b5a2e4d86bd1, None), Sampling::Accept)),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1",
                Ok(ctx(ids(T128, 0xe457b5a2e4d86bd1, None), Sampling::Defer)),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d",
                Ok(ctx(ids(T128, 0xe457b5a2e4d86bd1, None), Sampling::Debug)),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90",
                Ok(ctx(
                    ids(T128, 0xe457b5a2e4d86bd1, Some(0x05e3ac9a4f6e3b90)),
                    Sampling::Deny,
                )),
            ),
            (
                "463ac35c9f6413ad-e457b5a2e4d86bd1-1",
                Ok(ctx(ids(T64, 0xe457b5a2e4d86bd1, None), Sampling::Accept)),
            ),
            ("0", Ok(ctx(None, Sampling::Deny))),
            ("1", Ok(ctx(None, Sampling::Accept))),
            ("d", Ok(ctx(None, Sampling::Debug))),
            // Malformed forms.
            ("", Err(Malformed::SingleShape)),
            ("true", Err(Malformed::SingleShape)),
            ("2", Err(Malformed::SingleShape)),
            (
                "80f198ee56343ba864fe8b2a57d3eff7",
                Err(Malformed::SingleShape),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-true",
                Err(Malformed::SingleSampling),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x",
                Err(Malformed::SingleShape),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-",
                Err(Malformed::ParentSpanId),
            ),
            (
                "80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1-1",
                Err(Malformed::TraceId),
            ),
            (
                "00000000000000000000000000000000-e457b5a2e4d86bd1-1",
                Err(Malformed::TraceId),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1",
                Err(Malformed::SpanId),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1-1",
                Err(Malformed::TraceId),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd-1",
                Err(Malformed::SpanId),
            ),
            ("-e457b5a2e4d86bd1-1", Err(Malformed::TraceId)),
            // 32 bytes with no character boundary at 16 (found by the property test).
            (
                "aaaaaaaaaaaaaaaé aaaaaaaaaaaaaa-e457b5a2e4d86bd1",
                Err(Malformed::TraceId),
            ),
            (
                "80f198ee56343ba864fe8b2a57d3eff7--1",
                Err(Malformed::SpanId),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_single(input), *want, "b3: {input:?}");
        }
    }

    /// The multiple-header cases of the B3 specification (X-B3-* examples of b3.md).
    #[test]
    fn multi_header_spec_cases() {
        let cases: &[(Pairs, Result<Context, Malformed>)] = &[
            (&[], Ok(ctx(None, Sampling::Defer))),
            (
                &[
                    ("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124"),
                    ("X-B3-SpanId", "a2fb4a1d1a96d312"),
                    ("X-B3-ParentSpanId", "0020000000000001"),
                    ("X-B3-Sampled", "1"),
                ],
                Ok(ctx(
                    ids(
                        TraceId {
                            high: 0x463ac35c9f6413ad,
                            low: 0x48485a3953bb6124,
                        },
                        0xa2fb4a1d1a96d312,
                        Some(0x0020000000000001),
                    ),
                    Sampling::Accept,
                )),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Defer)),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-sampled", "0"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Deny)),
            ),
            // Lenient readers accept true/false.
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-sampled", "true"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Accept)),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-sampled", "false"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Deny)),
            ),
            // Debug implies accept and wins over a deny.
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-flags", "1"),
                    ("x-b3-sampled", "0"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Debug)),
            ),
            // X-B3-Flags other than 1 is ignored, the rest stands: py_zipkin's header set
            // (flags 0 on every request), 64- and 128-bit.
            (
                &[
                    ("X-B3-TraceId", "463ac35c9f6413ad"),
                    ("X-B3-SpanId", "a2fb4a1d1a96d312"),
                    ("X-B3-ParentSpanId", "0020000000000001"),
                    ("X-B3-Flags", "0"),
                    ("X-B3-Sampled", "1"),
                ],
                Ok(ctx(
                    ids(T64, 0xa2fb4a1d1a96d312, Some(0x0020000000000001)),
                    Sampling::Accept,
                )),
            ),
            (
                &[
                    ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
                    ("X-B3-SpanId", "e457b5a2e4d86bd1"),
                    ("X-B3-Flags", "0"),
                    ("X-B3-Sampled", "1"),
                ],
                Ok(ctx(ids(T128, 0xe457b5a2e4d86bd1, None), Sampling::Accept)),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-flags", "0"),
                    ("x-b3-sampled", "0"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Deny)),
            ),
            // A Finagle-style bit field, garbage, and flags without a decision: ignored.
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-flags", "6"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Defer)),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-sampled", "1"),
                    ("x-b3-flags", "true"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Accept)),
            ),
            (&[("x-b3-flags", "0")], Ok(ctx(None, Sampling::Defer))),
            // A sampling decision without ids.
            (&[("x-b3-sampled", "0")], Ok(ctx(None, Sampling::Deny))),
            (&[("x-b3-flags", "1")], Ok(ctx(None, Sampling::Debug))),
            // Root with an all-zero parent.
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-parentspanid", "0000000000000000"),
                ],
                Ok(ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Defer)),
            ),
            // Malformed.
            (
                &[("x-b3-traceid", "463ac35c9f6413ad")],
                Err(Malformed::MissingSpanId),
            ),
            (
                &[("x-b3-spanid", "a2fb4a1d1a96d312")],
                Err(Malformed::MissingTraceId),
            ),
            (
                &[("x-b3-parentspanid", "a2fb4a1d1a96d312")],
                Err(Malformed::ParentWithoutIds),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413a"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ],
                Err(Malformed::TraceId),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413adx"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ],
                Err(Malformed::TraceId),
            ),
            (
                &[
                    ("x-b3-traceid", "0000000000000000"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ],
                Err(Malformed::TraceId),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "0000000000000000"),
                ],
                Err(Malformed::SpanId),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "+2fb4a1d1a96d312"),
                ],
                Err(Malformed::SpanId),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-parentspanid", "xyz"),
                ],
                Err(Malformed::ParentSpanId),
            ),
            (
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                    ("x-b3-sampled", "yes"),
                ],
                Err(Malformed::Sampled),
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(parse_multi(&multi(headers)), *want, "headers {headers:?}");
        }
    }

    #[test]
    fn collect_is_case_insensitive_takes_first_value_and_trims() {
        let h = multi(&[
            ("Content-Type", "text/plain"),
            ("X-B3-TRACEID", " 463ac35c9f6413ad "),
            ("x-b3-traceid", "1111111111111111"),
            ("X-b3-SpanId", "a2fb4a1d1a96d312"),
            ("B3", "1"),
            ("x-b3-unknown", "zzz"),
            ("x-b3-", "zzz"),
        ]);
        assert_eq!(h.trace_id, Some("463ac35c9f6413ad"));
        assert_eq!(h.span_id, Some("a2fb4a1d1a96d312"));
        assert_eq!(h.single, Some("1"));
        assert_eq!(h.sampled, None);
        assert_eq!(multi(&[("x-request-id", "abc")]), Headers::default());
    }

    #[test]
    fn extract_precedence_and_fallback() {
        let both = [
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "0"),
        ];
        let single_wins = extract(&multi(&both));
        assert_eq!(
            single_wins.context,
            ctx(ids(T128, 0xe457b5a2e4d86bd1, None), Sampling::Accept)
        );
        assert_eq!(single_wins.single_error, None);

        // A malformed b3 falls back to the multiple headers, and says why.
        let fallback = extract(&multi(&[
            ("b3", "garbage"),
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "0"),
        ]));
        assert_eq!(
            fallback.context,
            ctx(ids(T64, 0xa2fb4a1d1a96d312, None), Sampling::Deny)
        );
        assert_eq!(fallback.single_error, Some(Malformed::SingleShape));
        assert_eq!(fallback.multi_error, None);

        // Both malformed: nothing is kept, a new trace starts.
        let none = extract(&multi(&[("b3", "1-2"), ("x-b3-traceid", "zz")]));
        assert_eq!(none.context, Context::default());
        assert_eq!(none.single_error, Some(Malformed::TraceId));
        assert_eq!(none.multi_error, Some(Malformed::MissingSpanId));

        // An empty b3 is as if absent.
        let empty = extract(&multi(&[("b3", "")]));
        assert_eq!(empty.context, Context::default());
        assert_eq!(empty.single_error, None);

        // A huge value is rejected without being scanned.
        let huge = "a".repeat(64 * 1024);
        let big = extract(&multi(&[("b3", &huge), ("x-b3-traceid", &huge)]));
        assert_eq!(big.context, Context::default());
        assert_eq!(big.single_error, Some(Malformed::SingleShape));
    }

    /// What `inject` writes, as `(name, value)` pairs.
    fn injected(c: &Context, with_single: bool) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        inject(c, with_single, &mut out);
        out
    }

    #[test]
    fn outgoing_headers_parse_back_both_ways() {
        let c = ctx(ids(T128, 0xe457b5a2e4d86bd1, Some(7)), Sampling::Deny);
        let with_single = injected(&c, true);
        let pairs: Vec<_> = with_single.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            pairs.last(),
            Some(&(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-0000000000000007"
            ))
        );
        let h = Headers::collect(pairs.iter().copied());
        assert_eq!(parse_single(h.single.unwrap()), Ok(c));
        assert_eq!(parse_multi(&h), Ok(c));
        assert_eq!(extract(&h).context, c);
        let multi_only = injected(&c, false);
        assert!(multi_only.iter().all(|(name, _)| *name != "b3"));
        let h = Headers::collect(multi_only.iter().map(|(n, v)| (*n, v.as_str())));
        assert_eq!(parse_multi(&h), Ok(c));
    }

    #[test]
    fn format_cases() {
        let cases: &[(Context, &str, Pairs)] = &[
            (
                ctx(
                    ids(T128, 0xe457b5a2e4d86bd1, Some(0x05e3ac9a4f6e3b90)),
                    Sampling::Accept,
                ),
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
                &[
                    ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                    ("x-b3-spanid", "e457b5a2e4d86bd1"),
                    ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
                    ("x-b3-sampled", "1"),
                ],
            ),
            (
                ctx(ids(T64, 0x00000000000000a1, None), Sampling::Debug),
                "463ac35c9f6413ad-00000000000000a1-d",
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "00000000000000a1"),
                    ("x-b3-flags", "1"),
                ],
            ),
            (
                ctx(ids(T64, 1, Some(2)), Sampling::Deny),
                "463ac35c9f6413ad-0000000000000001-0-0000000000000002",
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "0000000000000001"),
                    ("x-b3-parentspanid", "0000000000000002"),
                    ("x-b3-sampled", "0"),
                ],
            ),
            // Deferred: the single encoding cannot carry the parent.
            (
                ctx(ids(T64, 1, Some(2)), Sampling::Defer),
                "463ac35c9f6413ad-0000000000000001",
                &[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "0000000000000001"),
                    ("x-b3-parentspanid", "0000000000000002"),
                ],
            ),
            (ctx(None, Sampling::Deny), "0", &[("x-b3-sampled", "0")]),
            (ctx(None, Sampling::Debug), "d", &[("x-b3-flags", "1")]),
        ];
        for (c, single, pairs) in cases {
            assert_eq!(format_single(c), *single, "{c:?}");
            let got = injected(c, false);
            let got: Vec<_> = got.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(got, pairs.to_vec(), "{c:?}");
        }
    }
}

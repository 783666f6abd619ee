//! Trace context in and out, whatever the format: the context types, the formats enabled by
//! `JAEGER_PROPAGATION` in their order of precedence, and the dispatch between [`b3`] and
//! [`w3c`] (the shape of linkerd2-proxy's trace-context: one module per format, this one picks).
//!
//! In: every enabled format is read; the first, in precedence order, that carries ids wins
//! (an invalid or absent one falls through to the next). A bare B3 sampling state (`b3: 0`,
//! `x-b3-flags: 1` without ids) is kept when no format carries ids, as before.
//! Out: every enabled format is written for the span that makes the call.

use crate::{b3, w3c};
use std::fmt;

/// A trace id. `high == 0` means a 64-bit id (B3 writes it as 16 hex digits), otherwise
/// 128-bit. Displayed as B3 writes it: 16 or 32 lower-hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId {
    pub high: u64,
    pub low: u64,
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.high != 0 {
            write!(f, "{:016x}", self.high)?;
        }
        write!(f, "{:016x}", self.low)
    }
}

/// A sampling state as carried by B3 (W3C carries only accept and deny).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// No decision: the receiver decides.
    Defer,
    Deny,
    Accept,
    /// Accept, and ask every hop to keep the trace (`x-b3-flags: 1`, `b3: …-d`).
    Debug,
}

impl Sampling {
    /// Whether spans of this trace are recorded.
    pub fn is_sampled(self) -> bool {
        matches!(self, Sampling::Accept | Sampling::Debug)
    }
}

/// The identifiers of one span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: TraceId,
    pub span_id: u64,
    pub parent_id: Option<u64>,
}

/// A trace context: identifiers (absent for a bare sampling state such as `b3: 0`) and
/// sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub ids: Option<SpanIds>,
    pub sampling: Sampling,
}

impl Context {
    /// The context of a caller's span whose own parent is not known (W3C's `parent-id`).
    pub fn of_span(trace_id: TraceId, span_id: u64, sampling: Sampling) -> Context {
        Context {
            ids: Some(SpanIds {
                trace_id,
                span_id,
                parent_id: None,
            }),
            sampling,
        }
    }
}

impl Default for Context {
    fn default() -> Self {
        Context {
            ids: None,
            sampling: Sampling::Defer,
        }
    }
}

/// 1 to 16 lower-hex digits as a number; `None` for anything else (upper case included: both
/// B3 and W3C ask for lower case). The length is checked first, so a huge value costs nothing.
pub(crate) fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(digit))
    })
}

/// A trace context format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// B3, single and multiple headers.
    B3,
    /// W3C Trace Context: `traceparent`, `tracestate`.
    W3c,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::B3 => "b3",
            Format::W3c => "w3c",
        }
    }
}

/// The enabled formats in order of precedence (`JAEGER_PROPAGATION`): never empty, no repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Formats(Vec<Format>);

impl Default for Formats {
    /// `b3,w3c`: B3 first, as Istio's zipkin provider and the Go original speak it.
    fn default() -> Self {
        Formats(vec![Format::B3, Format::W3c])
    }
}

impl Formats {
    /// A comma list of `b3` and `w3c` (spaces around names allowed); `None` for anything
    /// else: an unknown or empty name, or a name given twice.
    pub fn parse(v: &str) -> Option<Formats> {
        let mut formats = Vec::with_capacity(2);
        for name in v.split(',') {
            let format = match name.trim() {
                "b3" => Format::B3,
                "w3c" => Format::W3c,
                _ => return None,
            };
            if formats.contains(&format) {
                return None;
            }
            formats.push(format);
        }
        Some(Formats(formats))
    }
}

impl fmt::Display for Formats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, format) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(format.name())?;
        }
        Ok(())
    }
}

/// An encoding that was present but not used, and why: one debug log line each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    B3Single(b3::Malformed),
    B3Multi(b3::Malformed),
    Traceparent(w3c::Malformed),
    Tracestate(w3c::BadTracestate),
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::B3Single(e) => write!(f, "ignoring b3 header: {e}"),
            Rejected::B3Multi(e) => write!(f, "ignoring x-b3-* headers: {e}"),
            Rejected::Traceparent(e) => write!(f, "ignoring traceparent: {e}"),
            Rejected::Tracestate(e) => write!(f, "ignoring tracestate: {e}"),
        }
    }
}

/// What came in with a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    pub context: Context,
    /// The format the ids came from; `None` when no enabled format carried valid ids.
    pub format: Option<Format>,
    /// The caller's `tracestate` (validated, bounded), forwarded with our `traceparent`. Kept
    /// only when a valid `traceparent` of the trace we continue came with it.
    pub tracestate: Option<String>,
    /// The caller sent the single `b3` header: it is written downstream too.
    pub b3_single: bool,
    pub rejected: Vec<Rejected>,
}

/// Reads the trace context of a request from its headers (names case-insensitive).
pub fn extract<'a, I>(formats: &Formats, headers: I) -> Incoming
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
    I::IntoIter: Clone,
{
    let headers = headers.into_iter();
    let mut incoming = Incoming::default();
    // Both formats are read whatever wins: the tracestate and the debug log need them.
    let (mut b3, mut w3c) = (None, None);
    for format in &formats.0 {
        match format {
            Format::B3 => {
                let h = b3::Headers::collect(headers.clone());
                incoming.b3_single = h.single.is_some();
                let e = b3::extract(&h);
                incoming
                    .rejected
                    .extend(e.single_error.map(Rejected::B3Single));
                incoming
                    .rejected
                    .extend(e.multi_error.map(Rejected::B3Multi));
                b3 = Some(e.context);
            }
            Format::W3c => match w3c::extract(headers.clone()) {
                Ok(found) => w3c = found,
                Err(e) => incoming.rejected.push(Rejected::Traceparent(e)),
            },
        }
    }
    let w3c_context = w3c.as_ref().map(|e| e.context);
    let with_ids = formats.0.iter().find_map(|&format| {
        let context = match format {
            Format::B3 => b3,
            Format::W3c => w3c_context,
        };
        context.filter(|c| c.ids.is_some()).map(|c| (format, c))
    });
    match with_ids {
        Some((format, context)) => {
            incoming.context = context;
            incoming.format = Some(format);
        }
        // No ids anywhere: a bare B3 decision still counts (`b3: 0`, `x-b3-flags: 1`).
        None => incoming.context = b3.unwrap_or_default(),
    }
    if let Some(e) = w3c {
        incoming
            .rejected
            .extend(e.tracestate_error.map(Rejected::Tracestate));
        // A tracestate belongs to its traceparent's trace: dropped if another is continued.
        let trace = |c: Context| c.ids.map(|i| i.trace_id);
        if trace(e.context) == trace(incoming.context) {
            incoming.tracestate = e.tracestate;
        }
    }
    incoming
}

/// The headers that carry `client` (the span making an outgoing call) in every enabled
/// format, in precedence order, with what the caller sent that must go on.
pub fn outgoing(
    formats: &Formats,
    client: &Context,
    incoming: &Incoming,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(8);
    for format in &formats.0 {
        match format {
            Format::B3 => b3::inject(client, incoming.b3_single, &mut out),
            Format::W3c => w3c::inject(client, incoming.tracestate.as_deref(), &mut out),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T128: TraceId = TraceId {
        high: 0x4bf92f3577b34da6,
        low: 0xa3ce929d0e0e4736,
    };
    const B3_TRACE: TraceId = TraceId {
        high: 0x80f198ee56343ba8,
        low: 0x64fe8b2a57d3eff7,
    };
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const B3: &str = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0";

    fn formats(v: &str) -> Formats {
        Formats::parse(v).unwrap()
    }

    #[test]
    fn formats_parse() {
        let cases: &[(&str, Option<&[Format]>)] = &[
            ("b3,w3c", Some(&[Format::B3, Format::W3c])),
            ("w3c, b3", Some(&[Format::W3c, Format::B3])),
            ("w3c", Some(&[Format::W3c])),
            (" b3 ", Some(&[Format::B3])),
            ("", None),
            ("b3,", None),
            ("jaeger", None),
            ("B3", None),
            ("b3,b3", None),
            ("b3;w3c", None),
        ];
        for (v, want) in cases {
            assert_eq!(
                Formats::parse(v).map(|f| f.0),
                want.map(<[Format]>::to_vec),
                "{v:?}"
            );
        }
        assert_eq!(Formats::default(), formats("b3,w3c"));
        assert_eq!(formats("w3c,b3").to_string(), "w3c,b3");
    }

    #[test]
    fn trace_ids_display_as_b3_writes_them() {
        assert_eq!(T128.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let t64 = TraceId { high: 0, low: 0xa1 };
        assert_eq!(t64.to_string(), "00000000000000a1");
    }

    /// Which context wins, for each enabled list and header set.
    #[test]
    fn precedence_and_fall_through() {
        let w3c = Context::of_span(T128, 0x00f067aa0ba902b7, Sampling::Accept);
        let b3 = Context::of_span(B3_TRACE, 0xe457b5a2e4d86bd1, Sampling::Deny);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Context, Option<Format>);
        let cases: &[Case] = &[
            (
                "b3,w3c",
                &[("traceparent", TRACEPARENT), ("b3", B3)],
                b3,
                Some(Format::B3),
            ),
            (
                "w3c,b3",
                &[("traceparent", TRACEPARENT), ("b3", B3)],
                w3c,
                Some(Format::W3c),
            ),
            (
                "b3",
                &[("traceparent", TRACEPARENT)],
                Context::default(),
                None,
            ),
            ("w3c", &[("b3", B3)], Context::default(), None),
            (
                "b3,w3c",
                &[("traceparent", TRACEPARENT)],
                w3c,
                Some(Format::W3c),
            ),
            // An invalid format falls through to the next.
            (
                "b3,w3c",
                &[("b3", "garbage"), ("traceparent", TRACEPARENT)],
                w3c,
                Some(Format::W3c),
            ),
            (
                "w3c,b3",
                &[("traceparent", "00-zz"), ("b3", B3)],
                b3,
                Some(Format::B3),
            ),
            // Ids win over a bare B3 decision; the bare decision is kept when nothing has ids.
            (
                "b3,w3c",
                &[("b3", "0"), ("traceparent", TRACEPARENT)],
                w3c,
                Some(Format::W3c),
            ),
            (
                "w3c,b3",
                &[("b3", "d"), ("traceparent", "ff-bad")],
                Context {
                    ids: None,
                    sampling: Sampling::Debug,
                },
                None,
            ),
            ("b3,w3c", &[], Context::default(), None),
        ];
        for (list, headers, want, format) in cases {
            let got = extract(&formats(list), headers.iter().copied());
            assert_eq!(
                (got.context, got.format),
                (*want, *format),
                "{list} {headers:?}"
            );
        }
    }

    #[test]
    fn rejections_are_reported() {
        let got = extract(
            &Formats::default(),
            [
                ("b3", "1-2"),
                ("x-b3-traceid", "zz"),
                (
                    "traceparent",
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ),
            ],
        );
        assert_eq!(got.context, Context::default());
        let lines: Vec<String> = got.rejected.iter().map(|r| r.to_string()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("ignoring b3 header: "), "{lines:?}");
        assert!(
            lines[1].starts_with("ignoring x-b3-* headers: "),
            "{lines:?}"
        );
        assert!(lines[2].starts_with("ignoring traceparent: "), "{lines:?}");
    }

    #[test]
    fn tracestate_goes_on_only_with_its_own_trace() {
        let with_state = [
            ("traceparent", TRACEPARENT),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ];
        let w3c_wins = extract(&Formats::default(), with_state);
        assert_eq!(
            w3c_wins.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7")
        );
        // B3 wins with the same trace id: the tracestate still belongs to it.
        let same = format!("{T128}-e457b5a2e4d86bd1-1");
        let mut headers = with_state.to_vec();
        headers.push(("b3", &same));
        let b3_same = extract(&Formats::default(), headers.iter().copied());
        assert_eq!(b3_same.format, Some(Format::B3));
        assert_eq!(b3_same.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));
        // B3 wins with another trace: the tracestate is of a trace we do not continue.
        headers.push(("x-b3-traceid", "463ac35c9f6413ad"));
        headers[2] = ("b3", B3);
        let b3_other = extract(&Formats::default(), headers.iter().copied());
        assert_eq!(b3_other.format, Some(Format::B3));
        assert_eq!(b3_other.tracestate, None);
        // W3C not enabled: not read, not forwarded.
        assert_eq!(extract(&formats("b3"), with_state).tracestate, None);
    }

    #[test]
    fn outgoing_writes_every_enabled_format_for_the_client_span() {
        let client = Context {
            ids: Some(SpanIds {
                trace_id: B3_TRACE,
                span_id: 0x40761b77742cec02,
                parent_id: Some(0x4f822a27d4fd3fbe),
            }),
            sampling: Sampling::Accept,
        };
        let incoming = Incoming {
            tracestate: Some("congo=t61rcWkgMzE".into()),
            b3_single: true,
            ..Incoming::default()
        };
        let all = outgoing(&Formats::default(), &client, &incoming);
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "x-b3-traceid",
                "x-b3-spanid",
                "x-b3-parentspanid",
                "x-b3-sampled",
                "b3",
                "traceparent",
                "tracestate"
            ]
        );
        let value = |name| {
            all.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            value("traceparent"),
            Some("00-80f198ee56343ba864fe8b2a57d3eff7-40761b77742cec02-01")
        );
        assert_eq!(value("tracestate"), Some("congo=t61rcWkgMzE"));
        // What we write is read back as the client span, by each format alone.
        for list in ["b3", "w3c"] {
            let back = extract(&formats(list), all.iter().map(|(n, v)| (*n, v.as_str())));
            assert_eq!(
                back.context.ids.map(|i| (i.trace_id, i.span_id)),
                Some((B3_TRACE, 0x40761b77742cec02)),
                "{list}"
            );
        }
        let w3c_only = outgoing(&formats("w3c"), &client, &Incoming::default());
        assert_eq!(
            w3c_only,
            [(
                "traceparent",
                "00-80f198ee56343ba864fe8b2a57d3eff7-40761b77742cec02-01".to_string()
            )]
        );
        let b3_only = outgoing(&formats("b3"), &client, &incoming);
        assert!(
            b3_only
                .iter()
                .all(|(n, _)| n.starts_with("x-b3-") || *n == "b3")
        );
    }
}

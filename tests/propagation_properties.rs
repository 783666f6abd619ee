//! Property tests of the trace context parsers and writers (B3 and W3C): no input panics, and
//! what we write parses back to what we meant.
//! `PROPTEST_CASES=100000 cargo test --test propagation_properties` runs more.

use myhelloworld::b3::{self, Headers};
use myhelloworld::propagation::{self, Context, Formats, Sampling, SpanIds, TraceId};
use myhelloworld::w3c;
use proptest::prelude::*;

fn sampling() -> impl Strategy<Value = Sampling> {
    prop_oneof![
        Just(Sampling::Defer),
        Just(Sampling::Deny),
        Just(Sampling::Accept),
        Just(Sampling::Debug)
    ]
}

fn span_ids() -> impl Strategy<Value = SpanIds> {
    (
        any::<u64>(),
        1..=u64::MAX,
        1..=u64::MAX,
        proptest::option::of(1..=u64::MAX),
    )
        .prop_map(|(high, low, span_id, parent_id)| SpanIds {
            trace_id: TraceId { high, low },
            span_id,
            parent_id,
        })
}

fn context() -> impl Strategy<Value = Context> {
    (proptest::option::of(span_ids()), sampling())
        .prop_map(|(ids, sampling)| Context { ids, sampling })
}

/// Header values that look like B3 or W3C half the time and like anything the other half.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{16}",
        "[0-9a-f]{32}",
        "[0-9a-fA-Fxz-]{0,80}",
        "[01d]",
        "(true|false|1|0)",
        "[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[ -~]{0,20})?",
        "[0-9a-fA-F.-]{50,60}",
        "([a-z0-9@_*/-]{1,20}=[ -~]{1,20}[ \t,]{0,3}){0,40}",
        ".{0,200}",
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("b3".to_string()),
        Just("X-B3-TraceId".to_string()),
        Just("x-b3-spanid".to_string()),
        Just("x-b3-PARENTSPANID".to_string()),
        Just("x-b3-sampled".to_string()),
        Just("x-b3-flags".to_string()),
        Just("traceparent".to_string()),
        Just("TraceState".to_string()),
        "[a-zA-Z0-9-]{1,20}",
    ]
}

fn formats() -> impl Strategy<Value = Formats> {
    prop_oneof![
        Just(Formats::default()),
        Just(Formats::parse("w3c,b3").unwrap()),
        Just(Formats::parse("w3c").unwrap()),
        Just(Formats::parse("b3").unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_headers_extract_without_panic(
        headers in proptest::collection::vec((header_name(), value()), 0..12),
        formats in formats(),
    ) {
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let incoming = propagation::extract(&formats, pairs);
        // Whatever was accepted is a valid context: non-zero ids.
        if let Some(ids) = incoming.context.ids {
            prop_assert!(ids.span_id != 0);
            prop_assert!(ids.trace_id.high != 0 || ids.trace_id.low != 0);
            prop_assert!(ids.parent_id != Some(0));
        }
        // A tracestate goes on only with a W3C context, and within the bounds.
        if let Some(state) = &incoming.tracestate {
            prop_assert!(!state.is_empty() && state.len() <= w3c::MAX_TRACESTATE);
            prop_assert!(state.split(',').count() <= w3c::MAX_MEMBERS);
            prop_assert!(incoming.context.ids.is_some());
        }
    }

    #[test]
    fn single_header_round_trips(c in context()) {
        let written = b3::format_single(&c);
        let parsed = b3::parse_single(&written);
        // The single encoding has no place for a parent without a sampling state, and an
        // empty value (no ids, deferred) is no header at all.
        let mut want = c;
        if want.sampling == Sampling::Defer
            && let Some(ids) = want.ids.as_mut()
        {
            ids.parent_id = None;
        }
        if c.ids.is_none() && c.sampling == Sampling::Defer {
            prop_assert!(parsed.is_err());
        } else {
            prop_assert_eq!(parsed, Ok(want));
        }
    }

    #[test]
    fn multi_headers_round_trip(c in context()) {
        let mut written = Vec::new();
        b3::inject(&c, false, &mut written);
        let pairs = written.iter().map(|(n, v)| (*n, v.as_str()));
        let parsed = b3::parse_multi(&Headers::collect(pairs));
        prop_assert_eq!(parsed, Ok(c));
    }

    /// W3C carries the trace id whole, the span id as parent id, and accept or deny (debug
    /// is an accept; a deferred decision cannot be written and reads back as deny).
    #[test]
    fn traceparent_round_trips(
        ids in span_ids(),
        sampling in sampling(),
        state in proptest::option::of("[a-z]{1,8}=[!-+]{1,8}"),
    ) {
        let c = Context { ids: Some(ids), sampling };
        let mut written = Vec::new();
        w3c::inject(&c, state.as_deref(), &mut written);
        let parsed = w3c::extract(written.iter().map(|(n, v)| (*n, v.as_str())))
            .expect("valid")
            .expect("present");
        let want = Context {
            ids: Some(SpanIds { parent_id: None, ..ids }),
            sampling: if sampling.is_sampled() { Sampling::Accept } else { Sampling::Deny },
        };
        prop_assert_eq!(parsed.context, want);
        prop_assert_eq!(parsed.tracestate, state);
    }

    /// A later version with extra fields is read as version 00 (§3.2.4).
    #[test]
    fn later_versions_read_the_version_00_fields(
        ids in span_ids(),
        version in 1u8..=0xfe,
        rest in "(-[ -~]{0,30})?",
    ) {
        let c = Context { ids: Some(ids), sampling: Sampling::Accept };
        let mut written = Vec::new();
        w3c::inject(&c, None, &mut written);
        let value = format!("{version:02x}{}{rest}", &written[0].1[2..]);
        let parsed = w3c::parse_traceparent(&value);
        let got = parsed.map(|p| p.ids.map(|i| (i.trace_id, i.span_id)));
        prop_assert_eq!(got, Ok(Some((ids.trace_id, ids.span_id))));
    }
}

//! Property tests of the B3 parser and writer: no input panics, and what we write parses
//! back to what we meant. `PROPTEST_CASES=100000 cargo test --test b3_properties` runs more.

use myhelloworld::b3::{self, Context, Headers, Sampling, SpanIds, TraceId};
use proptest::prelude::*;

fn sampling() -> impl Strategy<Value = Sampling> {
    prop_oneof![
        Just(Sampling::Defer),
        Just(Sampling::Deny),
        Just(Sampling::Accept),
        Just(Sampling::Debug)
    ]
}

fn context() -> impl Strategy<Value = Context> {
    let ids = (
        any::<u64>(),
        1..=u64::MAX,
        1..=u64::MAX,
        proptest::option::of(1..=u64::MAX),
    )
        .prop_map(|(high, low, span_id, parent_id)| SpanIds {
            trace_id: TraceId { high, low },
            span_id,
            parent_id,
        });
    (proptest::option::of(ids), sampling()).prop_map(|(ids, sampling)| Context { ids, sampling })
}

/// Header values that look like B3 half the time and like anything the other half.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{16}",
        "[0-9a-f]{32}",
        "[0-9a-fA-Fxz-]{0,80}",
        "[01d]",
        "(true|false|1|0)",
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
        "[a-zA-Z0-9-]{1,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_headers_extract_without_panic(
        headers in proptest::collection::vec((header_name(), value()), 0..12)
    ) {
        let h = Headers::collect(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let extracted = b3::extract(&h);
        // Whatever was accepted is a valid context: non-zero ids.
        if let Some(ids) = extracted.context.ids {
            prop_assert!(ids.span_id != 0);
            prop_assert!(ids.trace_id.high != 0 || ids.trace_id.low != 0);
            prop_assert!(ids.parent_id != Some(0));
        }
    }

    #[test]
    fn single_header_round_trips(c in context()) {
        let written = b3::format_single(&c);
        let parsed = b3::parse_single(written.as_str());
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
        let written = b3::format_multi(&c);
        let pairs: Vec<(&str, &str)> = written.pairs().collect();
        let parsed = b3::parse_multi(&Headers::collect(pairs.iter().copied()));
        prop_assert_eq!(parsed, Ok(c));
    }
}

//! Jaeger's `Agent.emitBatch` call in the Thrift compact protocol, written straight from
//! rustracing_jaeger's finished spans into the reporter's reused buffers.
//!
//! Why not rustracing_jaeger's `JaegerCompactReporter`: it copies every span into owned
//! thrift structs (a `String` per tag key and value), then into thrift_codec's generic data
//! tree, then encodes that: dozens of allocations per span, as much CPU as all the rest of
//! the tracing of a request (measured: README, Performance). This writes the same
//! bytes (the tests compare them with rustracing_jaeger's conversion encoded by thrift_codec)
//! and allocates nothing once the buffers have grown.
//!
//! Layout: jaeger-idl's `agent.thrift` and `jaeger.thrift`. Encoding: Thrift's compact
//! protocol (field headers hold the id delta, integers are zigzag varints, doubles are
//! little-endian as every Thrift implementation writes them).

use rustracing::tag::TagValue;
use rustracing_jaeger::span::{FinishedSpan, SpanReference};
use std::time::{SystemTime, UNIX_EPOCH};

// Compact protocol type ids, of fields and of list elements.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const STRUCT: u8 = 12;

/// jaeger.thrift's `TagType`.
const TAG_STRING: i32 = 0;
const TAG_DOUBLE: i32 = 1;
const TAG_BOOL: i32 = 2;
const TAG_LONG: i32 = 3;

/// What a datagram adds to the head and the spans: the spans' list header (one byte, or one
/// and a varint of at most 5 bytes) and the stops of the Batch and of the arguments.
pub const TAIL_MAX: usize = 1 + 5 + 2;

/// The bytes of a datagram before its spans: the message header, the `emitBatch` arguments
/// and the Batch opened, the Process, and the header of the Batch's spans field.
pub fn batch_head(service_name: &str, process_tags: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // Protocol id; version 1 with the message type ONEWAY (4) in the top 3 bits.
    out.extend_from_slice(&[0x82, 0x81]);
    varint(&mut out, 0); // sequence id, unused by a oneway call
    binary(&mut out, b"emitBatch");
    let mut args = Fields::new(&mut out);
    args.header(1, STRUCT); // emitBatch(1: Batch batch)
    let mut batch = args.nested();
    batch.header(1, STRUCT); // Batch.process
    let mut process = batch.nested();
    process.string(1, service_name);
    if !process_tags.is_empty() {
        process.list(2, process_tags.len());
        for (key, value) in process_tags {
            tag(process.nested(), key, TagRef::Str(value));
        }
    }
    process.end();
    batch.header(2, LIST); // Batch.spans; the list header depends on the count
    out
}

/// Writes a datagram: `head`, then `count` spans already encoded back to back in `spans`.
pub fn datagram(out: &mut Vec<u8>, head: &[u8], count: usize, spans: &[u8]) {
    out.clear();
    out.extend_from_slice(head);
    list_header(out, count, STRUCT);
    out.extend_from_slice(spans);
    out.extend_from_slice(&[0, 0]); // end of the Batch, end of the arguments
}

/// Appends `span` as a jaeger.thrift `Span`. As rustracing_jaeger does: references to
/// unsampled spans are left out, the first sampled one is also the `parentSpanId`, and a
/// debug id becomes a `jaeger-debug-id` tag.
pub fn encode_span(out: &mut Vec<u8>, span: &FinishedSpan) {
    let state = span.context().state();
    let refs = || sampled_references(span);
    let mut f = Fields::new(out);
    f.i64(1, state.trace_id().low as i64);
    f.i64(2, state.trace_id().high as i64);
    f.i64(3, state.span_id() as i64);
    f.i64(4, parent_span_id(span) as i64);
    f.string(5, span.operation_name());
    let n = refs().count();
    if n > 0 {
        f.list(6, n);
        for r in refs() {
            let mut s = f.nested();
            s.i32(1, if r.is_child_of() { 0 } else { 1 }); // CHILD_OF, FOLLOWS_FROM
            s.i64(2, r.span().trace_id().low as i64);
            s.i64(3, r.span().trace_id().high as i64);
            s.i64(4, r.span().span_id() as i64);
            s.end();
        }
    }
    f.i32(7, i32::from(state.flags()));
    f.i64(8, micros_between(UNIX_EPOCH, span.start_time()));
    f.i64(9, micros_between(span.start_time(), span.finish_time()));
    let debug_id = state.debug_id();
    let n = span.tags().len() + usize::from(debug_id.is_some());
    if n > 0 {
        f.list(10, n);
        for t in span.tags() {
            let value = match t.value() {
                TagValue::String(s) => TagRef::Str(s),
                TagValue::Boolean(b) => TagRef::Bool(*b),
                TagValue::Integer(i) => TagRef::Long(*i),
                TagValue::Float(x) => TagRef::Double(*x),
            };
            tag(f.nested(), t.name(), value);
        }
        if let Some(id) = debug_id {
            tag(f.nested(), "jaeger-debug-id", TagRef::Str(id));
        }
    }
    if !span.logs().is_empty() {
        f.list(11, span.logs().len());
        for log in span.logs() {
            let mut l = f.nested();
            l.i64(1, micros_between(UNIX_EPOCH, log.time()));
            l.list(2, log.fields().len());
            for field in log.fields() {
                tag(l.nested(), field.name(), TagRef::Str(field.value()));
            }
            l.end();
        }
    }
    f.end();
}

/// The references a datagram keeps: those to sampled spans.
fn sampled_references(span: &FinishedSpan) -> impl Iterator<Item = &SpanReference> {
    span.references().iter().filter(|r| r.span().is_sampled())
}

/// The span's parent as the datagram names it: the first sampled reference, or 0.
pub fn parent_span_id(span: &FinishedSpan) -> u64 {
    sampled_references(span)
        .next()
        .map_or(0, |r| r.span().span_id())
}

enum TagRef<'a> {
    Str(&'a str),
    Double(f64),
    Bool(bool),
    Long(i64),
}

fn tag(mut t: Fields<'_>, key: &str, value: TagRef<'_>) {
    t.string(1, key);
    match value {
        TagRef::Str(s) => {
            t.i32(2, TAG_STRING);
            t.string(3, s);
        }
        TagRef::Double(x) => {
            t.i32(2, TAG_DOUBLE);
            t.header(4, DOUBLE);
            t.out.extend_from_slice(&x.to_le_bytes());
        }
        TagRef::Bool(b) => {
            t.i32(2, TAG_BOOL);
            t.header(5, if b { BOOL_TRUE } else { BOOL_FALSE }); // the value is the type
        }
        TagRef::Long(i) => {
            t.i32(2, TAG_LONG);
            t.i64(6, i);
        }
    }
    t.end();
}

/// Microseconds from `from` to `to`, negative if `to` is earlier (a clock step).
fn micros_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |us| -us),
    }
}

/// The fields of one struct, written in increasing id order. Every id here is at most 15,
/// so a field header is one byte: the delta from the previous id, and the type.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    last: u8,
}

impl Fields<'_> {
    fn new(out: &mut Vec<u8>) -> Fields<'_> {
        Fields { out, last: 0 }
    }

    /// A struct nested in this one (a field's value or a list element): its ids start over.
    fn nested(&mut self) -> Fields<'_> {
        Fields::new(self.out)
    }

    fn header(&mut self, id: u8, kind: u8) {
        debug_assert!(id > self.last && id - self.last <= 15);
        self.out.push(((id - self.last) << 4) | kind);
        self.last = id;
    }

    fn i32(&mut self, id: u8, v: i32) {
        self.header(id, I32);
        varint(self.out, zigzag(i64::from(v)));
    }

    fn i64(&mut self, id: u8, v: i64) {
        self.header(id, I64);
        varint(self.out, zigzag(v));
    }

    fn string(&mut self, id: u8, s: &str) {
        self.header(id, BINARY);
        binary(self.out, s.as_bytes());
    }

    /// A list of structs; the caller writes the `len` elements next.
    fn list(&mut self, id: u8, len: usize) {
        self.header(id, LIST);
        list_header(self.out, len, STRUCT);
    }

    fn end(self) {
        self.out.push(0);
    }
}

fn list_header(out: &mut Vec<u8>, len: usize, kind: u8) {
    if len < 15 {
        out.push(((len as u8) << 4) | kind);
    } else {
        out.push(0xf0 | kind);
        varint(out, len as u64);
    }
}

/// ZigZag: small negative numbers get small varints. For an i32 widened to i64 this is the
/// same number as the 32-bit ZigZag.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn binary(out: &mut Vec<u8>, bytes: &[u8]) {
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustracing::tag::Tag;
    use rustracing_jaeger::Tracer;
    use rustracing_jaeger::span::SpanContext;
    use rustracing_jaeger::thrift::{agent, jaeger};
    use std::collections::HashMap;
    use std::time::Duration;
    use thrift_codec::CompactEncode;
    use thrift_codec::data::Struct;
    use thrift_codec::message::Message;

    /// The reference: rustracing_jaeger's own conversion, encoded by thrift_codec.
    fn theirs_span(span: &FinishedSpan) -> Vec<u8> {
        let mut buf = Vec::new();
        Struct::from(jaeger::Span::from(span))
            .compact_encode(&mut buf)
            .unwrap();
        buf
    }

    fn ours_span(span: &FinishedSpan) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_span(&mut buf, span);
        buf
    }

    /// Finished spans of every shape the encoder has a branch for.
    fn spans() -> Vec<(&'static str, FinishedSpan)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let tracer = Tracer::with_sender(rustracing::sampler::AllSampler, tx);
        let context = |headers: &[(&str, &str)]| {
            let headers: HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            SpanContext::extract_from_http_header(&headers)
                .unwrap()
                .unwrap()
        };
        // Flags 0: not sampled.
        let unsampled = context(&[("uber-trace-id", "1:2:0:0")]);
        let epoch = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let root = tracer.span("root").start_time(epoch).start();
        let mut cases = Vec::new();
        let mut finish = |name: &'static str, span: rustracing_jaeger::Span| {
            drop(span);
            // Each case's span is the last one sent.
            let finished = rx.try_iter().last().expect("a finished span");
            cases.push((name, finished));
        };
        finish(
            "no reference, no tag",
            tracer.span("GET /gettime").start_time(epoch).start(),
        );
        finish(
            "child of a sampled span: parent id and one reference",
            tracer
                .span("GET /gettime")
                .child_of(&root)
                .start_time(epoch)
                .start(),
        );
        finish(
            "a reference to an unsampled span is left out",
            tracer
                .span("x")
                .child_of(&unsampled)
                .follows_from(&root)
                .start_time(epoch)
                .start(),
        );
        let mut tagged = tracer
            .span("tags of every type")
            .tag(Tag::new("span.kind", "server"))
            .tag(Tag::new("http.status_code", 200i64))
            .tag(Tag::new("negative", -1i64))
            .tag(Tag::new("min", i64::MIN))
            .tag(Tag::new("error", true))
            .tag(Tag::new("ok", false))
            .tag(Tag::new("sampler.param", 0.001))
            .tag(Tag::new("nan", f64::NAN))
            .tag(Tag::new("unicode", "héllo, 世界"))
            .start_time(epoch)
            .start();
        tagged.set_finish_time(|| epoch + Duration::from_micros(1234));
        finish("tags of every type", tagged);
        let mut many = tracer.span("15 tags and more: a long list header");
        for i in 0..40 {
            many = many.tag(Tag::new(format!("k{i}"), "v".repeat(i * 7)));
        }
        finish("many tags", many.start_time(epoch).start());
        let mut logged = tracer
            .span("logs")
            .tag(Tag::new("http.url", "/".repeat(300)))
            .start_time(epoch)
            .start();
        for i in 0..3 {
            logged.error_log(|l| {
                l.kind("downstream").message(format!("failure {i}"));
            });
        }
        finish("logs, a 2-byte length", logged);
        let mut backwards = tracer
            .span("finished before it started")
            .start_time(epoch)
            .start();
        backwards.set_finish_time(|| epoch - Duration::from_micros(5));
        finish("negative duration", backwards);
        finish(
            "started before 1970",
            tracer
                .span("old")
                .start_time(UNIX_EPOCH - Duration::from_secs(3))
                .start(),
        );
        let debug = context(&[
            ("uber-trace-id", "6309ab92c95468ed:ea0dc1a9772ae2dc:0:3"),
            ("jaeger-debug-id", "abc"),
        ]);
        finish(
            "a debug id becomes a tag",
            tracer
                .span("debug")
                .start_time(epoch)
                .start_with_state(debug.state().clone()),
        );
        cases
    }

    #[test]
    fn spans_encode_exactly_as_rustracing_jaeger_and_thrift_codec() {
        for (name, span) in spans() {
            assert_eq!(ours_span(&span), theirs_span(&span), "{name}");
        }
    }

    #[test]
    fn datagrams_encode_exactly_as_rustracing_jaeger_and_thrift_codec() {
        let tags = [
            ("jaeger.version", "myhelloworld-0.1.0"),
            ("hostname", "frontend-7f9c6d5b8-x2x2x"),
            ("ip", "10.244.1.17"),
        ];
        // Three sets of every shape: more than 15 spans, the long list header.
        let spans: Vec<FinishedSpan> = (0..3)
            .flat_map(|_| spans().into_iter().map(|(_, s)| s))
            .collect();
        let cases = [
            (&tags[..], spans.len()),
            (&tags[..], 14),
            (&[][..], 1),
            (&tags[..1], 0),
        ];
        for (process_tags, count) in cases {
            let batch = jaeger::Batch {
                process: jaeger::Process {
                    service_name: "frontend".into(),
                    tags: process_tags
                        .iter()
                        .map(|(k, v)| jaeger::Tag::String {
                            key: k.to_string(),
                            value: v.to_string(),
                        })
                        .collect(),
                },
                spans: spans[..count].iter().map(jaeger::Span::from).collect(),
            };
            let mut theirs = Vec::new();
            Message::from(agent::EmitBatchNotification { batch })
                .compact_encode(&mut theirs)
                .unwrap();

            let head = batch_head("frontend", process_tags);
            let mut encoded = Vec::new();
            for span in &spans[..count] {
                encode_span(&mut encoded, span);
            }
            let mut ours = Vec::new();
            datagram(&mut ours, &head, count, &encoded);
            assert_eq!(
                ours,
                theirs,
                "{count} spans, {} process tags",
                process_tags.len()
            );
            assert!(ours.len() <= head.len() + encoded.len() + TAIL_MAX);
        }
    }

    #[test]
    fn varints_and_zigzag() {
        let cases: [(i64, &[u8]); 7] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            varint(&mut out, zigzag(v));
            assert_eq!(out, want, "{v}");
        }
    }
}

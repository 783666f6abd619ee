//! From the incoming B3 context to this request's span: who decides sampling, which ids the
//! server span gets, and the rustracing_jaeger span built with exactly those ids and flags.
//!
//! Why not `StartSpanOptions::start()`: it always makes a fresh, sampled state with a random
//! 128-bit trace id, so it can neither join the caller's trace nor carry a debug flag. The
//! public Jaeger binary carrier (`SpanContext::extract_from_binary`) is the one way to build a
//! `SpanContextState` with exact trace id, span id and flags, so that is what we feed it.

use crate::config::SamplerConfig;
use crate::propagation::{Context, Format, Incoming, Sampling, SpanIds, TraceId};
use crate::reporter::{Queue, Slot};
use rustracing::sampler::AllSampler;
use rustracing::tag::{Tag, TagValue};
use rustracing_jaeger::Tracer;
use rustracing_jaeger::span::{Span, SpanContext};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

/// Jaeger span flags.
const FLAG_SAMPLED: u8 = 0b01;
const FLAG_DEBUG: u8 = 0b10;

/// The server span of one request, decided before any span object exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanPlan {
    pub trace_id: TraceId,
    pub span_id: u64,
    pub parent_id: Option<u64>,
    /// Accept, Deny or Debug: never Defer once planned.
    pub sampling: Sampling,
    /// This hop's sampler made the decision (the Jaeger clients then tag the span with it).
    pub decided_here: bool,
}

impl SpanPlan {
    /// A child span (the client span of an outgoing call): same trace and decision.
    pub fn child(&self, span_id: u64) -> SpanPlan {
        SpanPlan {
            trace_id: self.trace_id,
            span_id,
            parent_id: Some(self.span_id),
            sampling: self.sampling,
            decided_here: false,
        }
    }

    /// This span as the context to propagate: its ids and the decision, deny included.
    pub fn context(&self) -> Context {
        Context {
            ids: Some(SpanIds {
                trace_id: self.trace_id,
                span_id: self.span_id,
                parent_id: self.parent_id,
            }),
            sampling: self.sampling,
        }
    }
}

/// Plans the server span for `incoming`.
///
/// Default (Istio's model): a new span, CHILD_OF the incoming span id, which behind Istio is
/// the sidecar's inbound span. `shared_rpc_span` (classic Zipkin, the Go original): reuse the
/// incoming span id, whose parent is `x-b3-parentspanid`. No incoming ids: a new root span on
/// a new 128-bit trace, as Istio's own ids are 128-bit.
pub fn plan_server_span(
    incoming: &Context,
    shared_rpc_span: bool,
    sample: impl FnOnce(TraceId) -> bool,
    mut new_id: impl FnMut() -> u64,
) -> SpanPlan {
    let (trace_id, span_id, parent_id) = match incoming.ids {
        Some(SpanIds {
            trace_id,
            span_id,
            parent_id,
        }) if shared_rpc_span => (trace_id, span_id, parent_id),
        Some(ids) => (ids.trace_id, new_id(), Some(ids.span_id)),
        None => (
            TraceId {
                high: new_id(),
                low: new_id(),
            },
            new_id(),
            None,
        ),
    };
    let (sampling, decided_here) = match incoming.sampling {
        Sampling::Defer if sample(trace_id) => (Sampling::Accept, true),
        Sampling::Defer => (Sampling::Deny, true),
        decided => (decided, false),
    };
    SpanPlan {
        trace_id,
        span_id,
        parent_id,
        sampling,
        decided_here,
    }
}

/// A random non-zero 64-bit id (zero means "absent" in both B3 and Jaeger).
pub fn random_id() -> u64 {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return id;
        }
    }
}

/// The configured sampler, for traces that arrive without a decision.
#[derive(Debug)]
pub enum Sampler {
    Const(bool),
    /// Sampled when the trace id's low 63 bits are under the boundary, as jaeger-client-go
    /// does: the decision is a function of the trace id, so every hop that uses the same rate
    /// agrees, and no random number is drawn.
    Probabilistic {
        rate: f64,
        boundary: u64,
    },
    /// A token bucket of `rate` traces per second, at most `max(rate, 1)` at once.
    RateLimiting {
        rate: f64,
        bucket: Mutex<(f64, Instant)>,
    },
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Sampler {
        match config {
            SamplerConfig::Const(on) => Sampler::Const(on),
            SamplerConfig::Probabilistic(rate) => Sampler::Probabilistic {
                rate,
                boundary: (rate * i64::MAX as f64) as u64,
            },
            SamplerConfig::RateLimiting(rate) => Sampler::RateLimiting {
                rate,
                bucket: Mutex::new((rate.max(1.0), Instant::now())),
            },
        }
    }

    pub fn sample(&self, trace_id: TraceId) -> bool {
        match self {
            Sampler::Const(on) => *on,
            Sampler::Probabilistic { boundary, .. } => trace_id.low & (i64::MAX as u64) < *boundary,
            Sampler::RateLimiting { rate, bucket } => {
                // Only this sampler takes a lock, and only for deferred traces.
                let Ok(mut bucket) = bucket.lock() else {
                    return false;
                };
                let (balance, last) = &mut *bucket;
                let now = Instant::now();
                *balance =
                    (*balance + now.duration_since(*last).as_secs_f64() * rate).min(rate.max(1.0));
                *last = now;
                if *balance >= 1.0 {
                    *balance -= 1.0;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// The `sampler.type` and `sampler.param` tags the Jaeger clients put on a span whose
    /// trace they sampled.
    fn tags(&self) -> [Tag; 2] {
        let (kind, param) = match self {
            Sampler::Const(on) => ("const", if *on { 1.0 } else { 0.0 }),
            Sampler::Probabilistic { rate, .. } => ("probabilistic", *rate),
            Sampler::RateLimiting { rate, .. } => ("ratelimiting", *rate),
        };
        [
            Tag::new("sampler.type", kind),
            Tag::new("sampler.param", param),
        ]
    }
}

/// A Jaeger span context with exactly these ids and flags (see the module comment).
fn jaeger_context(trace_id: TraceId, span_id: u64, flags: u8) -> Option<SpanContext> {
    // Layout of the Jaeger binary carrier: trace id high, low, span id, parent (unused),
    // flags, then the baggage count (not read).
    let mut buf = [0u8; 33];
    buf[0..8].copy_from_slice(&trace_id.high.to_be_bytes());
    buf[8..16].copy_from_slice(&trace_id.low.to_be_bytes());
    buf[16..24].copy_from_slice(&span_id.to_be_bytes());
    buf[32] = flags;
    SpanContext::extract_from_binary(&mut &buf[..])
        .ok()
        .flatten()
}

/// Everything needed to start spans: the tracer feeding the reporter's queue (none when
/// tracing is disabled: ids and decisions are still made, for logs and propagation), the
/// sampler, and the span model setting.
pub struct Tracing {
    spans: Option<(Tracer, Queue)>,
    sampler: Sampler,
    shared_rpc_span: bool,
}

impl Tracing {
    pub fn new(queue: Option<Queue>, sampler: Sampler, shared_rpc_span: bool) -> Self {
        Tracing {
            // We decide sampling ourselves before starting a span, so the tracer keeps all.
            spans: queue.map(|queue| {
                (
                    Tracer::with_sender(AllSampler, queue.sender().clone()),
                    queue,
                )
            }),
            sampler,
            shared_rpc_span,
        }
    }

    /// The server span for what came in. The shared span model is B3's (Zipkin's): a W3C
    /// caller's parent id is always the parent of a new span.
    pub fn plan(&self, incoming: &Incoming) -> SpanPlan {
        plan_server_span(
            &incoming.context,
            self.shared_rpc_span && incoming.format == Some(Format::B3),
            |id| self.sampler.sample(id),
            random_id,
        )
    }

    /// Starts the span of `plan`, or an inactive one when the trace is not sampled or the
    /// reporter's queue is full (counted there). `tags` is only called for a real span, so an
    /// unsampled request builds none.
    ///
    /// rustracing sorts the start tags by name (it reverses them, sorts them stably and drops
    /// repeated names). Given in descending name order, the reversed tags are sorted already
    /// and the sort only compares neighbours: callers give their tags so. (The sampler's,
    /// added here when this hop decided, are moved into place.)
    pub fn start<I: IntoIterator<Item = Tag>>(
        &self,
        plan: &SpanPlan,
        operation: impl Into<std::borrow::Cow<'static, str>>,
        start_time: SystemTime,
        tags: impl FnOnce() -> I,
    ) -> TracedSpan {
        let Some((tracer, queue)) = &self.spans else {
            return TracedSpan::inactive();
        };
        if !plan.sampling.is_sampled() {
            return TracedSpan::inactive();
        }
        let flags = match plan.sampling {
            Sampling::Debug => FLAG_SAMPLED | FLAG_DEBUG,
            _ => FLAG_SAMPLED,
        };
        let Some(state) = jaeger_context(plan.trace_id, plan.span_id, flags) else {
            return TracedSpan::inactive();
        };
        let Some(slot) = queue.try_admit() else {
            return TracedSpan::inactive();
        };
        let mut options = tracer.span(operation).start_time(start_time);
        // The parent must be marked sampled: the Jaeger encoding (ours, as rustracing_jaeger's
        // conversion) leaves out references to unsampled contexts.
        if let Some(parent) = plan
            .parent_id
            .and_then(|p| jaeger_context(plan.trace_id, p, flags))
        {
            options = options.child_of(&parent);
        }
        let mut server = false;
        for tag in tags() {
            server |= tag.name() == "span.kind"
                && matches!(tag.value(), TagValue::String(kind) if kind == "server");
            options = options.tag(tag);
        }
        if plan.decided_here {
            for tag in self.sampler.tags() {
                options = options.tag(tag);
            }
        }
        TracedSpan {
            span: options.start_with_state(state.state().clone()),
            server,
            _slot: Some(slot),
        }
    }
}

/// A span started by `Tracing::start`: a rustracing span (all its API through `Deref`) that
/// holds its queue slot until it is finished. Dropped while its thread panics, it is marked
/// failed, a server span with the 500 tiny_http then answers, so no span ends without a status.
#[derive(Debug)]
pub struct TracedSpan {
    span: Span,
    server: bool,
    /// Declared after `span`: given back once the span is in the channel.
    _slot: Option<Slot>,
}

impl TracedSpan {
    fn inactive() -> TracedSpan {
        TracedSpan {
            span: Span::inactive(),
            server: false,
            _slot: None,
        }
    }
}

impl Deref for TracedSpan {
    type Target = Span;
    fn deref(&self) -> &Span {
        &self.span
    }
}

impl DerefMut for TracedSpan {
    fn deref_mut(&mut self) -> &mut Span {
        &mut self.span
    }
}

impl Drop for TracedSpan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if self.server {
                self.span.set_tag(|| Tag::new("http.status_code", 500_i64));
            }
            self.span.error_log(|log| {
                log.kind("panic").message("the request handler panicked");
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: TraceId = TraceId {
        high: 0x80f198ee56343ba8,
        low: 0x64fe8b2a57d3eff7,
    };

    fn incoming(ids: Option<(u64, Option<u64>)>, sampling: Sampling) -> Context {
        Context {
            ids: ids.map(|(span_id, parent_id)| SpanIds {
                trace_id: TRACE,
                span_id,
                parent_id,
            }),
            sampling,
        }
    }

    /// Ids handed out in order, so plans are predictable.
    fn counter() -> impl FnMut() -> u64 {
        let mut next = 100;
        move || {
            next += 1;
            next
        }
    }

    #[test]
    fn plans() {
        struct Case {
            name: &'static str,
            incoming: Context,
            shared: bool,
            sampler_says: bool,
            want: SpanPlan,
        }
        let plan = |trace_id, span_id, parent_id, sampling, decided_here| SpanPlan {
            trace_id,
            span_id,
            parent_id,
            sampling,
            decided_here,
        };
        let new_trace = TraceId {
            high: 101,
            low: 102,
        };
        let cases = [
            Case {
                name: "child of the sidecar's span, caller's decision kept",
                incoming: incoming(Some((7, Some(3))), Sampling::Accept),
                shared: false,
                sampler_says: false,
                want: plan(TRACE, 101, Some(7), Sampling::Accept, false),
            },
            Case {
                name: "shared rpc span reuses the caller's span and its parent",
                incoming: incoming(Some((7, Some(3))), Sampling::Accept),
                shared: true,
                sampler_says: false,
                want: plan(TRACE, 7, Some(3), Sampling::Accept, false),
            },
            Case {
                name: "shared rpc span on a root caller span has no parent",
                incoming: incoming(Some((7, None)), Sampling::Debug),
                shared: true,
                sampler_says: false,
                want: plan(TRACE, 7, None, Sampling::Debug, false),
            },
            Case {
                name: "deny is obeyed even if the sampler would say yes",
                incoming: incoming(Some((7, None)), Sampling::Deny),
                shared: false,
                sampler_says: true,
                want: plan(TRACE, 101, Some(7), Sampling::Deny, false),
            },
            Case {
                name: "deferred ids: the sampler decides",
                incoming: incoming(Some((7, None)), Sampling::Defer),
                shared: false,
                sampler_says: true,
                want: plan(TRACE, 101, Some(7), Sampling::Accept, true),
            },
            Case {
                name: "deferred ids, sampler says no",
                incoming: incoming(Some((7, None)), Sampling::Defer),
                shared: false,
                sampler_says: false,
                want: plan(TRACE, 101, Some(7), Sampling::Deny, true),
            },
            Case {
                name: "no headers: a new 128-bit root trace",
                incoming: Context::default(),
                shared: false,
                sampler_says: true,
                want: plan(new_trace, 103, None, Sampling::Accept, true),
            },
            Case {
                name: "bare debug state: new ids, debug kept",
                incoming: incoming(None, Sampling::Debug),
                shared: true,
                sampler_says: false,
                want: plan(new_trace, 103, None, Sampling::Debug, false),
            },
        ];
        for c in cases {
            let got = plan_server_span(&c.incoming, c.shared, |_| c.sampler_says, counter());
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn a_child_propagates_the_trace_and_the_decision() {
        for sampling in [Sampling::Accept, Sampling::Deny, Sampling::Debug] {
            let server = SpanPlan {
                trace_id: TRACE,
                span_id: 7,
                parent_id: Some(3),
                sampling,
                decided_here: true,
            };
            let client = server.child(9);
            assert_eq!(
                client.context(),
                Context {
                    ids: Some(SpanIds {
                        trace_id: TRACE,
                        span_id: 9,
                        parent_id: Some(7),
                    }),
                    sampling,
                }
            );
            assert!(!client.decided_here);
        }
    }

    #[test]
    fn probabilistic_sampler_follows_the_trace_id() {
        let half = Sampler::new(SamplerConfig::Probabilistic(0.5));
        let id = |low| TraceId { high: 1, low };
        assert!(half.sample(id(0)));
        assert!(half.sample(id(0x3fff_ffff_ffff_fffe)));
        assert!(!half.sample(id(0x4000_0000_0000_0001)));
        // The top bit is ignored, as in jaeger-client-go.
        assert!(half.sample(id(0x8000_0000_0000_0001)));
        assert!(!Sampler::new(SamplerConfig::Probabilistic(0.0)).sample(id(0)));
        assert!(Sampler::new(SamplerConfig::Probabilistic(1.0)).sample(id(u64::MAX - 1)));
    }

    #[test]
    fn rate_limiting_sampler_spends_its_bucket() {
        let s = Sampler::new(SamplerConfig::RateLimiting(2.0));
        let id = TraceId { high: 0, low: 1 };
        // A full bucket of 2, then (within microseconds) nothing more.
        assert!(s.sample(id));
        assert!(s.sample(id));
        assert!(!s.sample(id));
        let none = Sampler::new(SamplerConfig::RateLimiting(0.0));
        // max(rate, 1) = one trace at start, then none.
        assert!(none.sample(id));
        assert!(!none.sample(id));
    }

    #[test]
    fn jaeger_context_keeps_exact_ids_and_flags() {
        for flags in [0, FLAG_SAMPLED, FLAG_SAMPLED | FLAG_DEBUG] {
            let c = jaeger_context(TRACE, 0xe457b5a2e4d86bd1, flags).unwrap();
            let s = c.state();
            assert_eq!(s.trace_id().high, TRACE.high);
            assert_eq!(s.trace_id().low, TRACE.low);
            assert_eq!(s.span_id(), 0xe457b5a2e4d86bd1);
            assert_eq!(s.flags(), flags);
            assert_eq!(s.debug_id(), None);
        }
    }
}

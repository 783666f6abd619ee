//! The span reporter: one thread drains the span channel, encodes each span once
//! (`jaeger_thrift`) and sends Jaeger Thrift compact `emitBatch` datagrams over UDP to the agent.
//! Here: the channel and its admission, and the thread's start. Its parts, each tested alone
//! (as jaeger-client-go splits reporter, sender and transport): `drain` (the thread's loop:
//! take, flush on size and on time, count), `batch` (the next datagram's spans, by exact
//! size), `agent` (resolution, the connected socket, refusals) and `stats` (the counters, and
//! the one list of them the shutdown line and `/metrics` are written from).
//!
//! Accounting is exact, whatever API starts a span. rustracing's `Span::drop` uses `try_send`
//! and silently forgets a span the channel refuses, so the channel is unbounded and never
//! refuses one; the bound is admission: `Queue::try_admit` starts a span only while the spans
//! in flight (each owns a `Slot`, given back when it is dropped, exactly once) plus the spans
//! waiting in the channel are under the capacity. A span started otherwise (rustracing's
//! `span.child(…)`) holds no slot but is counted in the channel like any other, so it can
//! neither leak nor free a slot. Every sampled span ends in exactly one counter:
//! `received = sent + dropped(send_error, agent_unresolved, too_large) + in the reporter`,
//! and `admitted + queue_full` spans were started by `Tracing::start`.
//!
//! The socket is connected to the agent, so that Linux reports an ICMP "port unreachable"
//! (nothing listens on the agent's port) to us: it arrives after a datagram has left, and
//! the next send finds it. Those spans stay `sent` (counters only grow) and are also counted
//! `refused`. A lower bound: the socket holds one pending error however many arrive between
//! two sends, a remote host rate-limits its ICMP, and the last datagram before shutdown or
//! before a new agent address is never checked.

mod agent;
mod batch;
mod drain;
mod stats;

pub use stats::Stats;
pub(crate) use stats::{Metric, SERIES};

use agent::{Agent, Process};
use batch::Batch;
use crossbeam_channel::Receiver;
use drain::Drain;
use rustracing_jaeger::span::{FinishedSpan, SpanSender};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Jaeger agent's default maximum UDP packet size (`--processor.jaeger-compact.server-max-packet-size`).
pub const MAX_PACKET_BYTES: usize = 65_000;

/// The span channel: its admission side, for whoever starts spans, and the reporter's side.
pub fn channel(stats: Arc<Stats>, capacity: usize) -> (Queue, Spans) {
    let (sender, receiver) = crossbeam_channel::unbounded();
    (
        Queue {
            stats,
            capacity,
            sender,
        },
        Spans { receiver, capacity },
    )
}

/// The admission side of the span channel.
#[derive(Clone, Debug)]
pub struct Queue {
    stats: Arc<Stats>,
    capacity: usize,
    sender: SpanSender,
}

impl Queue {
    /// The channel finished spans go into.
    pub(crate) fn sender(&self) -> &SpanSender {
        &self.sender
    }

    /// A slot for one span while fewer than `capacity` spans are in flight or queued, or
    /// `None`, counted dropped. Never blocks.
    pub(crate) fn try_admit(&self) -> Option<Slot> {
        let queued = self.sender.len();
        let admitted = self
            .stats
            .in_flight
            .fetch_update(Relaxed, Relaxed, |n| {
                (n.saturating_add(queued) < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.stats.admitted.fetch_add(1, Relaxed);
            Some(Slot(self.stats.clone()))
        } else {
            self.stats.dropped_queue_full.fetch_add(1, Relaxed);
            None
        }
    }
}

/// A started span's place in the queue. Dropping it gives the place back, once; drop it
/// after the span, which is then in the channel and counted there.
#[derive(Debug)]
pub struct Slot(Arc<Stats>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The reporter's side of the span channel.
pub struct Spans {
    receiver: Receiver<FinishedSpan>,
    capacity: usize,
}

/// Settings of the reporter thread.
#[derive(Clone, Debug)]
pub struct Settings {
    pub service_name: String,
    pub tags: Vec<(String, String)>,
    pub agent_host: String,
    pub agent_port: u16,
    pub flush_interval: Duration,
    pub log_spans: bool,
    pub max_packet: usize,
}

/// Starts the reporter thread. It ends when every span sender is gone (the tracer dropped),
/// after sending what it holds.
pub fn spawn(
    settings: Settings,
    spans: Spans,
    stats: Arc<Stats>,
) -> std::io::Result<JoinHandle<()>> {
    let process = Process {
        service_name: settings.service_name,
        tags: settings.tags,
        hostname: agent::hostname(),
    };
    let batch = Batch::new(settings.max_packet, process.longest_head());
    let agent = Agent::new(settings.agent_host, settings.agent_port, process);
    let flush = settings.flush_interval;
    let drain = Drain::new(
        agent,
        batch,
        stats,
        flush,
        settings.log_spans,
        Instant::now(),
    );
    std::thread::Builder::new()
        .name("span-reporter".into())
        .spawn(move || drain::run(drain, spans.receiver, spans.capacity))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::propagation::{Incoming, Sampling};
    use crate::trace::{Sampler, Tracing};
    use std::net::UdpSocket;
    use std::time::SystemTime;

    #[test]
    fn queue_admits_up_to_capacity_and_counts_the_rest() {
        let stats = Arc::new(Stats::default());
        let (q, _spans) = channel(stats.clone(), 3);
        let mut slots: Vec<Option<Slot>> = (0..5).map(|_| q.try_admit()).collect();
        let admitted: Vec<bool> = slots.iter().map(Option::is_some).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert_eq!(stats.admitted.load(Relaxed), 3);
        assert_eq!(stats.dropped_queue_full.load(Relaxed), 2);
        assert_eq!(stats.in_flight.load(Relaxed), 3);
        slots.truncate(2);
        assert!(q.try_admit().is_some(), "a dropped slot is given back");
        assert_eq!(stats.in_flight.load(Relaxed), 2);
        drop(slots);
        assert_eq!(stats.in_flight.load(Relaxed), 0);
        assert_eq!(stats.admitted.load(Relaxed), 4, "counters only grow");
    }

    fn tracing(capacity: usize) -> (Arc<Stats>, Tracing, Spans) {
        let stats = Arc::new(Stats::default());
        let (queue, spans) = channel(stats.clone(), capacity);
        let tracing = Tracing::new(
            Some(queue),
            Sampler::new(crate::config::SamplerConfig::Const(true)),
            false,
        );
        (stats, tracing, spans)
    }

    /// Starts (and finishes) `n` server spans; how many were real.
    fn start(tracing: &Tracing, n: usize) -> usize {
        let plan = tracing.plan(&Incoming::default());
        assert_eq!(plan.sampling, Sampling::Accept);
        let spans: Vec<_> = (0..n)
            .map(|_| tracing.start(&plan, "GET /", SystemTime::now(), Vec::new))
            .collect();
        spans.iter().filter(|s| s.is_sampled()).count()
    }

    #[test]
    fn queued_spans_count_against_the_capacity() {
        let (stats, tracing, spans) = tracing(3);
        assert_eq!(start(&tracing, 3), 3);
        // Finished, waiting in the channel: still holding the queue.
        assert_eq!(stats.in_flight.load(Relaxed), 0);
        assert_eq!(start(&tracing, 1), 0);
        assert_eq!(stats.dropped_queue_full.load(Relaxed), 1);
        spans.receiver.try_recv().unwrap();
        assert_eq!(start(&tracing, 1), 1);
    }

    /// rustracing's own `span.child(…)` (and `follower`) start spans that hold no slot: they
    /// must neither free another span's slot nor leak one, and still be sent and counted.
    #[test]
    fn spans_started_through_rustracings_api_cannot_upset_the_queue() {
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (stats, tracing, spans) = tracing(2);
        let settings = Settings {
            service_name: "test".into(),
            tags: Vec::new(),
            agent_host: "127.0.0.1".into(),
            agent_port: agent.local_addr().unwrap().port(),
            flush_interval: Duration::from_millis(10),
            log_spans: false,
            max_packet: MAX_PACKET_BYTES,
        };
        let reporter = spawn(settings, spans, stats.clone()).unwrap();
        let plan = tracing.plan(&Incoming::default());
        let received = |n: u64| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while stats.received.load(Relaxed) < n {
                assert!(Instant::now() < deadline, "{}", stats.summary());
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        for round in 0..3u64 {
            let parent = tracing.start(&plan, "GET /", SystemTime::now(), Vec::new);
            let child = parent.child("child", |options| options.start());
            let follower = child.follower("follower", |options| options.start());
            let sampled = [
                parent.is_sampled(),
                child.is_sampled(),
                follower.is_sampled(),
            ];
            assert_eq!(sampled, [true; 3], "round {round}: {}", stats.summary());
            drop((follower, child, parent));
            received(5 * round + 3);
            // Every slot is free again: the whole capacity can be admitted.
            assert_eq!(stats.in_flight.load(Relaxed), 0, "{}", stats.summary());
            assert_eq!(stats.queued.load(Relaxed), 0, "{}", stats.summary());
            assert_eq!(start(&tracing, 2), 2, "{}", stats.summary());
            received(5 * round + 5);
        }
        assert_eq!(
            stats.dropped_queue_full.load(Relaxed),
            0,
            "{}",
            stats.summary()
        );
        drop(tracing);
        reporter.join().unwrap();
        // 3 rounds of a parent, a child, a follower, and the 2 spans of each check.
        assert_eq!(stats.received.load(Relaxed), 15, "{}", stats.summary());
        assert_eq!(stats.sent.load(Relaxed), 15, "{}", stats.summary());
    }

    /// A handler panic unwinds through the request's spans: they still end, marked failed,
    /// the server span with the 500 tiny_http answers; a span ended normally is not marked.
    #[test]
    fn a_span_dropped_by_a_panic_ends_failed_with_a_status() {
        use rustracing::tag::{Tag, TagValue};
        let (stats, tracing, spans) = tracing(4);
        let plan = tracing.plan(&Incoming::default());
        let now = SystemTime::now();
        let kind = |kind: &'static str| move || [Tag::new("span.kind", kind)];
        drop(tracing.start(&plan, "GET /fine", now, kind("server")));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _server = tracing.start(&plan, "GET /", now, kind("server"));
            let _client = tracing.start(&plan.child(7), "GET /x", now, kind("client"));
            panic!("a handler bug");
        }));
        assert!(caught.is_err());
        assert_eq!(stats.in_flight.load(Relaxed), 0, "slots given back");
        let finished: Vec<FinishedSpan> = spans.receiver.try_iter().collect();
        let tag = |span: &FinishedSpan, name: &str| {
            span.tags()
                .iter()
                .find(|t| t.name() == name)
                .map(|t| t.value().clone())
        };
        let summary: Vec<_> = finished
            .iter()
            .map(|s| {
                (
                    s.operation_name().to_owned(),
                    tag(s, "error"),
                    tag(s, "http.status_code"),
                    s.logs().len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("GET /fine".into(), None, None, 0),
                ("GET /x".into(), Some(TagValue::Boolean(true)), None, 1),
                (
                    "GET /".into(),
                    Some(TagValue::Boolean(true)),
                    Some(TagValue::Integer(500)),
                    1
                ),
            ]
        );
    }
}

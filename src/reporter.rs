//! The span reporter: one thread drains the bounded span channel and sends Jaeger Thrift
//! compact `emitBatch` datagrams over UDP with `JaegerCompactReporter`.
//!
//! Accounting is exact. rustracing's `Span::drop` uses `try_send` and silently forgets a span
//! when the channel is full, so a span is admitted *before* it starts: `Queue::try_admit`
//! reserves a channel slot (a span in flight or queued holds one), and the reporter frees it
//! when it takes the span. With at most `capacity` reservations the channel never refuses a
//! span, and every sampled span ends in exactly one counter:
//! `admitted = sent + dropped(send_error, agent_unresolved, too_large) + in the reporter`.

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rustracing::tag::{Tag, TagValue};
use rustracing_jaeger::reporter::JaegerCompactReporter;
use rustracing_jaeger::span::FinishedSpan;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Jaeger agent's default maximum UDP packet size (`--processor.jaeger-compact.server-max-packet-size`).
pub const MAX_PACKET_BYTES: usize = 65_000;

/// Counters shared by the workers and the reporter. Plain relaxed atomics: each is an
/// independent count, read for logs and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Spans admitted into the queue (each is later sent or dropped below).
    pub admitted: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub sent: AtomicU64,
    pub dropped_send_error: AtomicU64,
    pub dropped_agent_unresolved: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub datagrams: AtomicU64,
    /// Upper bound of the bytes sent (see `span_size_bound`): the encoder does not report
    /// the length of what it sends.
    pub bytes_bound: AtomicU64,
    pub send_errors: AtomicU64,
    /// Reserved slots: spans in flight in a worker or waiting in the channel.
    pub reserved: AtomicUsize,
}

impl Stats {
    /// One line with every counter, for the shutdown log and for tests.
    pub fn summary(&self) -> String {
        format!(
            "spans admitted={} sent={} dropped: queue_full={} send_error={} agent_unresolved={} too_large={}; datagrams={} bytes_bound={} send_errors={}",
            self.admitted.load(Relaxed),
            self.sent.load(Relaxed),
            self.dropped_queue_full.load(Relaxed),
            self.dropped_send_error.load(Relaxed),
            self.dropped_agent_unresolved.load(Relaxed),
            self.dropped_too_large.load(Relaxed),
            self.datagrams.load(Relaxed),
            self.bytes_bound.load(Relaxed),
            self.send_errors.load(Relaxed),
        )
    }
}

/// The admission side of the span channel, held by whoever starts spans.
#[derive(Clone, Debug)]
pub struct Queue {
    stats: Arc<Stats>,
    capacity: usize,
}

impl Queue {
    /// `capacity` must be the capacity of the span channel.
    pub fn new(stats: Arc<Stats>, capacity: usize) -> Self {
        Queue { stats, capacity }
    }

    /// Reserves a slot for one span, or counts it dropped. Never blocks.
    pub fn try_admit(&self) -> bool {
        let admitted = self
            .stats
            .reserved
            .fetch_update(Relaxed, Relaxed, |n| (n < self.capacity).then_some(n + 1))
            .is_ok();
        if admitted {
            self.stats.admitted.fetch_add(1, Relaxed);
        } else {
            self.stats.dropped_queue_full.fetch_add(1, Relaxed);
        }
        admitted
    }

    /// Gives back a slot that was admitted but never became a span.
    pub fn release_unused(&self) {
        self.stats.reserved.fetch_sub(1, Relaxed);
        self.stats.admitted.fetch_sub(1, Relaxed);
    }
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
    spans: Receiver<FinishedSpan>,
    stats: Arc<Stats>,
) -> std::io::Result<JoinHandle<()>> {
    let mut sender = JaegerCompactReporter::new(&settings.service_name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for (key, value) in &settings.tags {
        sender.add_service_tag(Tag::new(key.clone(), value.clone()));
    }
    let budget = settings
        .max_packet
        .saturating_sub(batch_overhead_bound(&settings.service_name, &settings.tags));
    let mut reporter = Reporter {
        agent: Agent::new(settings.agent_host.clone(), settings.agent_port),
        sender,
        bound_family_v6: None,
        batch: Vec::new(),
        batch_bytes: 0,
        budget,
        capacity: spans.capacity().unwrap_or(usize::MAX),
        stats,
        settings,
        errors: RateLimitedLog::new(Duration::from_secs(10)),
    };
    std::thread::Builder::new()
        .name("span-reporter".into())
        .spawn(move || reporter.run(spans))
}

struct Reporter {
    settings: Settings,
    agent: Agent,
    sender: JaegerCompactReporter,
    /// Address family the UDP socket is bound to; `None` until the first send.
    bound_family_v6: Option<bool>,
    batch: Vec<FinishedSpan>,
    /// Upper bound of the encoded size of `batch`'s spans.
    batch_bytes: usize,
    /// What the spans of one datagram may take.
    budget: usize,
    /// The span channel's capacity.
    capacity: usize,
    stats: Arc<Stats>,
    errors: RateLimitedLog,
}

impl Reporter {
    /// Idle, the thread blocks until a span arrives. Busy, it drains the channel every
    /// `POLL` instead: a blocked receiver costs every sender a wake-up (a futex call and a
    /// context switch per span), a polling one costs nothing on the request path.
    fn run(&mut self, spans: Receiver<FinishedSpan>) {
        const POLL: Duration = Duration::from_millis(2);
        const IDLE_POLLS: u32 = 50;
        let mut next_flush = Instant::now() + self.settings.flush_interval;
        loop {
            match spans.recv_deadline(next_flush) {
                Ok(span) => self.take(span),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.stop(),
            }
            let mut empty_polls = 0;
            while empty_polls < IDLE_POLLS {
                if Instant::now() >= next_flush {
                    self.flush();
                    next_flush = Instant::now() + self.settings.flush_interval;
                }
                let mut taken = 0;
                loop {
                    match spans.try_recv() {
                        Ok(span) => {
                            self.take(span);
                            taken += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return self.stop(),
                    }
                }
                empty_polls = if taken == 0 { empty_polls + 1 } else { 0 };
                // A small queue that was half full cannot wait a whole poll.
                if taken * 2 < self.capacity {
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    fn take(&mut self, span: FinishedSpan) {
        self.stats.reserved.fetch_sub(1, Relaxed);
        self.add(span);
    }

    fn stop(&mut self) {
        self.flush();
        log::info!("span reporter stopped: {}", self.stats.summary());
    }

    fn add(&mut self, span: FinishedSpan) {
        if self.settings.log_spans {
            log_span(&span);
        }
        let size = span_size_bound(&span);
        if size > self.budget {
            self.stats.dropped_too_large.fetch_add(1, Relaxed);
            self.errors.warn(format_args!(
                "dropping span {:?}: {size} bytes encoded is more than a datagram holds",
                span.operation_name()
            ));
            return;
        }
        if self.batch_bytes + size > self.budget {
            self.flush();
        }
        self.batch_bytes += size;
        self.batch.push(span);
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let n = self.batch.len() as u64;
        match self.agent.addr() {
            Err(e) => {
                self.stats.dropped_agent_unresolved.fetch_add(n, Relaxed);
                self.errors.warn(format_args!(
                    "dropping {n} spans: Jaeger agent {}:{} does not resolve: {e}",
                    self.settings.agent_host, self.settings.agent_port
                ));
            }
            Ok(addr) => match self.send(addr) {
                Ok(()) => {
                    self.stats.sent.fetch_add(n, Relaxed);
                    self.stats.datagrams.fetch_add(1, Relaxed);
                    self.stats
                        .bytes_bound
                        .fetch_add(self.batch_bytes as u64, Relaxed);
                }
                Err(e) => {
                    self.stats.dropped_send_error.fetch_add(n, Relaxed);
                    self.stats.send_errors.fetch_add(1, Relaxed);
                    self.errors.warn(format_args!(
                        "dropping {n} spans: sending to Jaeger agent {addr} failed: {e}"
                    ));
                }
            },
        }
        self.batch.clear();
        self.batch_bytes = 0;
    }

    fn send(&mut self, addr: SocketAddr) -> Result<(), String> {
        // JaegerCompactReporter binds 127.0.0.1:0, which cannot reach a non-loopback agent:
        // bind the wildcard address of the agent's family instead.
        if self.bound_family_v6 != Some(addr.is_ipv6()) {
            let any: SocketAddr = if addr.is_ipv6() {
                "[::]:0".parse().expect("literal")
            } else {
                "0.0.0.0:0".parse().expect("literal")
            };
            self.sender
                .set_reporter_addr(any)
                .map_err(|e| format!("binding a UDP socket to {any}: {e}"))?;
            self.bound_family_v6 = Some(addr.is_ipv6());
        }
        self.sender.set_agent_addr(addr);
        self.sender.report(&self.batch).map_err(|e| e.to_string())
    }
}

/// The agent's address, resolved when first needed and again every 30 s (a Service or pod IP
/// may change), and retried at most once a second while it does not resolve.
struct Agent {
    host: String,
    port: u16,
    addr: Option<SocketAddr>,
    next_resolve: Instant,
}

impl Agent {
    fn new(host: String, port: u16) -> Self {
        Agent {
            host,
            port,
            addr: None,
            next_resolve: Instant::now(),
        }
    }

    fn addr(&mut self) -> Result<SocketAddr, String> {
        let now = Instant::now();
        if now >= self.next_resolve {
            match (self.host.as_str(), self.port).to_socket_addrs() {
                Ok(mut addrs) => match addrs.next() {
                    Some(addr) => {
                        self.addr = Some(addr);
                        self.next_resolve = now + Duration::from_secs(30);
                    }
                    None => self.next_resolve = now + Duration::from_secs(1),
                },
                // Keep a previously good address: a resolver hiccup should not drop spans.
                Err(e) if self.addr.is_none() => {
                    self.next_resolve = now + Duration::from_secs(1);
                    return Err(e.to_string());
                }
                Err(_) => self.next_resolve = now + Duration::from_secs(1),
            }
        }
        self.addr.ok_or_else(|| "no address".to_owned())
    }
}

/// Logs a warning at most once per period, with the number of warnings held back.
struct RateLimitedLog {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new(period: Duration) -> Self {
        RateLimitedLog {
            period,
            last: None,
            suppressed: 0,
        }
    }

    fn warn(&mut self, message: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.period) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!(
                "{message} ({} similar warnings suppressed)",
                self.suppressed
            );
        } else {
            log::warn!("{message}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}

fn log_span(span: &FinishedSpan) {
    let state = span.context().state();
    let parent = span
        .references()
        .first()
        .map(|r| r.span().span_id())
        .unwrap_or(0);
    let duration = span
        .finish_time()
        .duration_since(span.start_time())
        .unwrap_or_default();
    log::info!(
        target: "span",
        "trace_id={} span_id={:016x} parent_id={:016x} flags={} operation={:?} duration_us={}",
        crate::b3::format_trace_id(crate::b3::TraceId {
            high: state.trace_id().high,
            low: state.trace_id().low,
        }),
        state.span_id(),
        parent,
        state.flags(),
        span.operation_name(),
        duration.as_micros(),
    );
}

// Upper bounds of Thrift compact encodings (jaeger.thrift), in bytes. A field header is one
// byte when the id delta is under 16, else a byte and a zigzag i16 varint; an i64 varint is at
// most 10 bytes, an i32 at most 5, a length (u32 varint) at most 5; a list header at most 6.
const FIELD: usize = 3;
const I64: usize = FIELD + 10;
const I32: usize = FIELD + 5;
const LIST: usize = FIELD + 6;
const STOP: usize = 1;

fn string_bound(len: usize) -> usize {
    FIELD + 5 + len
}

fn tag_bound(key: &str, value: &TagValue) -> usize {
    let value = match value {
        TagValue::String(s) => string_bound(s.len()),
        TagValue::Boolean(_) => FIELD + 1,
        TagValue::Integer(_) => I64,
        TagValue::Float(_) => FIELD + 8,
    };
    string_bound(key.len()) + I32 + value + STOP
}

/// An upper bound of the compact encoding of `span` as a jaeger.thrift `Span`, cheap enough
/// for every span (the encoder is only run once, when the batch is sent).
pub fn span_size_bound(span: &FinishedSpan) -> usize {
    let span_ref = I32 + 3 * I64 + STOP;
    let tags: usize = span
        .tags()
        .iter()
        .map(|t| tag_bound(t.name(), t.value()))
        .sum();
    let logs: usize = span
        .logs()
        .iter()
        .map(|log| {
            let fields: usize = log
                .fields()
                .iter()
                .map(|f| string_bound(f.name().len()) + I32 + string_bound(f.value().len()) + STOP)
                .sum();
            I64 + LIST + fields + STOP
        })
        .sum();
    let debug_tag = span.context().state().debug_id().map_or(0, |id| {
        string_bound("jaeger-debug-id".len()) + I32 + string_bound(id.len()) + STOP
    });
    4 * I64                                    // trace id low/high, span id, parent id
        + string_bound(span.operation_name().len())
        + LIST + span.references().len() * span_ref
        + I32                                  // flags
        + 2 * I64                              // start time, duration
        + LIST + tags + debug_tag
        + LIST + logs
        + STOP
}

/// An upper bound of everything in a datagram but the spans: the message header, the
/// `emitBatch` argument struct, the process, the span list header. rustracing_jaeger adds the
/// `jaeger.version`, `hostname` and `ip` process tags itself; their values are bounded by
/// generous maximum lengths rather than copied.
pub fn batch_overhead_bound(service_name: &str, tags: &[(String, String)]) -> usize {
    let message_header = 2 + 5 + string_bound("emitBatch".len());
    let client_tags = [("jaeger.version", 64), ("hostname", 255), ("ip", 45)]
        .iter()
        .map(|(key, value_len)| string_bound(key.len()) + I32 + string_bound(*value_len) + STOP)
        .sum::<usize>();
    let process_tags: usize = tags
        .iter()
        .map(|(k, v)| string_bound(k.len()) + I32 + string_bound(v.len()) + STOP)
        .sum();
    let process =
        FIELD + string_bound(service_name.len()) + LIST + client_tags + process_tags + STOP;
    message_header + FIELD /* args.batch */ + process + LIST /* spans */ + STOP + STOP
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustracing::sampler::AllSampler;
    use rustracing_jaeger::Tracer;
    use rustracing_jaeger::thrift::{agent, jaeger};
    use thrift_codec::CompactEncode;
    use thrift_codec::data::Struct;
    use thrift_codec::message::Message;

    fn finished(op: &'static str, tags: Vec<Tag>, logs: usize) -> FinishedSpan {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let tracer = Tracer::with_sender(AllSampler, tx);
        let parent = tracer.span("parent").start();
        let mut options = tracer.span(op).child_of(&parent);
        for t in tags {
            options = options.tag(t);
        }
        let mut span = options.start();
        for i in 0..logs {
            span.log(|l| {
                l.error().kind("io").message(format!("failure number {i}"));
            });
        }
        drop(span);
        drop(parent);
        rx.try_recv().unwrap()
    }

    fn encoded_span_len(span: &FinishedSpan) -> usize {
        let mut buf = Vec::new();
        Struct::from(jaeger::Span::from(span))
            .compact_encode(&mut buf)
            .unwrap();
        buf.len()
    }

    #[test]
    fn span_bound_covers_the_real_encoding() {
        let long = "x".repeat(3000);
        let cases = [
            finished("GET /gettime", vec![], 0),
            finished(
                "GET /gettime",
                vec![
                    Tag::new("span.kind", "server"),
                    Tag::new("component", "tiny_http"),
                    Tag::new("http.method", "GET"),
                    Tag::new("http.url", "/gettime?x=1"),
                    Tag::new("http.status_code", 200i64),
                    Tag::new("peer.ipv4", "127.0.0.1"),
                    Tag::new("peer.port", 54321i64),
                    Tag::new("error", true),
                    Tag::new("sampler.param", 0.5),
                ],
                0,
            ),
            finished("GET", vec![Tag::new("http.url", long.clone())], 3),
        ];
        for span in &cases {
            let actual = encoded_span_len(span);
            let bound = span_size_bound(span);
            assert!(bound >= actual, "bound {bound} < actual {actual}");
            // Loose enough to be safe, tight enough to fill datagrams reasonably.
            assert!(bound <= 2 * actual + 64, "bound {bound} vs actual {actual}");
        }
    }

    #[test]
    fn batch_bound_covers_the_real_datagram() {
        let spans: Vec<FinishedSpan> = (0..40)
            .map(|_| finished("GET /gettime", vec![Tag::new("http.url", "/gettime")], 1))
            .collect();
        let tags = vec![("zone".to_string(), "eu-1".to_string())];
        let process = jaeger::Process {
            service_name: "myhelloworld".into(),
            tags: [
                ("jaeger.version", "rustracing_jaeger-0.10.0"),
                (
                    "hostname",
                    "a-rather-long-host-name-for-a-pod-7f9c6d5b8-x2x2x",
                ),
                ("ip", "10.244.1.17"),
                ("zone", "eu-1"),
            ]
            .iter()
            .map(|(k, v)| jaeger::Tag::String {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        };
        let batch = jaeger::Batch {
            process,
            spans: spans.iter().map(jaeger::Span::from).collect(),
        };
        let mut buf = Vec::new();
        Message::from(agent::EmitBatchNotification { batch })
            .compact_encode(&mut buf)
            .unwrap();
        let bound = batch_overhead_bound("myhelloworld", &tags)
            + spans.iter().map(span_size_bound).sum::<usize>();
        assert!(bound >= buf.len(), "bound {bound} < datagram {}", buf.len());
    }

    #[test]
    fn queue_admits_up_to_capacity_and_counts_the_rest() {
        let stats = Arc::new(Stats::default());
        let q = Queue::new(stats.clone(), 3);
        let results: Vec<bool> = (0..5).map(|_| q.try_admit()).collect();
        assert_eq!(results, [true, true, true, false, false]);
        assert_eq!(stats.admitted.load(Relaxed), 3);
        assert_eq!(stats.dropped_queue_full.load(Relaxed), 2);
        q.release_unused();
        assert!(q.try_admit());
        assert_eq!(stats.admitted.load(Relaxed), 3);
    }

    #[test]
    fn rate_limited_log_holds_back_repeats() {
        let mut log = RateLimitedLog::new(Duration::from_secs(3600));
        log.warn(format_args!("first"));
        log.warn(format_args!("second"));
        log.warn(format_args!("third"));
        assert_eq!(log.suppressed, 2);
    }
}

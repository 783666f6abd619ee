//! The span reporter: one thread drains the span channel, encodes each span once
//! (`jaeger_thrift`) and sends Jaeger Thrift compact `emitBatch` datagrams over UDP to the agent.
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

use crate::jaeger_thrift;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rustracing_jaeger::span::{FinishedSpan, SpanSender};
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
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
    /// Spans admitted by `Queue::try_admit` (each is later sent or dropped below).
    pub admitted: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    /// Spans the reporter took from the channel, however they were started.
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub dropped_send_error: AtomicU64,
    pub dropped_agent_unresolved: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    pub send_errors: AtomicU64,
    /// Spans counted `sent` whose datagram the agent's host then refused (ICMP port
    /// unreachable, noticed at the next send): a lower bound, see the module comment.
    pub refused: AtomicU64,
    /// Spans started and not yet finished: the `Slot`s alive (a gauge).
    pub in_flight: AtomicUsize,
    /// Spans waiting in the channel when the reporter last took one (a gauge).
    pub queued: AtomicUsize,
}

impl Stats {
    /// One line with every counter, for the shutdown log and for tests.
    pub fn summary(&self) -> String {
        format!(
            "spans admitted={} received={} sent={} dropped: queue_full={} send_error={} agent_unresolved={} too_large={}; datagrams={} bytes={} send_errors={} refused={}",
            self.admitted.load(Relaxed),
            self.received.load(Relaxed),
            self.sent.load(Relaxed),
            self.dropped_queue_full.load(Relaxed),
            self.dropped_send_error.load(Relaxed),
            self.dropped_agent_unresolved.load(Relaxed),
            self.dropped_too_large.load(Relaxed),
            self.datagrams.load(Relaxed),
            self.bytes.load(Relaxed),
            self.send_errors.load(Relaxed),
            self.refused.load(Relaxed),
        )
    }
}

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
    pub fn sender(&self) -> &SpanSender {
        &self.sender
    }

    /// A slot for one span while fewer than `capacity` spans are in flight or queued, or
    /// `None`, counted dropped. Never blocks.
    pub fn try_admit(&self) -> Option<Slot> {
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

/// The process tag naming the client: the Jaeger clients write `<name>-<version>` here.
const CLIENT_VERSION: &str = concat!("myhelloworld-", env!("CARGO_PKG_VERSION"));

/// The longest `ip` tag value: an IPv6 address in text, with an embedded IPv4 address.
const MAX_IP_TEXT: usize = 45;

/// Starts the reporter thread. It ends when every span sender is gone (the tracer dropped),
/// after sending what it holds.
pub fn spawn(
    settings: Settings,
    spans: Spans,
    stats: Arc<Stats>,
) -> std::io::Result<JoinHandle<()>> {
    let hostname = hostname();
    // The head depends on the address we send from, known once connected: size batches for
    // the longest one.
    let longest_head = process_head(&settings, &hostname, &"0".repeat(MAX_IP_TEXT)).len();
    let mut reporter = Reporter {
        agent: Agent::new(settings.agent_host.clone(), settings.agent_port),
        socket: None,
        head: Vec::new(),
        hostname,
        budget: settings
            .max_packet
            .saturating_sub(longest_head + jaeger_thrift::TAIL_MAX),
        span: Vec::new(),
        spans: Vec::new(),
        count: 0,
        datagram: Vec::new(),
        last_sent: 0,
        capacity: spans.capacity,
        stats,
        settings,
        errors: RateLimitedLog::new(Duration::from_secs(10)),
        refusals: RateLimitedLog::new(Duration::from_secs(10)),
    };
    std::thread::Builder::new()
        .name("span-reporter".into())
        .spawn(move || reporter.run(spans.receiver))
}

/// The datagram head: the service name and the process tags, as the Jaeger clients send
/// them (client version, hostname, the IP we send from), then `JAEGER_TAGS`.
fn process_head(settings: &Settings, hostname: &str, ip: &str) -> Vec<u8> {
    let mut tags = vec![("jaeger.version", CLIENT_VERSION)];
    if !hostname.is_empty() {
        tags.push(("hostname", hostname));
    }
    tags.push(("ip", ip));
    tags.extend(settings.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    jaeger_thrift::batch_head(&settings.service_name, &tags)
}

/// The host's name (the pod's name in Kubernetes); empty if it cannot be read.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

struct Reporter {
    settings: Settings,
    agent: Agent,
    /// A socket connected to the agent's address, and that address.
    socket: Option<(UdpSocket, SocketAddr)>,
    /// Everything a datagram holds before its spans (`jaeger_thrift::batch_head`).
    head: Vec<u8>,
    hostname: String,
    /// What the spans of one datagram may take.
    budget: usize,
    /// The span being encoded.
    span: Vec<u8>,
    /// The encoded spans of the next datagram, and their count.
    spans: Vec<u8>,
    count: usize,
    datagram: Vec<u8>,
    /// Spans in the last datagram sent: refused, if the next send finds an ICMP error.
    last_sent: u64,
    /// The span queue's capacity.
    capacity: usize,
    stats: Arc<Stats>,
    errors: RateLimitedLog,
    /// Apart, so that a stream of refusals does not hide the other warnings.
    refusals: RateLimitedLog,
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
                Ok(span) => self.take(span, &spans),
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
                            self.take(span, &spans);
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

    /// Encodes the span into the next datagram (the span itself is freed here).
    fn take(&mut self, span: FinishedSpan, spans: &Receiver<FinishedSpan>) {
        self.stats.received.fetch_add(1, Relaxed);
        self.stats.queued.store(spans.len(), Relaxed);
        if self.settings.log_spans {
            log_span(&span);
        }
        self.span.clear();
        jaeger_thrift::encode_span(&mut self.span, &span);
        let size = self.span.len();
        if size > self.budget {
            self.stats.dropped_too_large.fetch_add(1, Relaxed);
            self.errors.warn(format_args!(
                "dropping span {:?}: {size} bytes encoded is more than a datagram holds",
                span.operation_name()
            ));
            return;
        }
        if self.spans.len() + size > self.budget {
            self.flush();
        }
        self.spans.extend_from_slice(&self.span);
        self.count += 1;
    }

    fn stop(&mut self) {
        self.flush();
        log::info!("span reporter stopped: {}", self.stats.summary());
    }

    fn flush(&mut self) {
        if self.count == 0 {
            return;
        }
        let n = self.count as u64;
        match self.send() {
            Ok(bytes) => {
                self.stats.sent.fetch_add(n, Relaxed);
                self.stats.datagrams.fetch_add(1, Relaxed);
                self.stats.bytes.fetch_add(bytes as u64, Relaxed);
                self.last_sent = n;
            }
            Err(Unsent::Unresolved(e)) => {
                self.stats.dropped_agent_unresolved.fetch_add(n, Relaxed);
                self.errors.warn(format_args!(
                    "dropping {n} spans: Jaeger agent {}:{} does not resolve: {e}",
                    self.settings.agent_host, self.settings.agent_port
                ));
            }
            Err(Unsent::Failed(e)) => {
                // A connected socket keeps the source address it got: connect afresh next
                // time, in case the route or the local address changed.
                self.socket = None;
                self.stats.dropped_send_error.fetch_add(n, Relaxed);
                self.stats.send_errors.fetch_add(1, Relaxed);
                self.errors.warn(format_args!(
                    "dropping {n} spans: sending to Jaeger agent {}:{} failed: {e}",
                    self.settings.agent_host, self.settings.agent_port
                ));
            }
        }
        self.spans.clear();
        self.count = 0;
    }

    /// Sends the pending spans as one datagram; returns its length.
    fn send(&mut self) -> Result<usize, Unsent> {
        let addr = self.agent.addr().map_err(Unsent::Unresolved)?;
        if self.socket.as_ref().is_some_and(|(_, to)| *to != addr) {
            self.socket = None;
        }
        let socket = match &mut self.socket {
            Some((socket, _)) => socket,
            slot @ None => {
                self.last_sent = 0;
                let socket = connect(addr).map_err(Unsent::Failed)?;
                let ip = socket.local_addr().map(|a| a.ip().to_string());
                self.head = process_head(&self.settings, &self.hostname, &ip.unwrap_or_default());
                &slot.insert((socket, addr)).0
            }
        };
        // An ICMP error for the last datagram is pending on the socket (Linux sets it for port
        // unreachable), or comes back as this send's own error (then this datagram was not
        // sent either).
        let pending = socket.take_error().ok().flatten();
        jaeger_thrift::datagram(&mut self.datagram, &self.head, self.count, &self.spans);
        let result = socket.send(&self.datagram);
        let refusal = pending.as_ref().or(result
            .as_ref()
            .err()
            .filter(|e| e.kind() == ErrorKind::ConnectionRefused));
        if let Some(e) = refusal {
            let n = std::mem::take(&mut self.last_sent);
            if n > 0 {
                self.stats.refused.fetch_add(n, Relaxed);
                self.refusals.warn(format_args!(
                    "the last {n} spans sent to Jaeger agent {addr} were refused ({e}): is it listening?"
                ));
            }
        }
        result.map_err(|e| Unsent::Failed(e.to_string()))
    }
}

/// Why spans were not sent.
enum Unsent {
    Unresolved(String),
    Failed(String),
}

/// A UDP socket connected to `addr`, bound to the wildcard address of its family (a socket
/// bound to loopback could not reach a remote agent).
fn connect(addr: SocketAddr) -> Result<UdpSocket, String> {
    let any: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).map_err(|e| format!("binding a UDP socket to {any}: {e}"))?;
    socket
        .connect(addr)
        .map_err(|e| format!("connecting a UDP socket to {addr}: {e}"))?;
    Ok(socket)
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
        crate::propagation::TraceId {
            high: state.trace_id().high,
            low: state.trace_id().low,
        },
        state.span_id(),
        parent,
        state.flags(),
        span.operation_name(),
        duration.as_micros(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::propagation::{Incoming, Sampling};
    use crate::trace::{Sampler, Tracing};
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

    #[test]
    fn rate_limited_log_holds_back_repeats() {
        let mut log = RateLimitedLog::new(Duration::from_secs(3600));
        log.warn(format_args!("first"));
        log.warn(format_args!("second"));
        log.warn(format_args!("third"));
        assert_eq!(log.suppressed, 2);
    }
}

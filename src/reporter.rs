//! The span reporter: one thread drains the bounded span channel, encodes each span once
//! (`jaeger_thrift`) and sends Jaeger Thrift compact `emitBatch` datagrams over UDP to the agent.
//!
//! Accounting is exact. rustracing's `Span::drop` uses `try_send` and silently forgets a span
//! when the channel is full, so a span is admitted *before* it starts: `Queue::try_admit`
//! reserves a channel slot (a span in flight or queued holds one), and the reporter frees it
//! when it takes the span. With at most `capacity` reservations the channel never refuses a
//! span, and every sampled span ends in exactly one counter:
//! `admitted = sent + dropped(send_error, agent_unresolved, too_large) + in the reporter`.
//!
//! The socket is connected to the agent, so that Linux reports an ICMP "port unreachable"
//! (nothing listens on the agent's port) to us: it arrives after a datagram has left, and
//! the next send finds it. Those spans stay `sent` (counters only grow) and are also counted
//! `refused`. A lower bound: the socket holds one pending error however many arrive between
//! two sends, a remote host rate-limits its ICMP, and the last datagram before shutdown or
//! before a new agent address is never checked.

use crate::jaeger_thrift;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rustracing_jaeger::span::FinishedSpan;
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
    /// Spans admitted into the queue (each is later sent or dropped below).
    pub admitted: AtomicU64,
    pub dropped_queue_full: AtomicU64,
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
    /// Reserved slots: spans in flight in a worker or waiting in the channel.
    pub reserved: AtomicUsize,
}

impl Stats {
    /// One line with every counter, for the shutdown log and for tests.
    pub fn summary(&self) -> String {
        format!(
            "spans admitted={} sent={} dropped: queue_full={} send_error={} agent_unresolved={} too_large={}; datagrams={} bytes={} send_errors={} refused={}",
            self.admitted.load(Relaxed),
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

/// The process tag naming the client: the Jaeger clients write `<name>-<version>` here.
const CLIENT_VERSION: &str = concat!("myhelloworld-", env!("CARGO_PKG_VERSION"));

/// The longest `ip` tag value: an IPv6 address in text, with an embedded IPv4 address.
const MAX_IP_TEXT: usize = 45;

/// Starts the reporter thread. It ends when every span sender is gone (the tracer dropped),
/// after sending what it holds.
pub fn spawn(
    settings: Settings,
    spans: Receiver<FinishedSpan>,
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
        capacity: spans.capacity().unwrap_or(usize::MAX),
        stats,
        settings,
        errors: RateLimitedLog::new(Duration::from_secs(10)),
        refusals: RateLimitedLog::new(Duration::from_secs(10)),
    };
    std::thread::Builder::new()
        .name("span-reporter".into())
        .spawn(move || reporter.run(spans))
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
    /// The span channel's capacity.
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

    /// Encodes the span into the next datagram (the span itself is freed here).
    fn take(&mut self, span: FinishedSpan) {
        self.stats.reserved.fetch_sub(1, Relaxed);
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

//! The reporter thread's loop: it drains the span channel, encodes each span once into the
//! batch, sends the batch when the next span would not fit and at least every flush
//! interval, and counts every span it took.

use super::batch::Batch;
use super::stats::Stats;
use crate::jaeger_thrift;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rustracing_jaeger::span::FinishedSpan;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Where batches go: the agent (`agent::Agent`), or a test's stand-in.
pub(super) trait Transport {
    fn send(&mut self, batch: &Batch) -> Sent;
}

/// What became of a batch, and of the one sent before it.
pub(super) struct Sent {
    /// The datagram's length, or why its spans were not sent.
    pub(super) result: Result<usize, Unsent>,
    /// The datagram before was refused.
    pub(super) refused: Option<Refused>,
}

impl From<Unsent> for Sent {
    fn from(unsent: Unsent) -> Sent {
        Sent {
            result: Err(unsent),
            refused: None,
        }
    }
}

/// Why spans were not sent, said for a log line.
#[derive(Debug)]
pub(super) enum Unsent {
    Unresolved(String),
    Failed(String),
}

/// The spans of a datagram the agent's host refused.
pub(super) struct Refused {
    pub(super) spans: u64,
    pub(super) addr: SocketAddr,
    pub(super) error: String,
}

pub(super) struct Drain<T> {
    transport: T,
    batch: Batch,
    /// The span being encoded.
    span: Vec<u8>,
    stats: Arc<Stats>,
    log_spans: bool,
    flush_interval: Duration,
    next_flush: Instant,
    errors: RateLimitedLog,
    /// Apart, so that a stream of refusals does not hide the other warnings.
    refusals: RateLimitedLog,
}

impl<T: Transport> Drain<T> {
    /// A drain whose first timed flush is `flush_interval` after `now`.
    pub(super) fn new(
        transport: T,
        batch: Batch,
        stats: Arc<Stats>,
        flush_interval: Duration,
        log_spans: bool,
        now: Instant,
    ) -> Self {
        Drain {
            transport,
            batch,
            span: Vec::new(),
            stats,
            log_spans,
            flush_interval,
            next_flush: now + flush_interval,
            errors: RateLimitedLog::new(Duration::from_secs(10)),
            refusals: RateLimitedLog::new(Duration::from_secs(10)),
        }
    }

    /// Takes a span from the channel, in which `queued` spans still wait, into the batch
    /// (sending the batch first if it would not fit). The span itself is freed here.
    pub(super) fn take(&mut self, span: FinishedSpan, queued: usize) {
        self.stats.received.fetch_add(1, Relaxed);
        self.stats.queued.store(queued, Relaxed);
        if self.log_spans {
            log::info!(target: "span", "{}", SpanLine(&span));
        }
        self.span.clear();
        jaeger_thrift::encode_span(&mut self.span, &span);
        let size = self.span.len();
        if !self.batch.holds(size) {
            self.stats.dropped_too_large.fetch_add(1, Relaxed);
            self.errors.warn(format_args!(
                "dropping span {:?}: {size} bytes encoded is more than a datagram holds",
                span.operation_name()
            ));
            return;
        }
        if !self.batch.fits(size) {
            self.flush();
        }
        self.batch.push(&self.span);
    }

    /// Sends the batch if the flush interval has passed since the last timed flush; returns
    /// when the next one is due.
    pub(super) fn tick(&mut self, now: Instant) -> Instant {
        if now >= self.next_flush {
            self.flush();
            self.next_flush = now + self.flush_interval;
        }
        self.next_flush
    }

    /// Sends what is left, and logs every counter.
    pub(super) fn stop(&mut self) {
        self.flush();
        log::info!("span reporter stopped: {}", self.stats.summary());
    }

    fn flush(&mut self) {
        let n = self.batch.len() as u64;
        if n == 0 {
            return;
        }
        let sent = self.transport.send(&self.batch);
        self.batch.clear();
        let s = &self.stats;
        if let Some(Refused { spans, addr, error }) = sent.refused {
            s.refused.fetch_add(spans, Relaxed);
            self.refusals.warn(format_args!(
                "the last {spans} spans sent to Jaeger agent {addr} were refused ({error}): is it listening?"
            ));
        }
        let why = match sent.result {
            Ok(bytes) => {
                s.sent.fetch_add(n, Relaxed);
                s.datagrams.fetch_add(1, Relaxed);
                s.bytes.fetch_add(bytes as u64, Relaxed);
                return;
            }
            Err(Unsent::Unresolved(why)) => {
                s.dropped_agent_unresolved.fetch_add(n, Relaxed);
                why
            }
            Err(Unsent::Failed(why)) => {
                s.dropped_send_error.fetch_add(n, Relaxed);
                s.send_errors.fetch_add(1, Relaxed);
                why
            }
        };
        self.errors.warn(format_args!("dropping {n} spans: {why}"));
    }
}

/// The reporter thread, until every span sender is gone (then it sends what it holds).
/// Idle, it blocks until a span arrives. Busy, it drains the channel every `POLL` instead: a
/// blocked receiver costs every sender a wake-up (a futex call and a context switch per
/// span), a polling one costs nothing on the request path.
pub(super) fn run<T: Transport>(
    mut drain: Drain<T>,
    spans: Receiver<FinishedSpan>,
    capacity: usize,
) {
    const POLL: Duration = Duration::from_millis(2);
    const IDLE_POLLS: u32 = 50;
    let mut next_flush = drain.tick(Instant::now());
    loop {
        match spans.recv_deadline(next_flush) {
            Ok(span) => drain.take(span, spans.len()),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return drain.stop(),
        }
        let mut empty_polls = 0;
        while empty_polls < IDLE_POLLS {
            next_flush = drain.tick(Instant::now());
            let mut taken = 0;
            loop {
                match spans.try_recv() {
                    Ok(span) => {
                        drain.take(span, spans.len());
                        taken += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return drain.stop(),
                }
            }
            empty_polls = if taken == 0 { empty_polls + 1 } else { 0 };
            // A small queue that was half full cannot wait a whole poll.
            if taken * 2 < capacity {
                std::thread::sleep(POLL);
            }
        }
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

    fn warn(&mut self, message: fmt::Arguments<'_>) {
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

/// A finished span as one log line (`JAEGER_REPORTER_LOG_SPANS`), with the parent the
/// datagram names.
struct SpanLine<'a>(&'a FinishedSpan);

impl fmt::Display for SpanLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = self.0;
        let state = span.context().state();
        let duration = span
            .finish_time()
            .duration_since(span.start_time())
            .unwrap_or_default();
        write!(
            f,
            "trace_id={} span_id={:016x} parent_id={:016x} flags={} operation={:?} duration_us={}",
            crate::propagation::TraceId {
                high: state.trace_id().high,
                low: state.trace_id().low,
            },
            state.span_id(),
            jaeger_thrift::parent_span_id(span),
            state.flags(),
            span.operation_name(),
            duration.as_micros(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustracing::sampler::AllSampler;
    use rustracing_jaeger::Tracer;
    use rustracing_jaeger::span::SpanContext;
    use std::time::UNIX_EPOCH;

    /// A transport that records the number of spans of each batch, and answers `outcome`.
    struct Recorder {
        batches: Vec<usize>,
        outcome: fn() -> Sent,
    }

    impl Transport for Recorder {
        fn send(&mut self, batch: &Batch) -> Sent {
            self.batches.push(batch.len());
            (self.outcome)()
        }
    }

    fn sent_ok() -> Sent {
        Sent {
            result: Ok(100),
            refused: None,
        }
    }

    fn drain(budget: usize, outcome: fn() -> Sent, t0: Instant) -> (Drain<Recorder>, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let recorder = Recorder {
            batches: Vec::new(),
            outcome,
        };
        // No head: the whole packet but the tail is the spans' budget.
        let batch = Batch::new(budget + jaeger_thrift::TAIL_MAX, 0);
        let interval = Duration::from_secs(1);
        let drain = Drain::new(recorder, batch, stats.clone(), interval, false, t0);
        (drain, stats)
    }

    /// `n` finished spans, and the size of each encoded.
    fn spans(n: usize) -> Vec<(FinishedSpan, usize)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let tracer = Tracer::with_sender(AllSampler, tx);
        let epoch = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        for _ in 0..n {
            let mut span = tracer.span("GET /").start_time(epoch).start();
            span.set_finish_time(|| epoch + Duration::from_millis(1));
        }
        rx.try_iter()
            .map(|span| {
                let mut buf = Vec::new();
                jaeger_thrift::encode_span(&mut buf, &span);
                (span, buf.len())
            })
            .collect()
    }

    /// A batch is sent when the next span would not fit: each holds as many spans as fit in
    /// the budget, to the byte.
    #[test]
    fn batches_are_filled_by_exact_size() {
        let spans = spans(10);
        let sizes: Vec<usize> = spans.iter().map(|(_, size)| *size).collect();
        let budget = sizes[..3].iter().sum(); // the first three fill it exactly
        let (mut drain, stats) = drain(budget, sent_ok, Instant::now());
        for (span, _) in spans {
            drain.take(span, 0);
        }
        drain.stop();
        let batches = &drain.transport.batches;
        assert_eq!(batches[0], 3, "{batches:?}");
        let mut rest = &sizes[..];
        for (i, &n) in batches.iter().enumerate() {
            let bytes: usize = rest[..n].iter().sum();
            assert!(bytes <= budget, "batch {i}: {bytes} > {budget}");
            if let Some(next) = rest.get(n) {
                assert!(
                    bytes + next > budget,
                    "batch {i} sent with room for the next span"
                );
            }
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        assert_eq!(stats.received.load(Relaxed), 10);
        assert_eq!(stats.sent.load(Relaxed), 10);
        assert_eq!(stats.datagrams.load(Relaxed), batches.len() as u64);
    }

    #[test]
    fn a_span_no_datagram_holds_is_dropped_and_counted() {
        let mut spans = spans(2);
        let (mut drain, stats) = drain(spans[0].1 - 1, sent_ok, Instant::now());
        drain.take(spans.remove(0).0, 0);
        drain.stop();
        assert!(drain.transport.batches.is_empty());
        assert_eq!(stats.dropped_too_large.load(Relaxed), 1);
    }

    /// The batch goes when the interval has passed since the last timed flush, not before; an
    /// empty one sends nothing.
    #[test]
    fn flushes_on_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut spans = spans(4).into_iter().map(|(span, _)| span);
        let (mut drain, _) = drain(10_000, sent_ok, t0);
        drain.take(spans.next().unwrap(), 0);
        drain.take(spans.next().unwrap(), 0);
        assert_eq!(drain.tick(t0 + ms(999)), t0 + ms(1000));
        assert!(drain.transport.batches.is_empty());
        assert_eq!(drain.tick(t0 + ms(1003)), t0 + ms(2003));
        assert_eq!(drain.transport.batches, [2]);
        // Nothing to send: nothing sent, the next flush is one interval on.
        assert_eq!(drain.tick(t0 + ms(2003)), t0 + ms(3003));
        assert_eq!(drain.transport.batches, [2]);
        drain.take(spans.next().unwrap(), 0);
        assert_eq!(drain.tick(t0 + ms(3002)), t0 + ms(3003));
        assert_eq!(drain.tick(t0 + ms(3003)), t0 + ms(4003));
        assert_eq!(drain.transport.batches, [2, 1]);
    }

    #[test]
    fn every_span_taken_ends_in_one_counter() {
        type Outcome = fn() -> Sent;
        let outcomes: [(Outcome, &str); 4] = [
            (sent_ok, "sent"),
            (|| Unsent::Unresolved("no".into()).into(), "unresolved"),
            (|| Unsent::Failed("no".into()).into(), "failed"),
            (
                || Sent {
                    result: Ok(100),
                    refused: Some(Refused {
                        spans: 7,
                        addr: "127.0.0.1:6831".parse().unwrap(),
                        error: "refused".into(),
                    }),
                },
                "refused before",
            ),
        ];
        for (outcome, name) in outcomes {
            let (mut drain, s) = drain(10_000, outcome, Instant::now());
            for (span, _) in spans(3) {
                drain.take(span, 0);
            }
            drain.stop();
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
            let got = [
                load(&s.sent),
                load(&s.dropped_agent_unresolved),
                load(&s.dropped_send_error),
                load(&s.refused),
                load(&s.datagrams),
                load(&s.bytes),
                load(&s.send_errors),
            ];
            let want = match name {
                "sent" => [3, 0, 0, 0, 1, 100, 0],
                "unresolved" => [0, 3, 0, 0, 0, 0, 0],
                "failed" => [0, 0, 3, 0, 0, 0, 1],
                _ => [3, 0, 0, 7, 1, 100, 0],
            };
            assert_eq!(got, want, "{name}");
            let dropped = load(&s.dropped_send_error)
                + load(&s.dropped_agent_unresolved)
                + load(&s.dropped_too_large);
            assert_eq!(load(&s.received), load(&s.sent) + dropped, "{name}");
        }
    }

    /// The log line names the parent the datagram names: the first sampled reference.
    #[test]
    fn the_span_line_names_the_encoded_parent() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let tracer = Tracer::with_sender(AllSampler, tx);
        let header = |v: &str| [("uber-trace-id".to_owned(), v.to_owned())].into();
        let context = |v| {
            let headers: std::collections::HashMap<String, String> = header(v);
            SpanContext::extract_from_http_header(&headers)
                .unwrap()
                .unwrap()
        };
        let unsampled = context("1:2:0:0");
        let sampled = context("1:3:0:1");
        drop(
            tracer
                .span("x")
                .child_of(&unsampled)
                .follows_from(&sampled)
                .start(),
        );
        let span = rx.try_recv().unwrap();
        assert_eq!(jaeger_thrift::parent_span_id(&span), 3);
        let line = SpanLine(&span).to_string();
        assert!(line.contains(" parent_id=0000000000000003 "), "{line}");
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

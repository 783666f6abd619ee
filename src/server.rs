//! The HTTP server: a pool of worker threads taking requests from a blocking tiny_http
//! server (a new one when its accept loop dies), the per-request path (trace context in → span → handler → response → access
//! log), and the graceful stop on SIGTERM/SIGINT.

use crate::access_log::{self, Entry, Escaped};
use crate::connections;
use crate::downstream::{self, Url};
use crate::escape;
use crate::framing;
use crate::handlers::{App, Reply, Route, operation_name, standard_method};
use crate::metrics::Metrics;
use crate::propagation::{self, Formats, Incoming};
use crate::reporter::Stats;
use crate::signals::Signals;
use crate::trace::{SpanPlan, TracedSpan, Tracing};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rustracing::tag::Tag;
use std::borrow::Cow;
use std::fmt::Write;
use std::io::{Cursor, ErrorKind, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use time::OffsetDateTime;
use tiny_http::{Header, Method, Request, Response, StatusCode};

/// Longest tag values we record: a span must fit in a UDP datagram whatever the client sent.
const MAX_URL_TAG: usize = 2048;
const MAX_SHORT_TAG: usize = 256;
/// Envoy's defaults (`max_request_headers_kb`, `max_headers_count`): a request the sidecar
/// would refuse is refused here too when it comes straight to us. tiny_http has read the
/// head whole by then, so this bounds what we process, not what tiny_http buffers.
const MAX_HEAD_BYTES: usize = 60 * 1024;
const MAX_HEADERS: usize = 100;
/// The longest declared body a request may be dropped with. tiny_http drains an unread body
/// when the request is dropped, into a buffer of the whole declared length allocated at once:
/// zero pages that only arriving data touches, but an allocation past what the kernel allows
/// (RAM and swap, or the address space) aborts the process. 1 GiB fits any node we run on.
const DRAINABLE: u64 = 1 << 30;

/// Why the server stopped.
#[derive(Debug)]
pub enum Stop {
    /// A termination signal: drained cleanly, exit 0.
    Signal(&'static str),
    /// Serving cannot go on (a worker or the signal thread could not start, the event
    /// channel closed): exit non-zero so that the orchestrator restarts us. A failed accept
    /// loop is not this: a new tiny_http server takes over.
    Failed(String),
}

/// What handles one request: the app, its tracing, what `/chain` calls, and the counters.
pub struct Service {
    pub app: App,
    pub tracing: Tracing,
    /// Trace context formats read and written (`JAEGER_PROPAGATION`).
    pub propagation: Formats,
    pub downstream: Option<(Url, Duration)>,
    pub metrics: Metrics,
    pub span_stats: Arc<Stats>,
    pub conn_stats: Arc<connections::Stats>,
    /// The listening address, to find a connection's socket by its peer.
    pub listening: SocketAddr,
}

/// Headers Istio asks applications to copy onto outgoing calls, besides B3 and W3C trace
/// context (which we write ourselves, for our client span): Envoy's request id and the older
/// OpenTracing header.
const FORWARDED: [&str; 2] = ["x-request-id", "x-ot-span-context"];

/// What ends a round of serving.
enum Event {
    Signal(&'static str),
    /// tiny_http's accept loop ended (it does on the first accept error, such as running out
    /// of descriptors): serve its connections on, and accept on a new server.
    AcceptFailed(String),
    /// tiny_http's accept loop panicked (it unwraps the clone of a connection's socket,
    /// which fails when descriptors run out): seen by our panic hook.
    AcceptPanicked(String),
    Failed(String),
}

/// Serves until a termination signal or a fatal error, then refuses new connections, lets the
/// workers finish the requests already queued, and returns.
///
/// tiny_http ends its accept loop on the first accept error, so a flood of connections past
/// the open-files limit would stop the service for good. Here such a server is followed by a
/// new one on the same listening socket, with workers of its own, after a delay that grows
/// while servers keep failing (`Backoff`): the backlog of a flood fails each new accept loop
/// at once. The old one's workers serve its connections on; all but one retire once quiet
/// for `SPARE_QUIET`, the last when none has sent a request for `retire_after` (by then the
/// watchdog has closed them all).
pub fn run(
    listener: TcpListener,
    first: tiny_http::Server,
    workers: usize,
    service: &Service,
    signals: Signals,
    retire_after: Duration,
) -> Stop {
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    if let Err(e) = spawn_signal_thread(signals, tx.clone()) {
        return Stop::Failed(format!("cannot start the signal thread: {e}"));
    }
    watch_accept_panics(tx.clone());
    let stopping = AtomicBool::new(false);
    let mut first = Some(first);
    let mut backoff = Backoff::default();
    let stop = std::thread::scope(|scope| {
        let mut servers: Vec<Arc<Server>> = Vec::new();
        let stop = loop {
            let now = Instant::now();
            if servers
                .last()
                .is_none_or(|s| !s.accepting.load(Ordering::SeqCst))
                && backoff.ready(now)
            {
                backoff.tried(now);
                // Servers whose workers have all retired.
                servers.retain(|s| Arc::strong_count(s) > 1);
                match first.take().map_or_else(|| listen(&listener), Ok) {
                    Ok(http) => servers.push(start_workers(
                        scope,
                        http,
                        workers,
                        service,
                        &stopping,
                        &tx,
                        retire_after,
                    )),
                    // Out of descriptors even for a new server: the watchdog sheds load.
                    Err(e) => log::warn!("cannot accept connections again yet: {e}"),
                }
            }
            if let Some(stop) = next_event(&rx, servers.last()) {
                break stop;
            }
        };
        stopping.store(true, Ordering::SeqCst);
        // A listening socket shut down takes no more connections: clients are refused.
        // SAFETY: shutdown on the descriptor `listener` owns.
        unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
        // tiny_http's queue is first in, first out: each worker answers what was queued
        // before its unblock marker, then stops.
        for server in &servers {
            for _ in 0..workers {
                server.http.unblock();
            }
        }
        stop
    });
    // Every request is answered: its line is the last to go.
    access_log::stderr().flush();
    stop
}

/// SIGTERM and SIGINT become `Event::Signal`; a later one (past a second) exits at once.
/// Detached: sigwait cannot be interrupted, and the process exits after the drain.
fn spawn_signal_thread(signals: Signals, events: Sender<Event>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let first = signals.wait();
            let at = Instant::now();
            let _ = events.send(Event::Signal(first));
            loop {
                let again = signals.wait();
                // `timeout(1)` and a signal to the process group deliver two at once.
                if at.elapsed() >= Duration::from_secs(1) {
                    log::warn!("{again} again during shutdown: exiting now");
                    access_log::stderr().flush();
                    std::process::exit(130);
                }
            }
        })
        .map(drop)
}

/// Takes the next event, waiting at most `RETRY` (a server may have to be started again);
/// returns the stop it calls for, if any.
fn next_event(events: &Receiver<Event>, current: Option<&Arc<Server>>) -> Option<Stop> {
    match events.recv_timeout(RETRY) {
        Ok(Event::Signal(name)) => {
            log::info!("{name} received: refusing new connections, finishing queued requests");
            Some(Stop::Signal(name))
        }
        Ok(Event::Failed(why)) => {
            log::error!("stopping: {why}");
            Some(Stop::Failed(why))
        }
        Ok(Event::AcceptFailed(why)) => {
            log::warn!(
                "tiny_http stopped accepting connections ({why}): accepting on a new server"
            );
            None
        }
        Ok(Event::AcceptPanicked(why)) => {
            log::warn!("tiny_http's accept loop panicked ({why}): accepting on a new server");
            if let Some(server) = current {
                server.stop_accepting(server.workers);
            }
            None
        }
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) => Some(Stop::Failed("the stop channel closed".into())),
    }
}

/// How often the supervisor looks whether a server must be started (none accepts, or out of
/// descriptors at the last try), and the first delay between two tries.
const RETRY: Duration = Duration::from_millis(100);
/// The longest delay between two tries: how long accepting may pause after a flood ends.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A server that accepted this long was no failure: the next try comes after `RETRY` again.
const STEADY: Duration = Duration::from_secs(30);
/// How long a worker of an accepting server waits for a request before it looks whether the
/// accept loop still runs.
const ACCEPTING_CHECK: Duration = Duration::from_secs(1);
/// How long a worker of a replaced server waits for a request before it retires, unless it
/// is the server's last: its connections get fewer requests than a pool's worth of workers,
/// and a flood may replace a server every `MAX_BACKOFF`.
const SPARE_QUIET: Duration = Duration::from_secs(10);

/// How long a worker of a replaced server waits for a request, quiet for `quiet` so far:
/// until `SPARE_QUIET`, then (the last one) until `retire_after`. tiny_http's wait may end
/// up to a millisecond early: the worker then waits the rest.
fn quiet_wait(quiet: Duration, retire_after: Duration) -> Duration {
    let until = if quiet < SPARE_QUIET {
        SPARE_QUIET.min(retire_after)
    } else {
        retire_after
    };
    until.saturating_sub(quiet).max(Duration::from_millis(1))
}

/// When the supervisor may try to start a server again: `RETRY` after the last try, doubling
/// up to `MAX_BACKOFF` while tries come less than `STEADY` apart.
#[derive(Debug, Default)]
struct Backoff {
    last: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    fn ready(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.delay)
    }

    fn tried(&mut self, now: Instant) {
        self.delay = match self.last {
            Some(last) if now.saturating_duration_since(last) < STEADY => {
                (self.delay * 2).clamp(RETRY, MAX_BACKOFF)
            }
            _ => RETRY,
        };
        self.last = Some(now);
    }
}

/// Reports a panic of tiny_http's accept loop as `Event::AcceptPanicked`: its
/// `RefinedTcpStream::new` unwraps `try_clone`, and that thread is the only caller. Other
/// panics go to the hook that was there.
fn watch_accept_panics(events: Sender<Event>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let accept_loop = info
            .location()
            .is_some_and(|l| l.file().ends_with("refined_tcp_stream.rs"));
        if accept_loop {
            let _ = events.send(Event::AcceptPanicked(info.to_string()));
        } else {
            previous(info);
        }
    }));
}

/// One tiny_http server on a duplicate of the listening socket, served by its own workers.
struct Server {
    http: tiny_http::Server,
    /// Whether its accept loop still runs.
    accepting: AtomicBool,
    workers: usize,
    /// Its workers not retired yet.
    live: AtomicUsize,
}

impl Server {
    /// Marks the accept loop dead and unblocks `waiting` workers, which from then on wait
    /// with a timeout and retire when the server's connections have gone quiet.
    /// Returns whether it was still marked accepting.
    fn stop_accepting(&self, waiting: usize) -> bool {
        let was = self.accepting.swap(false, Ordering::SeqCst);
        if was {
            for _ in 0..waiting {
                self.http.unblock();
            }
        }
        was
    }

    /// Counts a worker out unless it is the last one left.
    fn retire_spare(&self) -> bool {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            })
            .is_ok()
    }
}

/// A tiny_http server on a duplicate of `listener`.
pub fn listen(listener: &TcpListener) -> Result<tiny_http::Server, String> {
    let clone = listener.try_clone().map_err(|e| e.to_string())?;
    tiny_http::Server::from_listener(clone, None).map_err(|e| e.to_string())
}

/// `http` with `workers` workers of its own.
fn start_workers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    http: tiny_http::Server,
    workers: usize,
    service: &'scope Service,
    stopping: &'scope AtomicBool,
    events: &Sender<Event>,
    retire_after: Duration,
) -> Arc<Server> {
    let server = Arc::new(Server {
        http,
        accepting: AtomicBool::new(true),
        workers,
        live: AtomicUsize::new(workers),
    });
    for i in 0..workers {
        let (mine, my_events) = (server.clone(), events.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn_scoped(scope, move || {
                work(&mine, service, stopping, &my_events, retire_after);
            });
        if let Err(e) = spawned {
            let _ = events.send(Event::Failed(format!("cannot start worker {i}: {e}")));
            server.live.store(i, Ordering::SeqCst);
            break;
        }
    }
    server
}

/// One worker: serves requests until unblocked at shutdown, or retired after its server's
/// accept loop ended and it went quiet (`SPARE_QUIET`; `retire_after` for the last one).
fn work(
    server: &Server,
    service: &Service,
    stopping: &AtomicBool,
    events: &Sender<Event>,
    retire_after: Duration,
) {
    // Since the last request, or since the accept loop ended, whichever is later.
    let mut quiet_since = Instant::now();
    let mut retiring = false;
    loop {
        let next = if server.accepting.load(Ordering::SeqCst) {
            // With a timeout, so that a worker sees the accept loop end by itself: another
            // worker may take the unblock marker meant for it, and one blocked in `recv`
            // would wait for a request that never comes (the old server kept its workers).
            server.http.recv_timeout(ACCEPTING_CHECK)
        } else {
            if !retiring {
                (retiring, quiet_since) = (true, Instant::now());
            }
            server
                .http
                .recv_timeout(quiet_wait(quiet_since.elapsed(), retire_after))
        };
        match next {
            Ok(Some(request)) => {
                quiet_since = Instant::now();
                serve_caught(service, request);
            }
            // Unblocked at shutdown (or its wait ended just before the marker came: what is
            // queued is answered first), or quiet long enough: retired. (An unblock marker of
            // `stop_accepting` also ends a wait: it is not a reason to go.)
            Ok(None) if stopping.load(Ordering::SeqCst) => return drain(server, service),
            Ok(None) if retiring && quiet_since.elapsed() >= retire_after => return,
            Ok(None)
                if retiring && quiet_since.elapsed() >= SPARE_QUIET && server.retire_spare() =>
            {
                return;
            }
            Ok(None) => {}
            Err(_) if stopping.load(Ordering::SeqCst) => return drain(server, service),
            // The accept loop's error comes once, to one worker (an unblock marker, after
            // `stop_accepting`, to the others).
            Err(e) => {
                // Marked before it is told, so that the supervisor starts the next server.
                if server.stop_accepting(server.workers - 1) {
                    let _ = events.send(Event::AcceptFailed(e.to_string()));
                }
            }
        }
    }
}

/// A panic must not take the worker with it: tiny_http answers the dropped request with a
/// 500, and the worker goes on.
fn serve_caught(service: &Service, request: Request) {
    if catch_unwind(AssertUnwindSafe(|| service.serve(request))).is_err() {
        log::error!("a request handler panicked; answered 500");
    }
}

/// At a stop, answers what is still queued, up to an unblock marker (another worker's).
fn drain(server: &Server, service: &Service) {
    while let Ok(Some(request)) = server.http.try_recv() {
        serve_caught(service, request);
    }
}

impl Service {
    /// One request: judged, traced unless refused or a probe, handled, answered, counted,
    /// logged.
    fn serve(&self, request: Request) {
        let received = Instant::now();
        let start_time = SystemTime::now();
        let method = request.method().clone();
        let target = framing::origin_form(request.url());
        let route = Route::of(target);
        // For the access log, written after the request is gone; only unknown paths copy.
        let path: Cow<'static, str> = match route.path() {
            Some(path) => path.into(),
            None => clip(path_of(target), MAX_SHORT_TAG).to_owned().into(),
        };
        let verdict = judge(&request, &method, &path);
        let mut traced = (verdict.refusal.is_none() && route.traced())
            .then(|| self.start_server_span(&request, &method, route, start_time));
        let reply = match &traced {
            Some((plan, _, incoming)) => self.handle(&request, &method, route, plan, incoming),
            None => self.untraced(verdict.refusal, &method, route),
        };
        let status = reply.status;
        if let Some((_, span, _)) = &mut traced {
            span.set_tag(|| Tag::new("http.status_code", i64::from(status)));
            if status >= 500 {
                span.error_log(|log| {
                    log.kind("http").message(format!("HTTP {status}"));
                });
            }
        }
        self.answer(request, reply, &verdict.framing);
        // Finishing the span hands it to the reporter; its end is when the response was written.
        let plan = traced.map(|(plan, _span, _)| plan);
        self.metrics.observe(route, status, received.elapsed());
        match plan {
            Some(plan) => access_log::stderr().record(&Entry {
                method: method.as_str(),
                path: &path,
                status,
                elapsed: received.elapsed(),
                trace_id: plan.trace_id,
                span_id: plan.span_id,
                sampled: plan.sampling.is_sampled(),
            }),
            None => log::debug!(
                target: "access",
                "{} {} {status}",
                Escaped(method.as_str()),
                Escaped(&path)
            ),
        }
    }

    /// The server span of a traced request, in the caller's trace if it sent one.
    fn start_server_span(
        &self,
        request: &Request,
        method: &Method,
        route: Route,
        start_time: SystemTime,
    ) -> (SpanPlan, TracedSpan, Incoming) {
        let incoming = propagation::extract(&self.propagation, header_pairs(request));
        for why in &incoming.rejected {
            log::debug!("{why}");
        }
        let plan = self.tracing.plan(&incoming);
        let span = self
            .tracing
            .start(&plan, operation_name(method, route), start_time, || {
                server_tags(request)
            });
        (plan, span, incoming)
    }

    /// The reply of a traced request.
    fn handle(
        &self,
        request: &Request,
        method: &Method,
        route: Route,
        plan: &SpanPlan,
        incoming: &Incoming,
    ) -> Reply {
        match (&self.downstream, route, method) {
            (Some((url, timeout)), Route::Chain, Method::Get | Method::Head) => {
                self.call_downstream(url, *timeout, plan, request, incoming)
            }
            _ => self.app.handle(method, route, OffsetDateTime::now_utc()),
        }
    }

    /// The reply of a refused request, a probe or a scrape: none is traced.
    fn untraced(&self, refusal: Option<framing::Refusal>, method: &Method, route: Route) -> Reply {
        match (refusal, route, method) {
            (Some(r), _, _) => Reply::text(r.status, format!("{} {}\n", r.status, r.reason)),
            (None, Route::Healthz, Method::Get | Method::Head)
                if self.conn_stats.unhealthy.load(Ordering::Relaxed) =>
            {
                Reply::text(
                    503,
                    "503 too many connections stuck in tiny_http: restart me\n",
                )
            }
            (None, Route::Metrics, Method::Get | Method::Head) => Reply {
                content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
                ..Reply::text(200, self.metrics.render(&self.span_stats, &self.conn_stats))
            },
            _ => self.app.handle(method, route, OffsetDateTime::now_utc()),
        }
    }

    /// Writes the reply. When tiny_http left part of the request unread (see `framing`), the
    /// connection is closed after it: shut for reading first, so that tiny_http's drain of the
    /// body when the request is released ends at what has arrived instead of waiting for the
    /// rest; the reply, with `Connection: close` (which tiny_http's responses cannot carry),
    /// written through the request's own writer, so that it goes out after any earlier reply
    /// on the connection and before anything tiny_http writes next; then shut both ways
    /// before that writer is released, so that nothing tiny_http reads next is answered.
    fn answer(&self, request: Request, reply: Reply, verdict: &framing::Verdict) {
        if !verdict.close {
            return respond(request, reply);
        }
        let socket = request
            .remote_addr()
            .and_then(|&peer| connections::find(self.listening, peer));
        let head_only = *request.method() == Method::Head;
        if verdict.drain.is_some_and(|n| n > DRAINABLE) {
            // Releasing this request would make tiny_http allocate the declared length at
            // once, which can abort the process: it is kept, and answered on our own
            // duplicate of the socket. (A reply to an earlier request pipelined on the same
            // connection, if one is still being made, is lost with the connection.)
            if let Some(socket) = &socket {
                // A client that does not read gets what fits in a second.
                let mut out: &TcpStream = socket;
                let sent = out
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .and_then(|()| out.write_all(&closing_reply(&reply, head_only)));
                if let Err(e) = sent {
                    log::debug!("the reply to a kept request did not go out: {e}");
                }
                let _ = socket.shutdown(Shutdown::Both);
            }
            self.conn_stats.kept.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "kept a request declaring a {} byte body for the life of the process (a thread and two descriptors): tiny_http would allocate it all to drain it",
                verdict.drain.unwrap_or_default()
            );
            std::mem::forget(request);
            return;
        }
        if let Some(socket) = &socket {
            let _ = socket.shutdown(Shutdown::Read);
        }
        let mut writer = request.into_writer();
        if let Err(e) = writer
            .write_all(&closing_reply(&reply, head_only))
            .and_then(|()| writer.flush())
        {
            log::debug!("writing a response failed: {e}");
        }
        if let Some(socket) = &socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// `/chain`: GET the downstream URL in a client span, with the trace context propagated,
    /// and answer with its status and body (502 on failure, 504 on timeout).
    fn call_downstream(
        &self,
        url: &Url,
        timeout: Duration,
        server: &SpanPlan,
        request: &Request,
        incoming: &Incoming,
    ) -> Reply {
        let client = server.child(crate::trace::random_id());
        let mut span = self.tracing.start(
            &client,
            format!("GET {}", path_of(&url.target)),
            SystemTime::now(),
            || client_tags(url),
        );
        let context = propagation::outgoing(&self.propagation, &client.context(), incoming);
        let mut headers: Vec<(&str, &str)> =
            context.iter().map(|(n, v)| (*n, v.as_str())).collect();
        headers.extend(request.headers().iter().filter_map(|h| {
            let name = FORWARDED.iter().find(|f| h.field.equiv(f))?;
            let value = h.value.as_str();
            // A bare LF or a NUL that reached us must not reach the downstream's head.
            if !downstream::is_field_value(value.as_bytes()) {
                log::debug!(
                    "not forwarding {name}: it has control bytes ({:?})",
                    clip(value, 128)
                );
                return None;
            }
            Some((*name, value))
        }));
        let (reply, status, failure) =
            downstream_reply(url, timeout, downstream::get(url, &headers, timeout));
        if let Some(code) = status {
            span.set_tag(|| Tag::new("http.status_code", i64::from(code)));
        }
        if let Some(why) = failure {
            log::warn!("downstream call to {url} failed: {why}");
            span.error_log(|log| {
                log.kind("downstream").message(why);
            });
        }
        reply
    }
}

/// Our reply to a `/chain` call, the downstream's status (for the client span) and what went
/// wrong, if anything (for its error log).
fn downstream_reply(
    url: &Url,
    timeout: Duration,
    result: Result<downstream::Response, downstream::Error>,
) -> (Reply, Option<u16>, Option<String>) {
    match result {
        Ok(r) => (
            relay(r.status, r.content_type, r.location, r.body),
            Some(r.status),
            (r.status >= 500).then(|| format!("HTTP {}", r.status)),
        ),
        Err(downstream::Error::Timeout) => (
            Reply::text(
                504,
                format!("504 {url} did not answer within {timeout:?}\n"),
            ),
            None,
            Some(format!("timed out after {timeout:?}")),
        ),
        Err(e) => (
            Reply::text(502, format!("502 calling {url} failed: {e}\n")),
            None,
            Some(e.to_string()),
        ),
    }
}

/// The downstream's answer as ours: its bytes, its type (`application/octet-stream`, what
/// RFC 9110 §8.3 lets a recipient assume, if it gave none) and its `Location`.
fn relay(
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
) -> Reply {
    Reply {
        status,
        body: body.into(),
        content_type: content_type.map_or("application/octet-stream".into(), Cow::Owned),
        allow: None,
        location,
    }
}

/// Server span tags (OpenTracing conventions, as jaeger-client-go's HTTP middleware and Envoy).
/// Static strings where they can be: only the URL, the peer's address and the request id are
/// copied, once each. What the client wrote has its control bytes escaped (`escape`). In
/// descending name order (`trace::Tracing::start` says why).
fn server_tags(request: &Request) -> impl Iterator<Item = Tag> + use<> {
    let method: Cow<'static, str> = match standard_method(request.method()) {
        Some(name) => name.into(),
        None => escape::controls(clip(request.method().as_str(), 32))
            .into_owned()
            .into(),
    };
    let peer = request.remote_addr().map(|addr| {
        let key = if addr.is_ipv4() {
            "peer.ipv4"
        } else {
            "peer.ipv6"
        };
        [
            Tag::new("peer.port", i64::from(addr.port())),
            Tag::new(key, ip_text(addr.ip())),
        ]
    });
    // Envoy tags its spans the same way, so Jaeger's search finds the app's span and the
    // proxies' spans of one request together.
    let request_id = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("x-request-id"))
        .map(|id| {
            Tag::new(
                "guid:x-request-id",
                escape::controls(clip(id.value.as_str(), MAX_SHORT_TAG)).into_owned(),
            )
        });
    std::iter::once(Tag::new("span.kind", "server"))
        .chain(peer.into_iter().flatten())
        .chain([
            Tag::new(
                "http.url",
                escape::controls(clip(request.url(), MAX_URL_TAG)).into_owned(),
            ),
            Tag::new("http.method", method),
        ])
        .chain(request_id)
        .chain([Tag::new("component", "tiny_http")])
}

/// Client span tags of a `/chain` call, in descending name order (`trace::Tracing::start`
/// says why).
fn client_tags(url: &Url) -> [Tag; 6] {
    [
        Tag::new("span.kind", "client"),
        Tag::new("peer.port", i64::from(url.port)),
        Tag::new("peer.hostname", url.host.clone()),
        Tag::new("http.url", url.to_string()),
        Tag::new("http.method", "GET"),
        Tag::new("component", "myhelloworld"),
    ]
}

/// An address as `Display` writes it, in one allocation (at most 39 bytes, IPv6); IPv4
/// (every peer in a Kubernetes pod network that is not dual-stack) without the formatting
/// machinery, which cost as much as the rest of the tags together.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        let mut out = String::with_capacity(39);
        let _ = write!(out, "{ip}");
        return out;
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// A request's header fields as name/value pairs.
fn header_pairs(request: &Request) -> impl Iterator<Item = (&str, &str)> + Clone {
    request
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str(), h.value.as_str()))
}

/// What `framing` says of the request, and the 431 of a head past Envoy's limits; a refusal
/// is logged.
struct Judged {
    framing: framing::Verdict,
    refusal: Option<framing::Refusal>,
}

fn judge(request: &Request, method: &Method, path: &str) -> Judged {
    let framing = framing::judge(*request.http_version() >= (1, 1), header_pairs(request));
    let refusal = if head_too_large(request.url(), header_pairs(request)) {
        Some(framing::Refusal {
            status: 431,
            reason: "request header fields too large",
        })
    } else {
        framing.refusal
    };
    if let Some(r) = refusal {
        log::warn!(
            "refused {} {} from {:?}: {} {}{}",
            Escaped(method.as_str()),
            Escaped(path),
            request.remote_addr(),
            r.status,
            r.reason,
            if framing.close {
                "; closing the connection"
            } else {
                ""
            }
        );
    }
    Judged { framing, refusal }
}

/// Whether the request line's target and the headers go past Envoy's limits.
fn head_too_large<'a>(target: &str, headers: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    let mut bytes = target.len();
    for (count, (name, value)) in headers.enumerate() {
        // "name: value\r\n"
        bytes += name.len() + value.len() + 4;
        if count >= MAX_HEADERS || bytes > MAX_HEAD_BYTES {
            return true;
        }
    }
    bytes > MAX_HEAD_BYTES
}

/// The path of a request target: the query is left out of logs (it may carry secrets).
fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// Replies longer than this go out through tiny_http's `Request::respond`, not in one piece:
/// below its 32 KiB threshold for chunking, above every reply of ours but a relayed one.
const ONE_PIECE_MAX: usize = 16 * 1024;

/// Writes `reply` with tiny_http's own `Response::raw_print` (its framing and HEAD handling:
/// the bytes `request.respond(…)` writes), put together first and written at once:
/// `respond` writes it a piece at a time, each taking the connection's writer lock (27 for a
/// `/gettime` reply, and the flush; callgrind). Longer replies (a relayed `/chain` body) are
/// not copied: `respond` streams them. Unlike `respond`, this releases the request before
/// writing: its body must be read or in memory already, and `answer` sends the others (a
/// body tiny_http would drain, or chunked) the closing way.
fn respond(request: Request, reply: Reply) {
    let len = reply.body.len();
    let response = tiny_http_response(reply);
    let written = if len > ONE_PIECE_MAX {
        request.respond(response)
    } else {
        let mut bytes = Vec::with_capacity(256 + len);
        let head_only = *request.method() == Method::Head;
        let version = request.http_version().clone();
        // From a Cursor into a Vec: nothing can fail.
        let _ = response.raw_print(&mut bytes, version, request.headers(), head_only, None);
        let mut writer = request.into_writer();
        writer.write_all(&bytes).and_then(|()| writer.flush())
    };
    // A client gone away is not reported, as tiny_http's `respond` does not report it.
    if let Err(e) = written
        && !matches!(
            e.kind(),
            ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted
                | ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
        )
    {
        log::debug!("writing a response failed: {e}");
    }
}

/// `reply` as tiny_http's response.
fn tiny_http_response(reply: Reply) -> Response<Cursor<Cow<'static, [u8]>>> {
    let len = reply.body.len();
    let mut headers = Vec::with_capacity(3);
    headers.extend(Header::from_bytes("Content-Type", reply.content_type.as_bytes()).ok());
    if let Some(allow) = reply.allow {
        headers.extend(Header::from_bytes("Allow", allow).ok());
    }
    if let Some(location) = reply.location {
        headers.extend(Header::from_bytes("Location", location).ok());
    }
    Response::new(
        StatusCode(reply.status),
        headers,
        Cursor::new(reply.body),
        Some(len),
        None,
    )
}

/// `reply` as bytes on the wire, with `Connection: close`.
fn closing_reply(reply: &Reply, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        StatusCode(reply.status).default_reason_phrase(),
        http_date(OffsetDateTime::now_utc()),
        reply.content_type,
        reply.body.len()
    );
    if let Some(allow) = reply.allow {
        let _ = write!(out, "Allow: {allow}\r\n");
    }
    if let Some(location) = &reply.location {
        let _ = write!(out, "Location: {location}\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    out
}

/// RFC 9110's IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::{
        Backoff, Duration, Header, Instant, IpAddr, MAX_BACKOFF, MAX_HEAD_BYTES, MAX_HEADERS,
        RETRY, Request, SPARE_QUIET, STEADY, Url, client_tags, clip, closing_reply, head_too_large,
        http_date, ip_text, quiet_wait, server_tags,
    };

    #[test]
    fn a_replaced_servers_worker_waits_for_spare_quiet_then_the_last_for_retire_after() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (quiet so far, retire_after, wait)
        let cases = [
            (s(0), s(3930), SPARE_QUIET),
            (ms(9_999), s(3930), ms(1)),
            (Duration::from_micros(9_999_500), s(3930), ms(1)),
            (SPARE_QUIET, s(3930), s(3920)),
            (s(3929), s(3930), s(1)),
            (s(3930), s(3930), ms(1)),
            (s(0), s(2), s(2)),
            (s(1), s(2), s(1)),
            (s(5), s(2), ms(1)),
        ];
        for (quiet, retire_after, want) in cases {
            assert_eq!(
                quiet_wait(quiet, retire_after),
                want,
                "{quiet:?} {retire_after:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_while_servers_keep_failing_and_resets_after_a_steady_one() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Backoff::default();
        assert!(b.ready(start), "the first server starts at once");
        // (tried this long after the start, the delay until the next try)
        let steps = [
            (ms(0), ms(100)),
            (ms(100), ms(200)),
            (ms(300), ms(400)),
            (ms(700), ms(800)),
            (ms(1_500), ms(1_600)),
            (ms(3_100), ms(3_200)),
            (ms(6_300), MAX_BACKOFF),
            (ms(11_300), MAX_BACKOFF),
            // a server that accepted for `STEADY`: back to the first delay
            (ms(11_300) + STEADY, RETRY),
            (ms(11_400) + STEADY, ms(200)),
        ];
        for (at, delay) in steps {
            let now = start + at;
            b.tried(now);
            assert_eq!(b.delay, delay, "tried at {at:?}");
            assert!(!b.ready(now + delay - ms(1)), "at {at:?}");
            assert!(b.ready(now + delay), "at {at:?}");
        }
    }

    #[test]
    fn heads_past_envoys_limits_are_too_large() {
        let filler = "v".repeat(1000);
        let big = "v".repeat(64 * 1024);
        let many = |n: usize| vec![("x-h", "v"); n];
        type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, bool);
        let cases: &[Case] = &[
            ("small", "/gettime".into(), many(3), false),
            (
                "exactly the headers allowed",
                "/".into(),
                many(MAX_HEADERS),
                false,
            ),
            (
                "one header too many",
                "/".into(),
                many(MAX_HEADERS + 1),
                true,
            ),
            (
                "a long target",
                "/".repeat(MAX_HEAD_BYTES + 1),
                many(0),
                true,
            ),
            (
                "a 64 KiB value",
                "/".into(),
                vec![("x-big", big.as_str())],
                true,
            ),
            (
                "60 values of 1000 bytes",
                "/".into(),
                vec![("x", filler.as_str()); 60],
                false,
            ),
            (
                "62 values of 1000 bytes",
                "/".into(),
                vec![("x", filler.as_str()); 62],
                true,
            ),
        ];
        for (name, target, headers, want) in cases {
            assert_eq!(
                head_too_large(target, headers.iter().copied()),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn closing_replies_are_complete_http_messages() {
        use crate::handlers::Reply;
        let t = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let reply = Reply {
            allow: Some("GET, HEAD"),
            ..Reply::text(405, "no\n")
        };
        let text = String::from_utf8(closing_reply(&reply, false)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 405 Method Not Allowed\r\nDate: "),
            "{head}"
        );
        assert!(head.ends_with("Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\nAllow: GET, HEAD"), "{head}");
        assert_eq!(body, "no\n");
        let text = String::from_utf8(closing_reply(&reply, true)).unwrap();
        assert!(
            text.ends_with("Content-Length: 3\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n"),
            "HEAD: {text}"
        );
    }

    #[test]
    fn ip_text_is_display() {
        let cases: [IpAddr; 8] = [
            [0, 0, 0, 0].into(),
            [127, 0, 0, 1].into(),
            [10, 244, 0, 9].into(),
            [9, 99, 100, 199].into(),
            [200, 250, 255, 101].into(),
            [255, 255, 255, 255].into(),
            "::1".parse().unwrap(),
            "fd00:10:244::1f".parse().unwrap(),
        ];
        for ip in cases {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// `Tracing::start`: rustracing's sort of the start tags is a single pass only for
    /// names in strictly descending order.
    #[test]
    fn span_tags_come_in_descending_name_order() {
        use tiny_http::TestRequest;
        let header = |h: &str| h.parse::<Header>().unwrap();
        let request: Request = TestRequest::new()
            .with_path("/gettime?x=1")
            .with_remote_addr("10.244.0.9:41234".parse().unwrap())
            .with_header(header("x-request-id: 5f1c"))
            .into();
        let names: Vec<_> = server_tags(&request).map(|t| t.name().to_owned()).collect();
        assert_eq!(
            names,
            [
                "span.kind",
                "peer.port",
                "peer.ipv4",
                "http.url",
                "http.method",
                "guid:x-request-id",
                "component"
            ]
        );
        let bare: Request = TestRequest::new()
            .with_remote_addr("[fd00::1]:80".parse().unwrap())
            .into();
        let names: Vec<_> = server_tags(&bare).map(|t| t.name().to_owned()).collect();
        assert!(names.windows(2).all(|w| w[0] > w[1]), "{names:?}");
        assert!(names.iter().any(|n| n == "peer.ipv6"), "{names:?}");
        let url = Url::parse("http://next.default.svc:8080/gettime").unwrap();
        let names = client_tags(&url).map(|t| t.name().to_owned());
        assert!(names.windows(2).all(|w| w[0] > w[1]), "{names:?}");
    }

    /// `respond` writes the bytes tiny_http's `Request::respond` writes (the `Date` aside):
    /// every request header and reply field `raw_print` reads, and both sides of
    /// `ONE_PIECE_MAX`. Our reply must arrive whole while the connection is still open
    /// (flushed), and nothing after it.
    #[test]
    fn replies_are_the_bytes_tiny_http_writes() {
        use super::{ONE_PIECE_MAX, Reply, respond, tiny_http_response};
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpStream};
        use std::time::Duration;
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        // One request, answered by `answer`; what the client reads, the date blanked. With
        // `len`, the client reads that many bytes before it half-closes, else everything
        // after it (tiny_http closes the connection after a last request).
        let exchange = |head: &str, answer: &dyn Fn(Request), len: Option<usize>| {
            let mut client = TcpStream::connect(addr).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            client.write_all(head.as_bytes()).unwrap();
            if len.is_none() {
                client.shutdown(Shutdown::Write).unwrap();
            }
            let request = server
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .unwrap();
            answer(request);
            let mut bytes = vec![0; len.unwrap_or(0)];
            client.read_exact(&mut bytes).unwrap();
            // Already shut, or closed by tiny_http (`Connection: close`): either will do.
            let _ = client.shutdown(Shutdown::Write);
            client.read_to_end(&mut bytes).unwrap();
            if let Some(at) = bytes.windows(6).position(|w| w == b"Date: ") {
                let len = bytes[at..].windows(2).position(|w| w == b"\r\n").unwrap();
                bytes.splice(at..at + len, *b"Date: -");
            }
            bytes
        };
        // tiny_http's own way, as `respond` did before.
        let theirs =
            |request: Request, reply: Reply| request.respond(tiny_http_response(reply)).unwrap();
        let get = "GET /gettime HTTP/1.1\r\nHost: a\r\n\r\n";
        let time = Reply::text(200, "The time is Mon Nov 30 23:04:11 2026");
        let cases: &[(&str, &str, Reply)] = &[
            ("GET", get, time.clone()),
            (
                "HEAD: the length, no body",
                "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
                time.clone(),
            ),
            ("HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", time.clone()),
            (
                "Connection: close",
                "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
                time.clone(),
            ),
            (
                "TE: chunked (tiny_http then chunks)",
                "GET / HTTP/1.1\r\nTE: chunked\r\n\r\n",
                time.clone(),
            ),
            ("an empty body", get, Reply::text(200, "")),
            (
                "the longest body in one piece",
                get,
                Reply::text(200, "a".repeat(ONE_PIECE_MAX)),
            ),
            (
                "a longer body, streamed (and chunked: past 32 KiB)",
                get,
                Reply::text(200, "b".repeat(100 * 1024)),
            ),
            (
                "HEAD of a longer body",
                "HEAD / HTTP/1.1\r\n\r\n",
                Reply::text(200, "b".repeat(100 * 1024)),
            ),
            ("204: no body", get, Reply::text(204, "")),
            (
                "405 with Allow",
                "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                Reply {
                    allow: Some("GET, HEAD"),
                    ..Reply::text(405, "405 method not allowed\n")
                },
            ),
            (
                "a relayed 302",
                get,
                Reply {
                    location: Some("/next".into()),
                    body: b"\xff\x00".to_vec().into(),
                    ..Reply::text(302, "")
                },
            ),
        ];
        for (name, head, reply) in cases {
            let want = exchange(head, &|request| theirs(request, reply.clone()), None);
            let ours = exchange(
                head,
                &|request| respond(request, reply.clone()),
                Some(want.len()),
            );
            assert!(want.starts_with(b"HTTP/1."), "{name}: {want:?}");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&want),
                "{name}"
            );
            assert_eq!(ours, want, "{name}");
        }
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip("", 0), "");
    }
}

//! The HTTP server: a pool of worker threads taking requests from one blocking tiny_http
//! server, the per-request path (B3 in → span → handler → response → access log), and the
//! graceful stop on SIGTERM/SIGINT.

use crate::access_log::{self, Entry, Escaped};
use crate::b3;
use crate::connections;
use crate::downstream::{self, Url};
use crate::handlers::{App, Reply, Route, operation_name, standard_method};
use crate::metrics::Metrics;
use crate::reporter::Stats;
use crate::signals::Signals;
use crate::trace::{SpanPlan, Tracing};
use rustracing::tag::Tag;
use std::borrow::Cow;
use std::fmt::Write;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Why the server stopped.
#[derive(Debug)]
pub enum Stop {
    /// A termination signal: drained cleanly, exit 0.
    Signal(&'static str),
    /// tiny_http's accept loop failed (e.g. out of file descriptors) and no request can
    /// arrive any more: exit non-zero so that the orchestrator restarts us.
    Failed(String),
}

/// What handles one request: the app, its tracing, what `/chain` calls, and the counters.
pub struct Service {
    pub app: App,
    pub tracing: Tracing,
    pub downstream: Option<(Url, Duration)>,
    pub metrics: Metrics,
    pub span_stats: Arc<Stats>,
    pub conn_stats: Arc<connections::Stats>,
}

/// Headers Istio asks applications to copy onto outgoing calls, besides B3 (which we write
/// ourselves): Envoy's request id, W3C trace context, and the older OpenTracing header.
const FORWARDED: [&str; 4] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-ot-span-context",
];

/// Serves until a termination signal or a fatal error, then stops taking requests, lets the
/// workers finish the requests already queued, and returns.
pub fn run(http: tiny_http::Server, workers: usize, service: &Service, signals: Signals) -> Stop {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<Stop>(workers + 1);
    let signal_tx = stop_tx.clone();
    // Detached: sigwait cannot be interrupted, and the process exits after the drain.
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let first = signals.wait();
            let _ = signal_tx.send(Stop::Signal(first));
            let second = signals.wait();
            log::warn!("{second} again during shutdown: exiting now");
            access_log::stderr().flush();
            std::process::exit(130);
        });
    if let Err(e) = spawned {
        return Stop::Failed(format!("cannot start the signal thread: {e}"));
    }
    let stopping = AtomicBool::new(false);
    let stop = std::thread::scope(|scope| {
        for i in 0..workers {
            let (http, stopping, failed_tx) = (&http, &stopping, stop_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn_scoped(scope, move || {
                    if let Some(failure) = work(http, service, stopping) {
                        let _ = failed_tx.send(Stop::Failed(failure));
                    }
                });
            if let Err(e) = spawned {
                let _ = stop_tx.send(Stop::Failed(format!("cannot start worker {i}: {e}")));
                break;
            }
        }
        let stop = stop_rx
            .recv()
            .unwrap_or_else(|_| Stop::Failed("stop channel closed".into()));
        match &stop {
            Stop::Signal(name) => log::info!("{name} received: finishing queued requests"),
            Stop::Failed(why) => log::error!("stopping: {why}"),
        }
        stopping.store(true, Ordering::SeqCst);
        // tiny_http's queue is first in, first out: each worker answers what was queued
        // before its unblock marker, then stops.
        for _ in 0..workers {
            http.unblock();
        }
        stop
    });
    // Dropping the server closes the listening socket and ends tiny_http's accept thread.
    drop(http);
    // Every request is answered: its line is the last to go.
    access_log::stderr().flush();
    stop
}

/// One worker: serve requests until unblocked. Returns a failure to report, if any.
fn work(http: &tiny_http::Server, service: &Service, stopping: &AtomicBool) -> Option<String> {
    loop {
        match http.recv() {
            Ok(request) => {
                // A panic must not take the worker with it: tiny_http answers the dropped
                // request with a 500, and the worker goes on.
                if catch_unwind(AssertUnwindSafe(|| service.serve(request))).is_err() {
                    log::error!("a request handler panicked; answered 500");
                }
            }
            Err(_) if stopping.load(Ordering::SeqCst) => return None,
            Err(e) => return Some(format!("tiny_http stopped accepting connections: {e}")),
        }
    }
}

impl Service {
    fn serve(&self, request: Request) {
        let received = Instant::now();
        let start_time = SystemTime::now();
        let method = request.method().clone();
        let route = Route::of(request.url());
        // For the access log, written after the request is gone; only unknown paths copy.
        let path: Cow<'static, str> = match route.path() {
            Some(path) => path.into(),
            None => clip(path_of(request.url()), MAX_SHORT_TAG)
                .to_owned()
                .into(),
        };
        let too_large = head_too_large(
            request.url(),
            request
                .headers()
                .iter()
                .map(|h| (h.field.as_str().as_str(), h.value.as_str())),
        );
        if too_large || !route.traced() {
            let reply = match (route, &method) {
                _ if too_large => Reply::text(431, "431 request header fields too large\n"),
                (Route::Metrics, Method::Get | Method::Head) => Reply {
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    ..Reply::text(200, self.metrics.render(&self.span_stats, &self.conn_stats))
                },
                _ => self.app.handle(&method, route, OffsetDateTime::now_utc()),
            };
            let status = reply.status;
            respond(request, reply);
            self.metrics.observe(route, status, received.elapsed());
            log::debug!(target: "access", "{} {} {status}", Escaped(method.as_str()), Escaped(&path));
            return;
        }

        let headers = request.headers();
        let b3_headers = b3::Headers::collect(
            headers
                .iter()
                .map(|h| (h.field.as_str().as_str(), h.value.as_str())),
        );
        let extracted = b3::extract(&b3_headers);
        if let Some(e) = extracted.single_error {
            log::debug!(
                "ignoring b3 header {:?}: {e}",
                clip(b3_headers.single.unwrap_or_default(), 128)
            );
        }
        if let Some(e) = extracted.multi_error {
            log::debug!("ignoring x-b3-* headers: {e}");
        }
        let plan = self.tracing.plan(&extracted.context);
        let mut span =
            self.tracing
                .start(&plan, operation_name(&method, route), start_time, || {
                    server_tags(&request)
                });

        let reply = match (&self.downstream, route, &method) {
            (Some((url, timeout)), Route::Chain, Method::Get | Method::Head) => {
                let with_single = b3_headers.single.is_some();
                self.call_downstream(url, *timeout, &plan, &request, with_single)
            }
            _ => self.app.handle(&method, route, OffsetDateTime::now_utc()),
        };
        let status = reply.status;
        span.set_tag(|| Tag::new("http.status_code", i64::from(status)));
        if status >= 500 {
            span.error_log(|log| {
                log.kind("http").message(format!("HTTP {status}"));
            });
        }
        respond(request, reply);
        // Finishing the span hands it to the reporter; its end is when the response was written.
        drop(span);
        self.metrics.observe(route, status, received.elapsed());
        access_log::stderr().record(&Entry {
            method: method.as_str(),
            path: &path,
            status,
            elapsed: received.elapsed(),
            trace_id: plan.trace_id,
            span_id: plan.span_id,
            sampled: plan.sampling.is_sampled(),
        });
    }

    /// `/chain`: GET the downstream URL in a client span, with the trace context propagated,
    /// and answer with its status and body (502 on failure, 504 on timeout).
    fn call_downstream(
        &self,
        url: &Url,
        timeout: Duration,
        server: &SpanPlan,
        request: &Request,
        with_single: bool,
    ) -> Reply {
        let client = server.child(crate::trace::random_id());
        let mut span = self.tracing.start(
            &client,
            format!("GET {}", path_of(&url.target)),
            SystemTime::now(),
            || {
                [
                    Tag::new("span.kind", "client"),
                    Tag::new("component", "myhelloworld"),
                    Tag::new("http.method", "GET"),
                    Tag::new("http.url", url.to_string()),
                    Tag::new("peer.hostname", url.host.clone()),
                    Tag::new("peer.port", i64::from(url.port)),
                ]
            },
        );
        let b3 = b3::Outgoing::new(&client.b3(), with_single);
        let mut headers: Vec<(&str, &str)> = b3.pairs().collect();
        headers.extend(request.headers().iter().filter_map(|h| {
            let name = FORWARDED.iter().find(|f| h.field.equiv(f))?;
            Some((*name, h.value.as_str()))
        }));
        let (reply, status, failure) = match downstream::get(url, &headers, timeout) {
            Ok(r) => (
                Reply::text(r.status, String::from_utf8_lossy(&r.body).into_owned()),
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
        };
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

/// Server span tags (OpenTracing conventions, as jaeger-client-go's HTTP middleware and Envoy).
/// Static strings where they can be: only the URL, the peer's address and the request id are
/// copied, once each.
fn server_tags(request: &Request) -> impl Iterator<Item = Tag> + use<> {
    let method: Cow<'static, str> = match standard_method(request.method()) {
        Some(name) => name.into(),
        None => clip(request.method().as_str(), 32).to_owned().into(),
    };
    let peer = request.remote_addr().map(|addr| {
        // At most 39 bytes (IPv6): one allocation, no regrowth.
        let mut ip = String::with_capacity(39);
        let _ = write!(ip, "{}", addr.ip());
        let key = if addr.is_ipv4() {
            "peer.ipv4"
        } else {
            "peer.ipv6"
        };
        [
            Tag::new(key, ip),
            Tag::new("peer.port", i64::from(addr.port())),
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
                clip(id.value.as_str(), MAX_SHORT_TAG).to_owned(),
            )
        });
    [
        Tag::new("span.kind", "server"),
        Tag::new("component", "tiny_http"),
        Tag::new("http.method", method),
        Tag::new("http.url", clip(request.url(), MAX_URL_TAG).to_owned()),
    ]
    .into_iter()
    .chain(peer.into_iter().flatten())
    .chain(request_id)
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

fn respond(request: Request, reply: Reply) {
    let body: Cow<'static, [u8]> = match reply.body {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    };
    let len = body.len();
    let mut headers = Vec::with_capacity(2);
    headers.extend(Header::from_bytes("Content-Type", reply.content_type).ok());
    if let Some(allow) = reply.allow {
        headers.extend(Header::from_bytes("Allow", allow).ok());
    }
    let response = Response::new(
        StatusCode(reply.status),
        headers,
        Cursor::new(body),
        Some(len),
        None,
    );
    if let Err(e) = request.respond(response) {
        log::debug!("writing a response failed: {e}");
    }
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
    use super::{MAX_HEAD_BYTES, MAX_HEADERS, clip, head_too_large};

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
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip("", 0), "");
    }
}

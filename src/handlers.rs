//! Routes and their responses. Pure: the caller passes the time in and writes the reply.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::OnceLock;
use time::{OffsetDateTime, UtcOffset};
use tiny_http::Method;

/// The target of the handlers' log lines, which `access_log::Logger` buffers.
pub(crate) const LOG_TARGET: &str = module_path!();

/// The routes of the service. Unknown paths share one route (and one span name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Root,
    GetTime,
    Healthz,
    /// Calls `DOWNSTREAM_URL` (the server does the call; see `server.rs`).
    Chain,
    /// Prometheus metrics (rendered by the server; see `metrics.rs`).
    Metrics,
    Unknown,
}

impl Route {
    pub(crate) const ALL: [Route; 6] = [
        Route::Root,
        Route::GetTime,
        Route::Healthz,
        Route::Chain,
        Route::Metrics,
        Route::Unknown,
    ];

    /// This route's place in a `PerRoute`: a match, so that a new route must be given one.
    fn index(self) -> usize {
        match self {
            Route::Root => 0,
            Route::GetTime => 1,
            Route::Healthz => 2,
            Route::Chain => 3,
            Route::Metrics => 4,
            Route::Unknown => 5,
        }
    }

    /// The `route` label of metrics.
    pub(crate) fn label(self) -> &'static str {
        self.path().unwrap_or("unknown")
    }

    /// The route of a request target (path, optionally with a query).
    pub(crate) fn of(target: &str) -> Route {
        match target.split_once('?').map_or(target, |(path, _)| path) {
            "/" => Route::Root,
            "/gettime" => Route::GetTime,
            "/healthz" => Route::Healthz,
            "/chain" => Route::Chain,
            "/metrics" => Route::Metrics,
            _ => Route::Unknown,
        }
    }

    /// Probes and scrapes are not traced: a span for each would only be noise.
    pub(crate) fn traced(self) -> bool {
        !matches!(self, Route::Healthz | Route::Metrics)
    }

    /// The route's path; `None` for unknown paths.
    pub(crate) fn path(self) -> Option<&'static str> {
        match self {
            Route::Root => Some("/"),
            Route::GetTime => Some("/gettime"),
            Route::Healthz => Some("/healthz"),
            Route::Chain => Some("/chain"),
            Route::Metrics => Some("/metrics"),
            Route::Unknown => None,
        }
    }
}

/// One `T` per route, indexed by the route.
#[derive(Debug)]
pub(crate) struct PerRoute<T>([T; Route::ALL.len()]);

impl<T> PerRoute<T> {
    pub(crate) const fn new(values: [T; Route::ALL.len()]) -> Self {
        PerRoute(values)
    }
}

impl<T> std::ops::Index<Route> for PerRoute<T> {
    type Output = T;

    fn index(&self, route: Route) -> &T {
        &self.0[route.index()]
    }
}

/// The name of a standard method, as a static string (tags and span names need no copy);
/// `None` for a non-standard one.
pub(crate) fn standard_method(method: &Method) -> Option<&'static str> {
    Some(match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Options => "OPTIONS",
        Method::Connect => "CONNECT",
        Method::Trace => "TRACE",
        Method::NonStandard(_) => return None,
    })
}

/// The span's operation name: `GET /gettime`, low cardinality. Unknown paths are named by
/// the method alone and non-standard methods are `_OTHER` (OpenTelemetry's HTTP span naming),
/// so a client cannot mint names. GET and HEAD, the common case, allocate nothing.
pub(crate) fn operation_name(method: &Method, route: Route) -> Cow<'static, str> {
    let method = standard_method(method).unwrap_or("_OTHER");
    match (method, route) {
        ("GET", Route::Root) => "GET /".into(),
        ("GET", Route::GetTime) => "GET /gettime".into(),
        ("HEAD", Route::Root) => "HEAD /".into(),
        ("HEAD", Route::GetTime) => "HEAD /gettime".into(),
        ("GET", Route::Chain) => "GET /chain".into(),
        (method, route) => match route.path() {
            Some(path) => format!("{method} {path}").into(),
            None => method.into(),
        },
    }
}

/// A response, before tiny_http writes it (it adds Content-Length and leaves the body out
/// for HEAD, 1xx, 204 and 304).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// Bytes: `/chain` relays the downstream's body as it came.
    pub(crate) body: Cow<'static, [u8]>,
    pub(crate) content_type: Cow<'static, str>,
    /// The `Allow` header of a 405.
    pub(crate) allow: Option<&'static str>,
    /// The `Location` header of a relayed answer.
    pub(crate) location: Option<String>,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Reply {
    pub(crate) fn text(status: u16, body: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            status,
            body: match body.into() {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
            content_type: TEXT.into(),
            allow: None,
            location: None,
        }
    }
}

/// What the handlers need: fixed at start-up.
#[derive(Debug)]
pub struct App {
    utc_offset: UtcOffset,
}

impl App {
    /// `utc_offset` is read once at start-up: `time` cannot read the local offset safely once
    /// threads run, and a container's zone (UTC) does not change.
    pub fn new(utc_offset: UtcOffset) -> App {
        App { utc_offset }
    }

    /// The reply of `route`. `/chain` with a downstream and `/metrics` need the server's
    /// state and are answered there; here `/chain` is the reply without a downstream.
    pub(crate) fn handle(&self, method: &Method, route: Route, now: OffsetDateTime) -> Reply {
        let not_found = || Reply::text(404, "404 page not found\n");
        if route == Route::Unknown {
            return not_found();
        }
        if !matches!(method, Method::Get | Method::Head) {
            return Reply {
                allow: Some("GET, HEAD"),
                ..Reply::text(405, "405 method not allowed\n")
            };
        }
        match route {
            Route::Root => Reply::text(200, hello_text()),
            Route::GetTime => {
                log::info!(target: LOG_TARGET, "Received getTime request");
                Reply::text(200, time_text(now.to_offset(self.utc_offset)))
            }
            Route::Healthz => Reply::text(200, "ok"),
            Route::Chain => Reply::text(404, "404 /chain calls DOWNSTREAM_URL, which is not set\n"),
            Route::Metrics | Route::Unknown => not_found(),
        }
    }
}

/// The original's greeting, with the OS and CPU of the build target: built once per process,
/// so every reply borrows it.
fn hello_text() -> &'static str {
    static HELLO: OnceLock<String> = OnceLock::new();
    HELLO.get_or_init(|| {
        format!(
            "hello world, I'm running on {} with an {} CPU ",
            std::env::consts::OS,
            std::env::consts::ARCH
        )
    })
}

/// `The time is ` and Go's ANSIC layout `Mon Jan _2 15:04:05 2006` (day padded with a space).
fn time_text(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut s = String::with_capacity(36);
    let _ = write!(
        s,
        "The time is {} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[t.weekday().number_days_from_monday() as usize],
        MONTHS[t.month() as usize - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn time_text_is_go_ansic() {
        let cases = [
            (
                datetime!(2026-11-21 22:45:07 UTC),
                "The time is Sat Nov 21 22:45:07 2026",
            ),
            (
                datetime!(2026-11-02 03:04:05 UTC),
                "The time is Mon Nov  2 03:04:05 2026",
            ),
            (
                datetime!(2006-01-02 15:04:05 UTC),
                "The time is Mon Jan  2 15:04:05 2006",
            ),
            (
                datetime!(2024-02-29 00:00:00 +01:00),
                "The time is Thu Feb 29 00:00:00 2024",
            ),
            (
                datetime!(1999-12-31 23:59:59 UTC),
                "The time is Fri Dec 31 23:59:59 1999",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(time_text(t), want);
        }
    }

    /// Every route has its own place in a `PerRoute`, and two `App`s share one greeting.
    #[test]
    fn per_route_places_and_one_greeting() {
        let mut places: Vec<usize> = Route::ALL.iter().map(|r| r.index()).collect();
        places.sort_unstable();
        assert_eq!(places, (0..Route::ALL.len()).collect::<Vec<_>>());
        let labels = PerRoute::new(Route::ALL.map(Route::label));
        for route in Route::ALL {
            assert_eq!(labels[route], route.label());
        }
        let now = time::macros::datetime!(2026-11-21 22:45:07 UTC);
        let [a, b] = [App::new(UtcOffset::UTC), App::new(UtcOffset::UTC)]
            .map(|app| app.handle(&Method::Get, Route::Root, now).body);
        assert!(std::ptr::eq(a.as_ref(), b.as_ref()), "built once");
    }

    #[test]
    fn routes() {
        let cases = [
            ("/", Route::Root),
            ("/?a=b", Route::Root),
            ("/gettime", Route::GetTime),
            ("/gettime?x=1", Route::GetTime),
            ("/healthz", Route::Healthz),
            ("/chain?x", Route::Chain),
            ("/metrics", Route::Metrics),
            ("/gettime/", Route::Unknown),
            ("/GETTIME", Route::Unknown),
            ("", Route::Unknown),
            ("*", Route::Unknown),
        ];
        for (target, want) in cases {
            assert_eq!(Route::of(target), want, "{target:?}");
        }
    }

    #[test]
    fn operation_names() {
        let other = Method::NonStandard("FROBNICATE".parse().unwrap());
        let cases = [
            (Method::Get, Route::GetTime, "GET /gettime"),
            (Method::Head, Route::Root, "HEAD /"),
            (Method::Post, Route::GetTime, "POST /gettime"),
            (Method::Get, Route::Unknown, "GET"),
            (other.clone(), Route::Unknown, "_OTHER"),
            (other, Route::Root, "_OTHER /"),
        ];
        for (method, route, want) in cases {
            assert_eq!(operation_name(&method, route), want);
        }
    }

    #[test]
    fn replies() {
        let app = App::new(UtcOffset::UTC);
        let now = datetime!(2026-11-21 22:45:07 UTC);
        let hello = app.handle(&Method::Get, Route::Root, now);
        assert_eq!(hello.status, 200);
        assert_eq!(
            hello.body,
            format!(
                "hello world, I'm running on {} with an {} CPU ",
                std::env::consts::OS,
                std::env::consts::ARCH
            )
            .as_bytes()
        );
        let time = app.handle(&Method::Head, Route::GetTime, now);
        assert_eq!(
            (time.status, time.body.as_ref()),
            (200, b"The time is Sat Nov 21 22:45:07 2026".as_slice())
        );
        assert_eq!(
            app.handle(&Method::Get, Route::Healthz, now).body,
            b"ok".as_slice()
        );
        let not_found = app.handle(&Method::Post, Route::Unknown, now);
        assert_eq!((not_found.status, not_found.allow), (404, None));
        let not_allowed = app.handle(&Method::Delete, Route::GetTime, now);
        assert_eq!(
            (not_allowed.status, not_allowed.allow),
            (405, Some("GET, HEAD"))
        );
        for reply in [hello, time, not_found, not_allowed] {
            assert_eq!(reply.content_type, "text/plain; charset=utf-8");
        }
    }
}

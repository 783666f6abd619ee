//! Traces across services, on one machine: the test plays the mesh ingress, instance A's
//! `/chain` calls instance B, and every span is decoded from the datagrams both send.

mod common;

use common::{Agent, Service, Span, TagValue};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(600);

const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const TRACE_HIGH: u64 = 0x80f198ee56343ba8;
const TRACE_LOW: u64 = 0x64fe8b2a57d3eff7;
/// The made-up ingress gateway span that "calls" A.
const INGRESS_SPAN: u64 = 0xe457b5a2e4d86bd1;

/// A and B, each with its own stand-in agent.
struct Chain {
    agent_a: Agent,
    agent_b: Agent,
    b: Service,
    a: Service,
}

fn chain() -> Chain {
    chain_to(&[])
}

/// A (default settings) calling B, started with `b_env` on top of its defaults.
fn chain_to(b_env: &[(&str, &str)]) -> Chain {
    let agent_a = Agent::new();
    let agent_b = Agent::new();
    let mut env = vec![("JAEGER_SERVICE_NAME", "backend")];
    env.extend_from_slice(b_env);
    let b = Service::start(agent_b.port(), &env);
    let url = format!("http://{}/gettime", b.addr);
    let a = Service::start(
        agent_a.port(),
        &[
            ("JAEGER_SERVICE_NAME", "frontend"),
            ("DOWNSTREAM_URL", &url),
        ],
    );
    Chain {
        agent_a,
        agent_b,
        b,
        a,
    }
}

fn kind(span: &Span) -> &str {
    span.str_tag("span.kind").unwrap_or_default()
}

/// A's server span, A's client span, B's server span, checked as one trace.
fn assert_one_trace(c: &Chain, parent_of_a: Option<u64>, flags: i32) -> (Span, Span, Span) {
    let a_spans = c.agent_a.spans(2, WAIT);
    let b_spans = c.agent_b.spans(1, WAIT);
    assert_eq!(
        (a_spans.len(), b_spans.len()),
        (2, 1),
        "{a_spans:?} {b_spans:?}"
    );
    let a_server = a_spans
        .iter()
        .find(|s| kind(s) == "server")
        .expect("A server span")
        .clone();
    let a_client = a_spans
        .iter()
        .find(|s| kind(s) == "client")
        .expect("A client span")
        .clone();
    let b_server = b_spans[0].clone();
    assert_eq!(kind(&b_server), "server");

    let trace = (a_server.trace_id_high, a_server.trace_id_low);
    for s in [&a_client, &b_server] {
        assert_eq!((s.trace_id_high, s.trace_id_low), trace, "one trace id");
    }
    for s in [&a_server, &a_client, &b_server] {
        assert_eq!(s.flags, flags, "{}", s.operation);
    }
    match parent_of_a {
        Some(p) => assert_eq!(a_server.parent_span_id, p),
        None => assert_eq!(a_server.parent_span_id, 0),
    }
    assert_eq!(
        a_client.parent_span_id, a_server.span_id,
        "client CHILD_OF server"
    );
    assert_eq!(
        a_client.references,
        vec![(0, trace.1, trace.0, a_server.span_id)]
    );
    assert_eq!(
        b_server.parent_span_id, a_client.span_id,
        "B CHILD_OF A's client span"
    );
    assert_eq!(a_server.operation, "GET /chain");
    assert_eq!(a_client.operation, "GET /gettime");
    assert_eq!(b_server.operation, "GET /gettime");
    (a_server, a_client, b_server)
}

#[test]
fn ingress_to_a_to_b_is_one_trace() {
    let c = chain();
    let response = c.a.get(
        "/chain",
        &[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
            ("x-request-id", "req-1"),
        ],
    );
    assert_eq!(response.status, 200);
    assert!(
        response.body.starts_with("The time is "),
        "{}",
        response.body
    );
    let (a_server, a_client, b_server) = assert_one_trace(&c, Some(INGRESS_SPAN), 1);
    assert_eq!(
        (a_server.trace_id_high, a_server.trace_id_low),
        (TRACE_HIGH, TRACE_LOW)
    );
    assert_eq!(
        a_client.str_tag("http.url"),
        Some(format!("http://{}/gettime", c.b.addr).as_str())
    );
    assert_eq!(a_client.str_tag("peer.hostname"), Some("127.0.0.1"));
    assert_eq!(
        a_client.tag("peer.port"),
        Some(&TagValue::Long(i64::from(c.b.addr.port())))
    );
    assert_eq!(a_client.tag("http.status_code"), Some(&TagValue::Long(200)));
    assert_eq!(a_client.tag("error"), None);
    // x-request-id went along: B tags its span with it too.
    assert_eq!(b_server.str_tag("guid:x-request-id"), Some("req-1"));

    // HEAD makes the same call and answers without the body.
    let head = c.a.request("HEAD", "/chain", &[]);
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(c.agent_b.spans(1, WAIT).len(), 1, "B was called");
}

#[test]
fn a_deny_is_forwarded_and_nobody_reports() {
    let c = chain();
    let response = c.a.get(
        "/chain",
        &[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ],
    );
    assert_eq!(response.status, 200);
    assert!(c.agent_a.spans_within(QUIET).is_empty());
    assert!(c.agent_b.spans_within(QUIET).is_empty());
    // B got the ids and the decision.
    let line =
        c.b.wait_for_log("GET /gettime 200", WAIT)
            .expect("B access log");
    assert!(line.contains(&format!("trace_id={TRACE}")), "{line}");
    assert!(line.contains("sampled=false"), "{line}");
}

#[test]
fn debug_is_forwarded() {
    let c = chain();
    let response =
        c.a.get("/chain", &[("b3", &format!("{TRACE}-e457b5a2e4d86bd1-d"))]);
    assert_eq!(response.status, 200);
    assert_one_trace(&c, Some(INGRESS_SPAN), 3);
}

#[test]
fn a_single_b3_header_alone_is_enough() {
    let c = chain();
    let response =
        c.a.get("/chain", &[("b3", &format!("{TRACE}-e457b5a2e4d86bd1-1"))]);
    assert_eq!(response.status, 200);
    let (a_server, ..) = assert_one_trace(&c, Some(INGRESS_SPAN), 1);
    assert_eq!(a_server.trace_id_low, TRACE_LOW);
}

#[test]
fn without_headers_a_starts_the_trace_and_b_joins_it() {
    let c = chain();
    assert_eq!(c.a.get("/chain", &[]).status, 200);
    let (a_server, ..) = assert_one_trace(&c, None, 1);
    assert_ne!(a_server.trace_id_high, 0);
    assert_eq!(a_server.str_tag("sampler.type"), Some("const"));
}

/// A downstream that records the request head and answers (or does not).
fn fake_downstream(answer: bool) -> (String, std::thread::JoinHandle<String>) {
    let answers: &[&[u8]] = if answer {
        &[b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"]
    } else {
        &[]
    };
    let (url, heads) = scripted_downstream(answers, 1);
    let head = std::thread::spawn(move || heads.join().unwrap().remove(0));
    (url, head)
}

/// A downstream taking `calls` connections one after the other: it records each request
/// head and writes the next of `answers`, raw, then closes; with no answer left it says
/// nothing for 2 s.
fn scripted_downstream(
    answers: &'static [&'static [u8]],
    calls: usize,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/gettime?from=a", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for i in 0..calls {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(WAIT)).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            match answers.get(i) {
                Some(answer) => {
                    let _ = conn.write_all(answer);
                }
                None => std::thread::sleep(Duration::from_secs(2)),
            }
            heads.push(String::from_utf8(head).unwrap());
        }
        heads
    });
    (url, handle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[test]
fn outgoing_headers_carry_the_client_span_and_copy_the_mesh_headers() {
    let agent = Agent::new();
    let (url, downstream) = fake_downstream(true);
    let a = Service::start(agent.port(), &[("DOWNSTREAM_URL", &url)]);
    let response = a.get(
        "/chain",
        &[
            (
                "b3",
                &format!("{TRACE}-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"),
            ),
            ("x-request-id", "req-7"),
            (
                "traceparent",
                "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
            ),
            ("tracestate", "vendor=x"),
            ("x-ot-span-context", "ot-ctx"),
            ("authorization", "secret"),
        ],
    );
    // The downstream's status and body are relayed.
    assert_eq!((response.status, response.body.as_str()), (503, "busy"));
    let head = downstream.join().unwrap();
    assert!(
        head.starts_with("GET /gettime?from=a HTTP/1.1\r\n"),
        "{head}"
    );

    let spans = agent.spans(2, WAIT);
    let server = spans.iter().find(|s| kind(s) == "server").unwrap();
    let client = spans.iter().find(|s| kind(s) == "client").unwrap();
    let hex = |id: u64| format!("{id:016x}");
    assert_eq!(header(&head, "x-b3-traceid"), Some(TRACE));
    assert_eq!(
        header(&head, "x-b3-spanid"),
        Some(hex(client.span_id).as_str())
    );
    assert_eq!(
        header(&head, "x-b3-parentspanid"),
        Some(hex(server.span_id).as_str())
    );
    assert_eq!(header(&head, "x-b3-sampled"), Some("1"));
    assert_eq!(header(&head, "x-b3-flags"), None);
    // The caller used the single header, so it goes on too, with the same ids.
    assert_eq!(
        header(&head, "b3"),
        Some(format!("{TRACE}-{}-1-{}", hex(client.span_id), hex(server.span_id)).as_str())
    );
    // W3C for the same client span, never the caller's traceparent; its tracestate goes on.
    assert_eq!(
        header(&head, "traceparent"),
        Some(format!("00-{TRACE}-{}-01", hex(client.span_id)).as_str())
    );
    for (name, value) in [
        ("x-request-id", "req-7"),
        ("tracestate", "vendor=x"),
        ("x-ot-span-context", "ot-ctx"),
    ] {
        assert_eq!(header(&head, name), Some(value), "{name}");
    }
    assert_eq!(
        header(&head, "authorization"),
        None,
        "only trace headers are copied"
    );
    // A downstream 5xx marks the client span and the server span as errors.
    assert_eq!(client.tag("http.status_code"), Some(&TagValue::Long(503)));
    assert_eq!(client.tag("error"), Some(&TagValue::Bool(true)));
    assert!(client.logs > 0);
    assert_eq!(server.tag("error"), Some(&TagValue::Bool(true)));
}

#[test]
fn an_unsampled_request_still_propagates_the_deny() {
    let agent = Agent::new();
    let (url, downstream) = fake_downstream(true);
    let a = Service::start(agent.port(), &[("DOWNSTREAM_URL", &url)]);
    assert_eq!(a.get("/chain", &[("b3", "0")]).status, 503);
    let head = downstream.join().unwrap();
    assert_eq!(header(&head, "x-b3-sampled"), Some("0"));
    assert!(header(&head, "x-b3-traceid").is_some_and(|t| t.len() == 32));
    assert!(header(&head, "x-b3-spanid").is_some());
    assert_eq!(
        header(&head, "b3").map(|v| v.ends_with("-0") || v.contains("-0-")),
        Some(true)
    );
    assert!(agent.spans_within(QUIET).is_empty());
}

/// What a W3C-only service must see in a trace made by a default one: B reads only
/// `traceparent`, so it can join only through the one A writes for its client span.
#[test]
fn a_w3c_only_downstream_joins_through_the_traceparent() {
    let c = chain_to(&[("JAEGER_PROPAGATION", "w3c")]);
    let b3 = [
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
    ];
    assert_eq!(c.a.get("/chain", &b3).status, 200);
    let (a_server, ..) = assert_one_trace(&c, Some(INGRESS_SPAN), 1);
    assert_eq!(
        (a_server.trace_id_high, a_server.trace_id_low),
        (TRACE_HIGH, TRACE_LOW)
    );
    // No headers: A starts the trace, B still joins it.
    assert_eq!(c.a.get("/chain", &[]).status, 200);
    assert_one_trace(&c, None, 1);
    // B really ignores B3: called with B3 alone, it starts a trace of its own.
    assert_eq!(c.b.get("/gettime", &b3).status, 200);
    let alone = c.agent_b.spans(1, WAIT);
    assert_eq!(alone.len(), 1);
    assert_eq!(alone[0].parent_span_id, 0);
    assert_ne!(alone[0].trace_id_hex(), TRACE);
}

/// A caller that speaks only W3C (Envoy's OpenTelemetry tracer, an OpenTelemetry SDK).
#[test]
fn a_lone_traceparent_continues_the_callers_trace() {
    let c = chain_to(&[("JAEGER_PROPAGATION", "w3c")]);
    let traceparent = format!("00-{TRACE}-e457b5a2e4d86bd1-01");
    let r = c.a.get("/chain", &[("traceparent", &traceparent)]);
    assert_eq!(r.status, 200);
    let (a_server, ..) = assert_one_trace(&c, Some(INGRESS_SPAN), 1);
    assert_eq!(
        (a_server.trace_id_high, a_server.trace_id_low),
        (TRACE_HIGH, TRACE_LOW)
    );
    // The caller's own decision: no sampled bit, no span anywhere, the deny goes on.
    let unsampled = format!("00-{TRACE}-e457b5a2e4d86bd1-00");
    assert_eq!(
        c.a.get("/chain", &[("traceparent", &unsampled)]).status,
        200
    );
    assert!(c.agent_a.spans_within(QUIET).is_empty());
    assert!(c.agent_b.spans_within(QUIET).is_empty());
    let line =
        c.b.wait_for_log("sampled=false", WAIT)
            .expect("B access log");
    assert!(line.contains(&format!("trace_id={TRACE}")), "{line}");
}

/// py_zipkin's headers: `X-B3-Flags: 0` on every request, with valid ids and a decision.
#[test]
fn b3_with_flags_0_continues_the_callers_trace() {
    let c = chain();
    for (trace, parent) in [
        (TRACE, 0xe457b5a2e4d86bd1),
        ("463ac35c9f6413ad", 0x0020000000000001),
    ] {
        let span = format!("{parent:016x}");
        let r = c.a.get(
            "/chain",
            &[
                ("X-B3-TraceId", trace),
                ("X-B3-SpanId", &span),
                ("X-B3-Flags", "0"),
                ("X-B3-Sampled", "1"),
            ],
        );
        assert_eq!(r.status, 200);
        let (a_server, ..) = assert_one_trace(&c, Some(parent), 1);
        assert_eq!(a_server.trace_id_hex(), trace);
    }
}

#[test]
fn a_dead_downstream_is_a_502_and_a_silent_one_a_504() {
    let agent = Agent::new();
    // A port with nothing listening: bind, learn the port, close.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = Service::start(
        agent.port(),
        &[("DOWNSTREAM_URL", &format!("http://{closed}/gettime"))],
    );
    let r = refused.get("/chain", &[]);
    assert_eq!(r.status, 502, "{}", r.body);
    let spans = agent.spans(2, WAIT);
    let client = spans.iter().find(|s| kind(s) == "client").unwrap();
    assert_eq!(client.tag("error"), Some(&TagValue::Bool(true)));
    assert_eq!(client.tag("http.status_code"), None);

    let (url, downstream) = fake_downstream(false);
    let silent = Service::start(
        agent.port(),
        &[("DOWNSTREAM_URL", &url), ("DOWNSTREAM_TIMEOUT", "300ms")],
    );
    let started = Instant::now();
    let r = silent.get("/chain", &[]);
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The worker is free again.
    assert_eq!(silent.get("/gettime", &[]).status, 200);
    downstream.join().unwrap();
}

#[test]
fn chain_without_a_downstream_is_404() {
    let agent = Agent::new();
    let a = Service::start(agent.port(), &[]);
    let r = a.get("/chain", &[]);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("DOWNSTREAM_URL"), "{}", r.body);
}

#[test]
fn forwarded_headers_with_control_bytes_are_not_forwarded() {
    let agent = Agent::new();
    let (url, downstream) = fake_downstream(true);
    let a = Service::start(
        agent.port(),
        &[("DOWNSTREAM_URL", &url), ("RUST_LOG", "debug")],
    );
    // Sent raw: tiny_http ends header lines at CRLF only, so the LF and the NUL stay inside
    // the values it hands us.
    let response = a.get(
        "/chain",
        &[
            ("x-request-id", "abc\nHost: evil.example"),
            ("traceparent", "00-\0-01"),
            ("x-ot-span-context", "vendor=x\tok"),
        ],
    );
    assert_eq!(response.status, 503);
    let head = downstream.join().unwrap();
    assert!(!head.contains("evil.example"), "{head:?}");
    assert!(!head.contains('\0'), "{head:?}");
    assert_eq!(header(&head, "x-request-id"), None, "{head:?}");
    // Our own traceparent, never the caller's.
    let ours = header(&head, "traceparent").expect("our traceparent");
    assert!(ours.starts_with("00-") && ours.len() == 55, "{ours:?}");
    // HTAB is allowed in a field value.
    assert_eq!(header(&head, "x-ot-span-context"), Some("vendor=x\tok"));
    assert!(
        a.wait_for_log("not forwarding x-request-id", WAIT)
            .is_some(),
        "{:?}",
        a.logs()
    );
    // Span tags hold the client's text with its control bytes escaped.
    let spans = agent.spans(2, WAIT);
    let server = spans.iter().find(|s| kind(s) == "server").unwrap();
    assert_eq!(
        server.str_tag("guid:x-request-id"),
        Some("abc\\x0aHost: evil.example")
    );
}

/// Every answer below, from a downstream playing by no rule, gives the client a complete
/// response on a keep-alive connection that stays in step; every request is traced with a
/// status and logged; the process lives.
#[test]
fn a_hostile_downstream_gets_a_502_or_is_relayed_whole() {
    const ANSWERS: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nb\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\xff\x00\xfe\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    ];
    let want: [(u16, &[u8]); 10] = [
        (502, b""),
        (200, b"ok"),
        (502, b""),
        (204, b""),
        (200, b"\xff\x00\xfe\n"),
        (502, b""),
        (502, b""),
        (502, b""),
        (502, b""),
        (502, b""),
    ];
    let agent = Agent::new();
    let (url, downstream) = scripted_downstream(ANSWERS, ANSWERS.len());
    let a = Service::start(agent.port(), &[("DOWNSTREAM_URL", &url)]);
    let mut client = common::KeepAlive::connect(a.addr).unwrap();
    for (i, (status, body)) in want.iter().enumerate() {
        match client.get("/chain", "") {
            common::Outcome::Complete {
                status: got,
                body: got_body,
            } => {
                assert_eq!(got, *status, "answer {i}");
                if *status != 502 {
                    assert_eq!(got_body, *body, "answer {i}");
                }
            }
            other => panic!("answer {i}: {other:?}"),
        }
    }
    assert_eq!(client.status("/gettime"), 200, "the connection is in step");
    downstream.join().unwrap();
    // Each /chain request: a server span with its status, a client span, an access-log line.
    let spans = agent.spans(2 * ANSWERS.len() + 1, WAIT);
    let mut statuses: Vec<i64> = spans
        .iter()
        .filter(|s| kind(s) == "server" && s.operation == "GET /chain")
        .map(|s| match s.tag("http.status_code") {
            Some(TagValue::Long(code)) => *code,
            other => panic!("{} without a status: {other:?}", s.operation),
        })
        .collect();
    statuses.sort();
    let mut wanted: Vec<i64> = want.iter().map(|(s, _)| i64::from(*s)).collect();
    wanted.sort();
    assert_eq!(statuses, wanted);
    // Access lines are buffered (up to a second: src/access_log.rs).
    let logged = || {
        a.logs()
            .iter()
            .filter(|l| l.contains("GET /chain "))
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while logged() < ANSWERS.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(logged(), ANSWERS.len(), "{:?}", a.logs());
    assert_eq!(a.get("/healthz", &[]).status, 200, "the process lives");
}

#[test]
fn a_redirect_is_relayed_with_its_location_and_type() {
    const ANSWERS: &[&[u8]] = &[
        b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/x?y=1\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nmoved",
        b"HTTP/1.1 302 Found\r\nLocation: /x\x01y\r\nContent-Length: 0\r\n\r\n",
    ];
    let agent = Agent::new();
    let (url, downstream) = scripted_downstream(ANSWERS, ANSWERS.len());
    let a = Service::start(agent.port(), &[("DOWNSTREAM_URL", &url)]);
    let r = a.get("/chain", &[]);
    assert_eq!((r.status, r.body.as_str()), (302, "moved"));
    assert_eq!(r.header("location"), Some("http://elsewhere/x?y=1"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    // A Location with a control byte is not relayed.
    let r = a.get("/chain", &[]);
    assert_eq!((r.status, r.header("location")), (302, None));
    downstream.join().unwrap();
}

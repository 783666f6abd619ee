//! The real service on loopback, its spans decoded from the UDP datagrams it sends.

mod common;

use common::{Agent, Service, TagValue, expect_sample, shutdown_counters};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
/// Long enough for several 50ms flushes: "nothing arrived" is then meaningful.
const QUIET: Duration = Duration::from_millis(600);

const TRACE_HIGH: u64 = 0x463ac35c9f6413ad;
const TRACE_LOW: u64 = 0x48485a3953bb6124;
const SIDECAR_SPAN: u64 = 0xa2fb4a1d1a96d312;
const GATEWAY_SPAN: u64 = 0x0020000000000001;

fn b3_multi(sampled: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124"),
        ("X-B3-SpanId", "a2fb4a1d1a96d312"),
        ("X-B3-ParentSpanId", "0020000000000001"),
        ("X-B3-Sampled", sampled),
    ]
}

#[test]
fn server_span_joins_the_incoming_trace_as_child_of_the_sidecar_span() {
    let agent = Agent::new();
    let service = Service::start(
        agent.port(),
        &[
            ("JAEGER_SERVICE_NAME", "frontend"),
            ("JAEGER_TAGS", "zone=test-1,pod=${POD_NAME:none}"),
            ("POD_NAME", "frontend-abc"),
        ],
    );
    let mut headers = b3_multi("1");
    headers.push(("x-request-id", "7c6f0a2e-1111-2222-3333-444455556666"));
    let response = service.get("/gettime?x=1", &headers);
    assert_eq!(response.status, 200);
    assert!(
        response.body.starts_with("The time is "),
        "{}",
        response.body
    );

    let datagrams = agent.collect(1, WAIT);
    assert_eq!(datagrams.len(), 1);
    let batch = &datagrams[0].batch;
    assert_eq!(batch.service_name, "frontend");
    assert_eq!(batch.process_tags["zone"], TagValue::Str("test-1".into()));
    assert_eq!(
        batch.process_tags["pod"],
        TagValue::Str("frontend-abc".into())
    );
    // As the Jaeger clients: the client's version, the host's name, and the IP the reporter
    // sends from (loopback here, the pod's IP in a cluster).
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        batch.process_tags["hostname"],
        TagValue::Str(hostname.trim_end().into())
    );
    assert_eq!(batch.process_tags["ip"], TagValue::Str("127.0.0.1".into()));
    assert_eq!(
        batch.process_tags["jaeger.version"],
        TagValue::Str(format!("myhelloworld-{}", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(batch.spans.len(), 1);
    let span = &batch.spans[0];
    assert_eq!(
        (span.trace_id_high, span.trace_id_low),
        (TRACE_HIGH, TRACE_LOW)
    );
    assert_ne!(span.span_id, SIDECAR_SPAN, "a new span, not the sidecar's");
    assert_eq!(span.parent_span_id, SIDECAR_SPAN);
    assert_eq!(
        span.references,
        vec![(0, TRACE_LOW, TRACE_HIGH, SIDECAR_SPAN)],
        "CHILD_OF the sidecar span"
    );
    assert_eq!(span.flags, 1);
    assert_eq!(span.operation, "GET /gettime");
    assert!(span.duration >= 0 && span.start_time > 1_700_000_000_000_000);
    let want = [
        ("span.kind", TagValue::Str("server".into())),
        ("component", TagValue::Str("tiny_http".into())),
        ("http.method", TagValue::Str("GET".into())),
        ("http.url", TagValue::Str("/gettime?x=1".into())),
        ("http.status_code", TagValue::Long(200)),
        ("peer.ipv4", TagValue::Str("127.0.0.1".into())),
        (
            "guid:x-request-id",
            TagValue::Str("7c6f0a2e-1111-2222-3333-444455556666".into()),
        ),
    ];
    for (key, value) in want {
        assert_eq!(span.tag(key), Some(&value), "tag {key}");
    }
    assert!(matches!(span.tag("peer.port"), Some(TagValue::Long(p)) if *p > 0));
    // The caller decided sampling: no sampler tags, no error.
    assert_eq!(span.tag("sampler.type"), None);
    assert_eq!(span.tag("error"), None);

    // The access log names the same trace and span.
    let line = service
        .wait_for_log("GET /gettime 200", WAIT)
        .expect("access log line");
    assert!(
        line.contains("trace_id=463ac35c9f6413ad48485a3953bb6124"),
        "{line}"
    );
    assert!(
        line.contains(&format!("span_id={:016x}", span.span_id)),
        "{line}"
    );
    assert!(
        service
            .wait_for_log("Received getTime request", WAIT)
            .is_some()
    );
}

#[test]
fn single_b3_header_with_debug_sets_the_debug_flag_and_keeps_a_64_bit_trace_id() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[]);
    let response = service.get(
        "/",
        &[
            ("b3", "463ac35c9f6413ad-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90"),
            // b3 wins over the multiple headers.
            ("x-b3-traceid", "1111111111111111"),
            ("x-b3-spanid", "2222222222222222"),
            ("x-b3-sampled", "0"),
        ],
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        format!(
            "hello world, I'm running on {} with an {} CPU ",
            std::env::consts::OS,
            std::env::consts::ARCH
        )
    );
    let spans: Vec<_> = agent.spans(1, WAIT);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!((span.trace_id_high, span.trace_id_low), (0, TRACE_HIGH));
    assert_eq!(span.parent_span_id, 0xe457b5a2e4d86bd1);
    assert_eq!(span.flags, 3, "sampled | debug");
    assert_eq!(span.operation, "GET /");
    assert_eq!(span.tag("jaeger-debug-id"), None);
}

#[test]
fn a_deny_decision_reports_nothing_but_is_logged_with_its_ids() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[]);
    assert_eq!(service.get("/gettime", &b3_multi("0")).status, 200);
    assert_eq!(service.get("/", &[("b3", "0")]).status, 200);
    assert!(
        agent.spans_within(QUIET).is_empty(),
        "denied spans were sent"
    );
    let line = service
        .wait_for_log("GET /gettime 200", WAIT)
        .expect("access log");
    assert!(
        line.contains("trace_id=463ac35c9f6413ad48485a3953bb6124"),
        "{line}"
    );
    assert!(line.contains("sampled=false"), "{line}");

    // The pipe works: a sampled request after them is reported, alone.
    assert_eq!(service.get("/gettime", &b3_multi("1")).status, 200);
    let spans: Vec<_> = agent.spans(1, WAIT);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent_span_id, SIDECAR_SPAN);
}

#[test]
fn without_headers_the_sampler_starts_a_128_bit_root_trace() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[]);
    assert_eq!(service.get("/gettime", &[]).status, 200);
    let spans: Vec<_> = agent.spans(1, WAIT);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_ne!(span.trace_id_high, 0, "128-bit, like Istio's");
    assert_eq!(span.parent_span_id, 0);
    assert!(span.references.is_empty());
    assert_eq!(
        span.tag("sampler.type"),
        Some(&TagValue::Str("const".into()))
    );
    assert_eq!(span.tag("sampler.param"), Some(&TagValue::Double(1.0)));

    // A deferred decision (ids, no sampled header) also goes to the sampler.
    let off = Agent::new();
    let never = Service::start(
        off.port(),
        &[
            ("JAEGER_SAMPLER_TYPE", "const"),
            ("JAEGER_SAMPLER_PARAM", "0"),
        ],
    );
    let deferred = [
        ("x-b3-traceid", "463ac35c9f6413ad"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ];
    assert_eq!(never.get("/gettime", &deferred).status, 200);
    assert_eq!(never.get("/gettime", &[]).status, 200);
    // ...but an explicit accept is obeyed whatever the sampler says.
    assert_eq!(never.get("/gettime", &b3_multi("1")).status, 200);
    let spans = off.spans_within(QUIET);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].trace_id_low, TRACE_LOW);
}

#[test]
fn malformed_headers_are_ignored_and_a_new_trace_starts() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[("RUST_LOG", "debug")]);
    let garbage = "Z".repeat(10_000);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("x-b3-traceid", "not-hex"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ],
        vec![
            ("x-b3-traceid", "00000000000000000000000000000000"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ],
        vec![("b3", &garbage)],
        vec![("b3", "463ac35c9f6413ad-e457b5a2e4d86bd1-maybe")],
        vec![("x-b3-sampled", "perhaps")],
        vec![
            (
                "traceparent",
                "00-00000000000000000000000000000000-a2fb4a1d1a96d312-01",
            ),
            ("tracestate", "foo=1"),
        ],
        vec![
            (
                "traceparent",
                "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
            ),
            (
                "traceparent",
                "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
            ),
        ],
    ];
    for headers in &cases {
        assert_eq!(service.get("/gettime", headers).status, 200, "{headers:?}");
    }
    let spans = agent.spans(cases.len(), WAIT);
    assert_eq!(spans.len(), cases.len());
    for span in &spans {
        assert_eq!(span.parent_span_id, 0, "a new root: {span:?}");
        assert_ne!(span.trace_id_high, 0);
        assert_eq!(
            span.tag("sampler.type"),
            Some(&TagValue::Str("const".into()))
        );
    }
    assert!(
        service
            .wait_for_log("ignoring x-b3-* headers: trace id is not", WAIT)
            .is_some()
    );
    assert!(service.wait_for_log("ignoring b3 header", WAIT).is_some());
    assert!(
        service
            .wait_for_log("ignoring traceparent: trace id is not", WAIT)
            .is_some()
    );
    assert!(
        service
            .wait_for_log("ignoring traceparent: more than one", WAIT)
            .is_some()
    );
    assert!(
        service
            .wait_for_log("x-b3-sampled is not 1, 0, true or false", WAIT)
            .is_some()
    );
}

#[test]
fn shared_rpc_span_reuses_the_callers_span_id() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[("ZIPKIN_SHARED_RPC_SPAN", "true")]);
    assert_eq!(service.get("/gettime", &b3_multi("1")).status, 200);
    let spans: Vec<_> = agent.spans(1, WAIT);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span_id, SIDECAR_SPAN);
    assert_eq!(spans[0].parent_span_id, GATEWAY_SPAN);
}

#[test]
fn responses_have_type_and_length_and_head_has_no_body() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[]);
    let get = service.get("/gettime", &[]);
    let head = service.request("HEAD", "/gettime", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(head.header("Content-Length"), get.header("Content-Length"));
    assert_eq!(
        get.header("Content-Length"),
        Some(get.body.len().to_string().as_str())
    );
    let not_found = service.get("/nope", &[]);
    assert_eq!(not_found.status, 404);
    let not_allowed = service.request("POST", "/gettime", &[]);
    assert_eq!(not_allowed.status, 405);
    assert_eq!(not_allowed.header("Allow"), Some("GET, HEAD"));
    let health = service.get("/healthz", &[]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    for r in [&get, &head, &not_found, &not_allowed, &health] {
        assert!(r.header("Content-Type").is_some(), "{r:?}");
        assert!(r.header("Content-Length").is_some(), "{r:?}");
    }
    // Probes are not traced: get, head, 404 and 405 are; healthz is not.
    let ops: Vec<String> = agent
        .spans(4, WAIT)
        .into_iter()
        .map(|s| s.operation)
        .collect();
    let mut sorted = ops.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["GET", "GET /gettime", "HEAD /gettime", "POST /gettime"]
    );
    assert!(agent.spans_within(QUIET).is_empty());
}

#[test]
fn sigterm_delivers_queued_spans_before_exit() {
    let agent = Agent::new();
    // The flush interval is an hour: only the shutdown flush can send these spans.
    let service = Service::start(agent.port(), &[("JAEGER_REPORTER_FLUSH_INTERVAL", "1h")]);
    for _ in 0..5 {
        assert_eq!(service.get("/gettime", &[]).status, 200);
    }
    let (status, logs) = service.terminate(WAIT);
    assert!(status.success(), "exit status {status:?}");
    let spans: Vec<_> = agent.spans(5, WAIT);
    assert_eq!(spans.len(), 5);
    let counters = shutdown_counters(&logs);
    assert_eq!(counters["admitted"], 5);
    assert_eq!(counters["sent"], 5);
    assert!(logs.iter().any(|l| l.contains("SIGTERM received")));
    // tiny_http's accept loop ends with an error when the listening socket is shut: not ours
    // to report as one.
    assert!(
        !logs.iter().any(|l| l.starts_with("[ERROR")),
        "a graceful stop logs no error: {logs:?}"
    );
}

#[test]
fn a_flood_past_the_queue_drops_and_counts_without_stalling() {
    let agent = Agent::new();
    // One slot: a span in flight holds it, so concurrent requests find the queue full.
    let service = Service::start(agent.port(), &[("JAEGER_REPORTER_MAX_QUEUE_SIZE", "1")]);
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 60;
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                for _ in 0..REQUESTS {
                    assert_eq!(service.get("/gettime", &[]).status, 200);
                }
            });
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "requests stalled"
    );
    let (status, logs) = service.terminate(WAIT);
    assert!(status.success());
    let counters = shutdown_counters(&logs);
    let total = (CLIENTS * REQUESTS) as u64;
    assert_eq!(
        counters["admitted"] + counters["queue_full"],
        total,
        "{counters:?}"
    );
    assert!(
        counters["queue_full"] > 0,
        "the flood was not past the queue: {counters:?}"
    );
    let received: usize = agent
        .collect(counters["sent"] as usize, WAIT)
        .iter()
        .map(|d| d.batch.spans.len())
        .sum();
    assert_eq!(received as u64, counters["sent"]);
    assert_eq!(counters["sent"], counters["admitted"]);
}

#[test]
fn datagrams_never_exceed_the_agents_packet_size() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[("JAEGER_REPORTER_FLUSH_INTERVAL", "1h")]);
    // ~2 KiB of URL per span: 200 spans cannot fit in one datagram.
    let target = format!("/gettime?pad={}", "p".repeat(2000));
    const N: usize = 200;
    for _ in 0..N {
        assert_eq!(service.get(&target, &[]).status, 200);
    }
    let (status, _) = service.terminate(WAIT);
    assert!(status.success());
    let datagrams = agent.collect(N, WAIT);
    assert!(datagrams.len() > 1, "one datagram for {N} large spans");
    for d in &datagrams {
        assert!(d.len <= 65_000, "datagram of {} bytes", d.len);
    }
    // Sized exactly, datagrams are full: a ~2.1 KB span more would not have fitted.
    let sizes: Vec<usize> = datagrams.iter().map(|d| d.len).collect();
    assert!(
        sizes.iter().filter(|&&len| len < 62_000).count() <= 1,
        "datagrams not filled: {sizes:?}"
    );
    let spans: usize = datagrams.iter().map(|d| d.batch.spans.len()).sum();
    assert_eq!(spans, N);
}

#[test]
fn an_unresolvable_agent_does_not_stop_serving_and_drops_are_counted() {
    // A name no resolver may look up: its first label is longer than DNS's 63 octets, so glibc
    // and musl both fail while encoding the query, at once. A well-formed name such as
    // `jaeger-agent.invalid` would make this test wait on DNS: in the Nix build sandbox (no
    // resolv.conf, nothing on 127.0.0.1:53) musl gives up only after its 5 s timeout.
    let host = format!("{}.invalid", "a".repeat(64));
    let service = Service::start(
        9, // unused: the host does not resolve
        &[("JAEGER_AGENT_HOST", &host)],
    );
    for _ in 0..3 {
        assert_eq!(service.get("/gettime", &[]).status, 200);
    }
    assert!(service.wait_for_log("does not resolve", WAIT).is_some());
    let (status, logs) = service.terminate(WAIT);
    assert!(status.success());
    let counters = shutdown_counters(&logs);
    assert_eq!(counters["admitted"], 3);
    assert_eq!(counters["agent_unresolved"], 3);
    assert_eq!(counters["sent"], 0);
}

/// `[::1]` is how jaeger-client-go takes an IPv6 agent (it writes `host:port`): spans get
/// there; and the service listens on IPv6 when asked.
#[test]
fn an_ipv6_agent_in_brackets_receives_the_spans() {
    let agent = std::net::UdpSocket::bind("[::1]:0").expect("IPv6 loopback");
    agent.set_read_timeout(Some(WAIT)).unwrap();
    let port = agent.local_addr().unwrap().port();
    let service = Service::start(port, &[("JAEGER_AGENT_HOST", "[::1]"), ("HOST", "[::1]")]);
    assert!(service.addr.is_ipv6(), "{}", service.addr);
    assert_eq!(service.get("/gettime", &[]).status, 200);
    let mut datagram = vec![0u8; 65_536];
    let len = agent
        .recv(&mut datagram)
        .expect("a datagram from the service");
    let batch = common::decode_emit_batch(&datagram[..len]);
    assert_eq!(batch.spans.len(), 1);
    assert_eq!(batch.spans[0].operation, "GET /gettime");
}

#[test]
fn jaeger_disabled_serves_and_sends_nothing() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[("JAEGER_DISABLED", "true")]);
    assert_eq!(service.get("/gettime", &b3_multi("1")).status, 200);
    assert!(agent.spans_within(QUIET).is_empty());
    let line = service
        .wait_for_log("GET /gettime 200", WAIT)
        .expect("access log");
    assert!(
        line.contains("trace_id=463ac35c9f6413ad48485a3953bb6124"),
        "{line}"
    );
}

#[test]
fn log_spans_prints_every_finished_span() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[("JAEGER_REPORTER_LOG_SPANS", "true")]);
    assert_eq!(service.get("/gettime", &b3_multi("1")).status, 200);
    let line = service
        .wait_for_log("operation=\"GET /gettime\"", WAIT)
        .expect("span log");
    assert!(
        line.contains("trace_id=463ac35c9f6413ad48485a3953bb6124"),
        "{line}"
    );
    assert!(line.contains("parent_id=a2fb4a1d1a96d312"), "{line}");
    assert!(line.contains("duration_us="), "{line}");
}

#[test]
fn invalid_settings_stop_start_up_with_one_line_and_status_2() {
    let cases = [
        ("JAEGER_AGENT_PORT", "abc"),
        ("JAEGER_SAMPLER_TYPE", "remote"),
        ("JAEGER_REPORTER_FLUSH_INTERVAL", "soon"),
        ("WORKERS", "0"),
        ("JAEGER_PROPAGATION", "b3,jaeger"),
        ("HOST", "notanip"),
        ("JAEGER_AGENT_HOST", "[notanip]"),
    ];
    for (var, value) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_myhelloworld"))
            .env_clear()
            .env(var, value)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("invalid {var}=\"{value}\": expected")),
            "{stderr}"
        );
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_myhelloworld"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("JAEGER_REPORTER_FLUSH_INTERVAL"));
    assert!(help.contains("JAEGER_PROPAGATION"));
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_myhelloworld"))
        .arg("--version")
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("myhelloworld {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn metrics_count_requests_and_spans_and_are_not_traced() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[]);
    for _ in 0..3 {
        assert_eq!(service.get("/gettime", &[]).status, 200);
    }
    assert_eq!(service.get("/nope", &[]).status, 404);
    assert_eq!(service.get("/gettime", &b3_multi("0")).status, 200);
    let datagrams = agent.collect(4, WAIT);
    let received: usize = datagrams.iter().map(|d| d.batch.spans.len()).sum();
    assert_eq!(received, 4);
    let metrics = service.get("/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let value = |series: &str| -> f64 { expect_sample(&metrics.body, series) };
    assert_eq!(
        value("myhelloworld_http_requests_total{route=\"/gettime\",status=\"200\"}"),
        4.0
    );
    assert_eq!(
        value("myhelloworld_http_requests_total{route=\"unknown\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value("myhelloworld_http_request_duration_seconds_count{route=\"/gettime\"}"),
        4.0
    );
    // The deny made no span: 4 finished, 4 sent, as the agent saw.
    assert_eq!(value("myhelloworld_spans_finished_total"), 4.0);
    assert_eq!(value("myhelloworld_spans_sent_total"), 4.0);
    assert_eq!(
        value("myhelloworld_spans_dropped_total{reason=\"queue_full\"}"),
        0.0
    );
    // The scrape itself is counted afterwards and never traced.
    assert!(agent.spans_within(QUIET).is_empty());
    let again = service.get("/metrics", &[]);
    assert!(
        again
            .body
            .contains("myhelloworld_http_requests_total{route=\"/metrics\",status=\"200\"} 1")
    );
    // Read after the quiet wait: the reporter counts a datagram just after sending it.
    assert_eq!(
        expect_sample::<usize>(&again.body, "myhelloworld_reporter_datagrams_total"),
        datagrams.len()
    );
    let bytes: usize = datagrams.iter().map(|d| d.len).sum();
    assert_eq!(
        expect_sample::<usize>(&again.body, "myhelloworld_reporter_bytes_total"),
        bytes
    );
}

#[test]
fn a_request_line_with_control_bytes_gives_one_escaped_access_line() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[]);
    // tiny_http ends a line only at CRLF and splits the request line at spaces: a bare LF
    // or CR, NUL, ESC, DEL, tabs, a quote and a backslash all reach the path we log.
    let forged = "/x\n[INFO\taccess]\tGET\t/forged\t200\r\0\x1b[31m\x7f\"\\";
    assert_eq!(service.get(forged, &[]).status, 404);
    let line = service.wait_for_log("GET /x", WAIT).expect("access line");
    let want = "[INFO  access] GET /x\\x0A[INFO\\x09access]\\x09GET\\x09/forged\\x09200\\x0D\\x00\\x1B[31m\\x7F\\x22\\x5C 404 ";
    assert!(line.starts_with(want), "{line:?}");
    assert!(line.ends_with("sampled=true"), "{line:?}");
    let logs = service.logs();
    assert_eq!(
        logs.iter().filter(|l| l.contains("forged")).count(),
        1,
        "one line: {logs:?}"
    );
}

#[test]
fn a_buffered_handler_line_precedes_a_later_warning() {
    let agent = Agent::new();
    let service = Service::start(agent.port(), &[]);
    assert_eq!(service.get("/gettime", &[]).status, 200);
    // A refused head logs a warning at once: the buffered line of the request before it
    // must be written first.
    let refused = service.get("/", &[("x-filler", "1"); 101]);
    assert_eq!(refused.status, 431);
    service
        .wait_for_log("refused GET /", WAIT)
        .expect("warning");
    let logs = service.logs();
    let at = |needle: &str| logs.iter().position(|l| l.contains(needle));
    let (Some(handler), Some(warning)) = (at("Received getTime request"), at("refused GET /"))
    else {
        panic!("both lines: {logs:?}");
    };
    assert!(handler < warning, "{logs:?}");
    assert_eq!(
        logs[handler], "[INFO  myhelloworld::handlers] Received getTime request",
        "as env_logger writes it"
    );
}

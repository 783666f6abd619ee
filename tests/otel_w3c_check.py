"""Checks our W3C Trace Context against OpenTelemetry's Python propagator, both ways.

Usage: otel_w3c_check.py PATH/TO/myhelloworld   (run by tests/otel_w3c_check.sh)

In: OpenTelemetry's SDK makes real spans (sampled, unsampled, with a tracestate, a child of a
remote parent) and `TraceContextTextMapPropagator.inject` writes their `traceparent` and
`tracestate`; the service, started with `JAEGER_PROPAGATION=w3c`, receives them on `/chain`.
Its span log (`JAEGER_REPORTER_LOG_SPANS`) and access log must show the same trace id, the
OpenTelemetry span as parent, and the caller's decision (no span at all when unsampled).
Out: `/chain` calls a stand-in downstream here, and the same propagator's `extract` reads what
the service sent: the same trace id, the service's client span as parent, the decision, and
the caller's tracestate unchanged.

Everything is loopback and bounded in time; the service is killed on any failure.
"""

import http.client
import http.server
import queue
import re
import socket
import sys
import threading
import time

from check_support import CheckFailed, check, exit_on_signals, start_service
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

STARTUP_TIMEOUT = 15.0
LOG_TIMEOUT = 5.0
HTTP_TIMEOUT = 5.0
PROPAGATOR = TraceContextTextMapPropagator()
SPAN_LINE = re.compile(
    r"trace_id=([0-9a-f]+) span_id=([0-9a-f]{16}) parent_id=([0-9a-f]{16}) "
    r'flags=(\d+) operation="([^"]*)"'
)
ACCESS_LINE = re.compile(
    r"GET /chain 200 .* trace_id=([0-9a-f]+) span_id=([0-9a-f]{16}) sampled=(\w+)"
)


class Downstream(http.server.BaseHTTPRequestHandler):
    """The service's downstream: records the headers of each call and answers 200."""

    calls = queue.Queue()

    def do_GET(self):  # noqa: N802 (the http.server API)
        Downstream.calls.put(list(self.headers.items()))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def otel_headers(sampler, parent=None):
    """Starts and ends one OpenTelemetry span; returns its context and the injected headers."""
    tracer = TracerProvider(sampler=sampler).get_tracer("otel-w3c-check")
    context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
    with tracer.start_as_current_span("caller", context=context) as span:
        carrier = {}
        PROPAGATOR.inject(carrier)
        return span.get_span_context(), carrier


def cases():
    """(name, OpenTelemetry span context, headers it injected)."""
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]),
    )
    crowded = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([(f"k{i:02}", "v" * 8) for i in range(32)]),
    )
    return [
        ("sampled root", *otel_headers(ALWAYS_ON)),
        ("unsampled root", *otel_headers(ALWAYS_OFF)),
        ("child of a remote parent, with tracestate", *otel_headers(ALWAYS_ON, remote)),
        ("32 tracestate members", *otel_headers(ALWAYS_ON, crowded)),
    ]


class Log:
    """The service's stderr, read by a thread. `wait` takes the first line not taken yet that
    matches, waiting for it up to a deadline; every line is kept for a failure's report."""

    def __init__(self, proc):
        self.lines, self.untaken, self.all = queue.Queue(), [], []
        threading.Thread(target=self._read, args=(proc.stderr,), daemon=True).start()

    def _read(self, stream):
        for line in stream:  # ends when the service's stderr closes
            self.lines.put(line.rstrip("\n"))

    def wait(self, pattern, what, timeout=LOG_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self.untaken):
                if m := pattern.search(line):
                    del self.untaken[i]
                    return m
            if time.monotonic() >= deadline:
                raise CheckFailed(f"no log line for {what} within {timeout} s")
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            self.untaken.append(line)
            self.all.append(line)


def run_case(port, log, name, otel, headers):
    trace_hex = f"{otel.trace_id:032x}"
    sampled = otel.trace_flags.sampled
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", "/chain", headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    check(response.status == 200, f"{name}: HTTP {response.status} {body!r}")

    # In: the service joined the OpenTelemetry span's trace, with its decision.
    access = log.wait(ACCESS_LINE, f"{name}: access log")
    check(
        int(access.group(1), 16) == otel.trace_id,
        f"{name}: trace {access.group(1)} != {trace_hex}",
    )
    check(access.group(3) == str(sampled).lower(), f"{name}: sampled={access.group(3)}")
    server_span = access.group(2)
    client_span = None
    if sampled:
        spans = {}
        for _ in range(2):
            m = log.wait(SPAN_LINE, f"{name}: span log")
            spans[m.group(5)] = m
        server, client = spans.get("GET /chain"), spans.get("GET /downstream")
        check(server and client, f"{name}: span operations {sorted(spans)}")
        for m in (server, client):
            check(int(m.group(1), 16) == otel.trace_id, f"{name}: span trace {m.group(1)}")
            check(m.group(4) == "1", f"{name}: flags {m.group(4)}")
        check(server.group(2) == server_span, f"{name}: server span {server.group(2)}")
        check(
            int(server.group(3), 16) == otel.span_id,
            f"{name}: server span's parent {server.group(3)}, expected {otel.span_id:016x}",
        )
        check(client.group(3) == server_span, f"{name}: client span's parent {client.group(3)}")
        client_span = int(client.group(2), 16)

    # Out: what the service sent downstream, read by OpenTelemetry's propagator.
    try:
        sent = Downstream.calls.get(timeout=HTTP_TIMEOUT)
    except queue.Empty:
        raise CheckFailed(f"{name}: the downstream was not called")
    carrier = {}
    for key, value in sent:
        carrier.setdefault(key.lower(), []).append(value)
    check(len(carrier.get("traceparent", [])) == 1, f"{name}: traceparent headers {carrier}")
    check("b3" not in carrier and "x-b3-traceid" not in carrier, f"{name}: B3 sent with w3c only")
    got = trace.get_current_span(PROPAGATOR.extract(carrier)).get_span_context()
    check(got.is_valid and got.is_remote, f"{name}: OpenTelemetry read no context from {carrier}")
    check(got.trace_id == otel.trace_id, f"{name}: downstream trace {got.trace_id:032x}")
    check(got.span_id != otel.span_id, f"{name}: the caller's traceparent was forwarded unchanged")
    if client_span is not None:
        check(got.span_id == client_span, f"{name}: downstream parent {got.span_id:016x}")
    check(
        got.trace_flags.sampled == sampled,
        f"{name}: downstream sampled={got.trace_flags.sampled}",
    )
    check(
        got.trace_state.to_header() == otel.trace_state.to_header(),
        f"{name}: tracestate {got.trace_state.to_header()!r} != {otel.trace_state.to_header()!r}",
    )


def run(binary):
    downstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Downstream)
    threading.Thread(target=downstream.serve_forever, daemon=True).start()
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))  # spans are checked in the log; datagrams are not read
    proc = start_service(
        binary,
        {
            "JAEGER_AGENT_HOST": "127.0.0.1",
            "JAEGER_AGENT_PORT": str(agent.getsockname()[1]),
            "JAEGER_REPORTER_LOG_SPANS": "true",
            "JAEGER_REPORTER_FLUSH_INTERVAL": "50ms",
            "JAEGER_PROPAGATION": "w3c",
            "DOWNSTREAM_URL": f"http://127.0.0.1:{downstream.server_address[1]}/downstream",
        },
    )
    log = Log(proc)
    try:
        listening = log.wait(
            re.compile(r"listening on http://127\.0\.0\.1:(\d+)"), "start-up", STARTUP_TIMEOUT
        )
        port = int(listening.group(1))
        all_cases = cases()
        for name, otel, headers in all_cases:
            run_case(port, log, name, otel, headers)
        return len(all_cases)
    finally:
        proc.kill()
        proc.wait(timeout=5)
        downstream.shutdown()
        agent.close()
        if sys.exc_info()[0] is not None:
            print(
                "the service's log:", *("  " + line for line in log.all), sep="\n", file=sys.stderr
            )


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2

    exit_on_signals()
    try:
        n = run(sys.argv[1])
    except CheckFailed as e:
        print(f"opentelemetry w3c check FAILED: {e}", file=sys.stderr)
        return 1
    print(f"opentelemetry w3c: {n} cases, both directions, all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

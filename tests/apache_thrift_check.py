"""Checks the service's Jaeger datagrams with Apache Thrift's own Python library.

Usage: apache_thrift_check.py PATH/TO/myhelloworld   (run by tests/apache_thrift_check.sh)

Our reporter writes jaeger.thrift's `Agent.emitBatch` in the Thrift compact protocol by hand
(src/jaeger_thrift.rs). The unit tests compare its bytes with thrift_codec's; this compares
them with the reference implementation instead: a UDP socket on loopback stands in for the
Jaeger agent, the service is started with its agent there, serves four requests and is
stopped with SIGTERM (it flushes its spans), and every datagram is decoded with
`thrift.protocol.TCompactProtocol` without generated code: a generic reader turns each struct
into a dict {field id: value}, checked against jaeger.thrift's field types, then the spans are
checked against what the requests should have produced.

Everything is loopback and bounded in time; the service is killed on any failure.
"""

import http.client
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from check_support import CheckFailed, check, exit_on_signals, start_service
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer

U64 = (1 << 64) - 1
QUIET = 0.3  # seconds without a datagram that end the collection
STARTUP_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0
COLLECT_TIMEOUT = 5.0
HTTP_TIMEOUT = 5.0

# jaeger.thrift's TagType and SpanRefType.
TAG_STRING, TAG_DOUBLE, TAG_BOOL, TAG_LONG, TAG_BINARY = range(5)
CHILD_OF = 0

# The B3 examples of the B3 specification (openzipkin/b3-propagation).
MULTI = {
    "X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124",
    "X-B3-SpanId": "a2fb4a1d1a96d312",
    "X-B3-Sampled": "1",
}
SINGLE = {"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"}


# --- Generic reading with Apache Thrift's compact protocol ---------------------------------


class Struct(dict):
    """A decoded struct: {field id: value}, and the Thrift type of each field in `types`."""

    def __init__(self):
        super().__init__()
        self.types = {}


def read_value(proto, ttype, depth=0):
    check(depth < 16, "structs nested deeper than 16")
    if ttype == TType.STRUCT:
        return read_struct(proto, depth + 1)
    if ttype in (TType.LIST, TType.SET):
        is_list = ttype == TType.LIST
        etype, size = proto.readListBegin() if is_list else proto.readSetBegin()
        values = [read_value(proto, etype, depth + 1) for _ in range(size)]
        if is_list:
            proto.readListEnd()
        else:
            proto.readSetEnd()
        return values
    if ttype == TType.MAP:
        ktype, vtype, size = proto.readMapBegin()
        values = {}
        for _ in range(size):
            key = read_value(proto, ktype, depth + 1)
            values[key] = read_value(proto, vtype, depth + 1)
        proto.readMapEnd()
        return values
    readers = {
        TType.BOOL: proto.readBool,
        TType.BYTE: proto.readByte,
        TType.I16: proto.readI16,
        TType.I32: proto.readI32,
        TType.I64: proto.readI64,
        TType.DOUBLE: proto.readDouble,
        TType.STRING: proto.readBinary,  # bytes; a jaeger.thrift `string` is decoded later
    }
    check(ttype in readers, f"unknown Thrift type {ttype}")
    return readers[ttype]()


def read_struct(proto, depth=0):
    s = Struct()
    proto.readStructBegin()
    for _ in range(10_000):
        _, ftype, fid = proto.readFieldBegin()
        if ftype == TType.STOP:
            break
        check(fid not in s, f"field {fid} twice in one struct")
        s[fid] = read_value(proto, ftype, depth)
        s.types[fid] = ftype
        proto.readFieldEnd()
    else:
        raise CheckFailed("a struct of more than 10000 fields")
    proto.readStructEnd()
    return s


def decode_datagram(data):
    """The `emitBatch` arguments of one datagram, all of it read by Apache Thrift."""
    transport = TMemoryBuffer(data)
    proto = TCompactProtocol(transport)
    name, mtype, _seqid = proto.readMessageBegin()
    check(name == "emitBatch", f"message name {name!r}, expected 'emitBatch'")
    check(mtype == TMessageType.ONEWAY, f"message type {mtype}, expected ONEWAY (4)")
    args = read_struct(proto)
    proto.readMessageEnd()
    buffer = transport.cstringio_buf
    left = len(buffer.getvalue()) - buffer.tell()
    check(left == 0, f"{left} bytes left after the message")
    return args


# --- jaeger.thrift, from the generic structs -----------------------------------------------

STRING = "string"  # TType.STRING, decoded as UTF-8

# Field id -> (name, type, required), as in jaeger-idl's jaeger.thrift and agent.thrift.
TAG = {
    1: ("key", STRING, True),
    2: ("vType", TType.I32, True),
    3: ("vStr", STRING, False),
    4: ("vDouble", TType.DOUBLE, False),
    5: ("vBool", TType.BOOL, False),
    6: ("vLong", TType.I64, False),
    7: ("vBinary", TType.STRING, False),
}
LOG = {1: ("timestamp", TType.I64, True), 2: ("fields", (TType.LIST, TAG), True)}
SPAN_REF = {
    1: ("refType", TType.I32, True),
    2: ("traceIdLow", TType.I64, True),
    3: ("traceIdHigh", TType.I64, True),
    4: ("spanId", TType.I64, True),
}
SPAN = {
    1: ("traceIdLow", TType.I64, True),
    2: ("traceIdHigh", TType.I64, True),
    3: ("spanId", TType.I64, True),
    4: ("parentSpanId", TType.I64, True),
    5: ("operationName", STRING, True),
    6: ("references", (TType.LIST, SPAN_REF), False),
    7: ("flags", TType.I32, True),
    8: ("startTime", TType.I64, True),
    9: ("duration", TType.I64, True),
    10: ("tags", (TType.LIST, TAG), False),
    11: ("logs", (TType.LIST, LOG), False),
    12: ("incomplete", TType.BOOL, False),
}
PROCESS = {1: ("serviceName", STRING, True), 2: ("tags", (TType.LIST, TAG), False)}
BATCH = {
    1: ("process", (TType.STRUCT, PROCESS), True),
    2: ("spans", (TType.LIST, SPAN), True),
}
EMIT_BATCH_ARGS = {1: ("batch", (TType.STRUCT, BATCH), True)}


def wire_type(kind):
    if kind == STRING:
        return TType.STRING
    return kind[0] if isinstance(kind, tuple) else kind


def convert(value, kind, where):
    """`value` as jaeger.thrift's `kind`: structs become dicts by field name."""
    if kind == STRING:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckFailed(f"{where}: not UTF-8: {e}") from e
    if isinstance(kind, tuple) and kind[0] == TType.LIST:
        return [to_named(v, kind[1], f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(kind, tuple) and kind[0] == TType.STRUCT:
        return to_named(value, kind[1], where)
    return value


def to_named(s, schema, where):
    check(isinstance(s, Struct), f"{where}: not a struct")
    out = {}
    for fid, (name, kind, required) in schema.items():
        if fid not in s:
            check(not required, f"{where}: required field {fid} ({name}) missing")
            continue
        got = s.types[fid]
        check(
            got == wire_type(kind),
            f"{where}.{name}: Thrift type {got}, jaeger.thrift says {wire_type(kind)}",
        )
        if isinstance(kind, tuple) and kind[0] == TType.LIST:
            for i, v in enumerate(s[fid]):
                check(isinstance(v, Struct), f"{where}.{name}[{i}]: elements must be structs")
        out[name] = convert(s[fid], kind, f"{where}.{name}")
    unknown = sorted(set(s) - set(schema))
    check(not unknown, f"{where}: fields {unknown} are not in jaeger.thrift")
    return out


def tag_value(tag, where):
    """A Tag's value, checked to be in the one field its vType names."""
    fields = {TAG_STRING: "vStr", TAG_DOUBLE: "vDouble", TAG_BOOL: "vBool",
              TAG_LONG: "vLong", TAG_BINARY: "vBinary"}
    check(tag["vType"] in fields, f"{where}: vType {tag['vType']} is not a TagType")
    present = [f for f in fields.values() if f in tag]
    want = fields[tag["vType"]]
    check(present == [want], f"{where}: vType {tag['vType']} with value fields {present}")
    return tag[want]


def tags_of(tags, where):
    """{key: (vType, value)}; a key twice is a failure."""
    out = {}
    for i, t in enumerate(tags):
        check(t["key"] not in out, f"{where}: tag {t['key']!r} twice")
        out[t["key"]] = (t["vType"], tag_value(t, f"{where}[{i}] {t['key']!r}"))
    return out


def u64(v):
    return v & U64


# --- The service ----------------------------------------------------------------------------


def start(binary, agent_port):
    return start_service(
        binary,
        {
            "JAEGER_AGENT_HOST": "127.0.0.1",
            "JAEGER_AGENT_PORT": str(agent_port),
            "JAEGER_SERVICE_NAME": "apache-check",
            "JAEGER_TAGS": "zone=z1",
        },
    )


def read_lines(stream, lines):
    for line in stream:  # ends when the service's stderr closes
        lines.put(line.rstrip("\n"))


def receive(sock, datagrams, stop):
    """The stand-in agent: keeps every datagram with the time it arrived."""
    while not stop.is_set():
        try:
            data = sock.recv(65_535)
        except socket.timeout:
            continue
        except OSError:
            return
        datagrams.append((time.monotonic(), data))


def request(port, target, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", target, headers=headers)
        client_port = conn.sock.getsockname()[1]
        response = conn.getresponse()
        response.read()
        return response.status, client_port
    finally:
        conn.close()


def run(binary, log):
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.split()
    check(len(version) == 2 and version[0] == "myhelloworld", f"--version printed {version}")
    client_version = f"myhelloworld-{version[1]}"

    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(0.05)
    datagrams, stop = [], threading.Event()
    receiver = threading.Thread(target=receive, args=(agent, datagrams, stop), daemon=True)
    receiver.start()

    started_at = time.time()
    proc = start(binary, agent.getsockname()[1])
    stderr = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stderr, stderr), daemon=True).start()
    try:
        port = None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while port is None and time.monotonic() < deadline:
            try:
                line = stderr.get(timeout=0.1)
            except queue.Empty:
                check(proc.poll() is None, f"the service exited with {proc.returncode}")
                continue
            log.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        check(port is not None, f"no 'listening on' line within {STARTUP_TIMEOUT} s")

        statuses = {}
        statuses["multi"] = request(port, "/gettime", MULTI)
        statuses["single"] = request(port, "/gettime?x=1", SINGLE)
        statuses["root"] = request(port, "/", {})
        statuses["chain"] = request(port, "/chain", {})
        for name, want in [("multi", 200), ("single", 200), ("root", 200), ("chain", 404)]:
            check(statuses[name][0] == want, f"{name}: HTTP {statuses[name][0]}, expected {want}")

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"the service did not exit within {EXIT_TIMEOUT} s of SIGTERM")
        check(rc == 0, f"the service exited with {rc} after SIGTERM, expected 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for _ in range(10_000):  # what it logged, for the checks and for a failure's report
            try:
                log.append(stderr.get(timeout=0.5 if proc.returncode is not None else 0))
            except queue.Empty:
                break
    finished_at, exited = time.time(), time.monotonic()

    # Collect until no datagram for QUIET seconds (the last one was sent before the exit).
    deadline = exited + COLLECT_TIMEOUT
    while time.monotonic() < deadline:
        last = max(exited, datagrams[-1][0]) if datagrams else exited
        if time.monotonic() - last >= QUIET:
            break
        time.sleep(0.05)
    stop.set()
    receiver.join(timeout=2)
    agent.close()
    received = [d for _, d in datagrams]

    summary = [line for line in log if "span reporter stopped" in line]
    check(len(summary) == 1, f"expected one 'span reporter stopped' line, found {len(summary)}")
    m = re.search(r"\bsent=(\d+).*\bdatagrams=(\d+)", summary[0])
    check(m is not None, f"no sent= / datagrams= in {summary[0]!r}")
    check(int(m.group(1)) == 4, f"the service says it sent {m.group(1)} spans, expected 4")
    check(
        int(m.group(2)) == len(received),
        f"the service says {m.group(2)} datagrams, the agent received {len(received)}",
    )
    return received, statuses, client_version, started_at, finished_at


# --- The checks -----------------------------------------------------------------------------


def check_process(process, client_version, where):
    check(process["serviceName"] == "apache-check", f"{where}: service {process['serviceName']!r}")
    tags = tags_of(process.get("tags", []), f"{where}.tags")
    check(
        set(tags) == {"jaeger.version", "hostname", "ip", "zone"},
        f"{where}: process tags {sorted(tags)}",
    )
    for key, (vtype, _) in tags.items():
        check(vtype == TAG_STRING, f"{where}: process tag {key} has vType {vtype}, not STRING")
    check(tags["zone"][1] == "z1", f"{where}: zone={tags['zone'][1]!r}")
    check(tags["ip"][1] == "127.0.0.1", f"{where}: ip={tags['ip'][1]!r}")
    check(tags["hostname"][1] == socket.gethostname(), f"{where}: hostname={tags['hostname'][1]!r}")
    check(
        tags["jaeger.version"][1] == client_version,
        f"{where}: jaeger.version={tags['jaeger.version'][1]!r}, expected {client_version!r}",
    )


def check_server_span(span, tags, where, *, operation, url, status, client_port):
    check(span["operationName"] == operation, f"{where}: operationName {span['operationName']!r}")
    check(span["flags"] & 1 == 1, f"{where}: flags {span['flags']} not sampled")
    check(u64(span["spanId"]) != 0, f"{where}: spanId 0")
    expected = {
        "span.kind": (TAG_STRING, "server"),
        "http.method": (TAG_STRING, "GET"),
        "http.url": (TAG_STRING, url),
        "http.status_code": (TAG_LONG, status),
        "peer.ipv4": (TAG_STRING, "127.0.0.1"),
        "peer.port": (TAG_LONG, client_port),
    }
    for key, want in expected.items():
        check(tags.get(key) == want, f"{where}: tag {key} = {tags.get(key)}, expected {want}")


def check_child(span, tags, where, *, trace_high, trace_low, parent):
    # jaeger.thrift's ids are i64: Thrift reads the ones with the top bit set as negative.
    for field, want in [("traceIdHigh", trace_high), ("traceIdLow", trace_low),
                        ("parentSpanId", parent)]:
        got = u64(span[field])
        check(got == want, f"{where}: {field} {got:#x}, expected {want:#x}")
    check(u64(span["spanId"]) != parent, f"{where}: the span reuses its parent's id")
    refs = span.get("references", [])
    want = [{"refType": CHILD_OF, "traceIdLow": trace_low, "traceIdHigh": trace_high,
             "spanId": parent}]
    got = [{k: (u64(v) if k != "refType" else v) for k, v in r.items()} for r in refs]
    check(got == want, f"{where}: references {got}, expected {want}")
    for key in ("sampler.type", "sampler.param"):
        check(key not in tags, f"{where}: {key} on a span whose caller decided sampling")


def check_root(span, tags, where):
    check(span["parentSpanId"] == 0, f"{where}: parentSpanId {u64(span['parentSpanId']):#x}")
    check("references" not in span, f"{where}: references {span.get('references')}")
    check(u64(span["traceIdLow"]) != 0, f"{where}: traceIdLow 0")
    check(tags.get("sampler.type") == (TAG_STRING, "const"),
          f"{where}: sampler.type {tags.get('sampler.type')}")
    got = tags.get("sampler.param")
    # 1.0 read as a little-endian double; big-endian bytes would read as 3.04e-319.
    check(got == (TAG_DOUBLE, 1.0) and isinstance(got[1], float),
          f"{where}: sampler.param {got}, expected (vType DOUBLE=1, 1.0)")


def check_all(received, statuses, client_version, started_at, finished_at):
    check(received, "no datagram reached the agent")
    spans = []
    for i, data in enumerate(received):
        args = to_named(decode_datagram(data), EMIT_BATCH_ARGS, f"datagram {i}")
        batch = args["batch"]
        check_process(batch["process"], client_version, f"datagram {i} process")
        spans += [(f"datagram {i} span {j}", s) for j, s in enumerate(batch["spans"])]
    check(len(spans) == 4, f"{len(spans)} spans, expected 4")

    by_op = {}
    for where, span in spans:
        by_op.setdefault(span["operationName"], []).append((where, span))
        start_s = span["startTime"] / 1e6
        check(
            started_at - 1 <= start_s <= finished_at + 1 and time.time() - start_s < 60,
            f"{where}: startTime {span['startTime']} us is not during this run",
        )
        check(0 <= span["duration"] < 60e6, f"{where}: duration {span['duration']} us")
        check("logs" not in span, f"{where}: logs {span.get('logs')}")
    check(
        sorted(by_op) == ["GET /", "GET /chain", "GET /gettime"]
        and len(by_op["GET /gettime"]) == 2,
        f"operations {sorted((k, len(v)) for k, v in by_op.items())}",
    )

    gettime = {}
    for where, span in by_op["GET /gettime"]:
        tags = tags_of(span.get("tags", []), f"{where}.tags")
        gettime[tags.get("http.url", (None, None))[1]] = (where, span, tags)
    check(sorted(gettime) == ["/gettime", "/gettime?x=1"], f"GET /gettime urls {sorted(gettime)}")

    where, span, tags = gettime["/gettime"]
    check_child(span, tags, where, trace_high=0x463AC35C9F6413AD, trace_low=0x48485A3953BB6124,
                parent=0xA2FB4A1D1A96D312)
    check_server_span(span, tags, where, operation="GET /gettime", url="/gettime", status=200,
                      client_port=statuses["multi"][1])

    where, span, tags = gettime["/gettime?x=1"]
    check_child(span, tags, where, trace_high=0x80F198EE56343BA8, trace_low=0x64FE8B2A57D3EFF7,
                parent=0xE457B5A2E4D86BD1)
    check_server_span(span, tags, where, operation="GET /gettime", url="/gettime?x=1", status=200,
                      client_port=statuses["single"][1])

    roots = {}
    for op, target, status, request in [("GET /", "/", 200, "root"),
                                         ("GET /chain", "/chain", 404, "chain")]:
        where, span = by_op[op][0]
        tags = tags_of(span.get("tags", []), f"{where}.tags")
        check_root(span, tags, where)
        check_server_span(span, tags, where, operation=op, url=target, status=status,
                          client_port=statuses[request][1])
        roots[op] = span
    check(roots["GET /"]["traceIdLow"] != roots["GET /chain"]["traceIdLow"],
          "two new traces with the same id")
    return len(spans)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2

    exit_on_signals()
    log = []
    try:
        received, statuses, client_version, started_at, finished_at = run(sys.argv[1], log)
        n = check_all(received, statuses, client_version, started_at, finished_at)
    except Exception as e:  # a failed check, or what Thrift or the OS raised: all failures
        if not isinstance(e, CheckFailed):
            traceback.print_exc()
        print(f"apache thrift check FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        if log:
            print("the service's log:", *("  " + line for line in log), sep="\n", file=sys.stderr)
        return 1
    print(f"apache thrift: {len(received)} datagrams, {n} spans decoded, all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

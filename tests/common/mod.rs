//! Test harness: the real binary on an ephemeral loopback port, a UDP socket standing in for
//! the Jaeger agent, a minimal HTTP/1.1 client, and a decoder of the agent's datagrams built
//! on thrift_codec's generic compact decoder (field ids from jaeger.thrift / agent.thrift).
#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thrift_codec::CompactDecode;
use thrift_codec::data::{Data, Elements, Struct};
use thrift_codec::message::Message;

/// A running `myhelloworld` process. Killed when dropped.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the binary with `env` on top of loopback defaults (HOST, PORT=0, agent
    /// 127.0.0.1:`agent_port`, flush 50ms, RUST_LOG=info), and waits until it listens.
    pub fn start(agent_port: u16, env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_myhelloworld"));
        cmd.env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("JAEGER_AGENT_HOST", "127.0.0.1")
            .env("JAEGER_AGENT_PORT", agent_port.to_string())
            .env("JAEGER_REPORTER_FLUSH_INTERVAL", "50ms")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start myhelloworld");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = addr_tx.send(addr.parse::<SocketAddr>().ok());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("service did not start: {:?}", logs.lock().unwrap())
            });
        Service { child, addr, logs }
    }

    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.request("GET", target, headers)
    }

    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http_request(self.addr, method, target, headers)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One sample of `GET /metrics`, e.g. `metric("myhelloworld_http_connections")`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.get("/metrics", &[])
            .body
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits (bounded) for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the stderr reader catch up with the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {timeout:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The counters of the reporter's shutdown line
/// (`span reporter stopped: spans admitted=… sent=… dropped: queue_full=… …`).
pub fn shutdown_counters(logs: &[String]) -> HashMap<String, u64> {
    let line = logs
        .iter()
        .find(|l| l.contains("span reporter stopped:"))
        .unwrap_or_else(|| panic!("no reporter summary in {logs:?}"));
    line.split(|c: char| c.is_whitespace() || c == ';')
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("counter")))
        .collect()
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), bounded by timeouts.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A UDP socket on loopback standing in for the Jaeger agent. Like the real agent it reads
/// all the time (a thread), so datagrams do not pile up in the kernel's receive buffer.
pub struct Agent {
    port: u16,
    datagrams: std::sync::mpsc::Receiver<Datagram>,
}

impl Agent {
    pub fn new() -> Agent {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = socket.local_addr().unwrap().port();
        let (tx, datagrams) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            // Ends when the test drops the receiver (the next send fails).
            while let Ok(n) = socket.recv(&mut buf) {
                let datagram = Datagram {
                    len: n,
                    batch: decode_emit_batch(&buf[..n]),
                };
                if tx.send(datagram).is_err() {
                    return;
                }
            }
        });
        Agent { port, datagrams }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Datagrams received until `spans` spans arrived or `timeout` passed.
    pub fn collect(&self, spans: usize, timeout: Duration) -> Vec<Datagram> {
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Datagram> = Vec::new();
        while out.iter().map(|d| d.batch.spans.len()).sum::<usize>() < spans {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.datagrams.recv_timeout(left) {
                Ok(d) => out.push(d),
                Err(_) => break,
            }
        }
        out
    }

    /// The spans of `collect(spans, timeout)`.
    pub fn spans(&self, spans: usize, timeout: Duration) -> Vec<Span> {
        self.collect(spans, timeout)
            .into_iter()
            .flat_map(|d| d.batch.spans)
            .collect()
    }

    /// All spans that arrive within `timeout` (for "nothing arrives" checks, wait it out).
    pub fn spans_within(&self, timeout: Duration) -> Vec<Span> {
        self.spans(usize::MAX, timeout)
    }
}

pub struct Datagram {
    pub len: usize,
    pub batch: Batch,
}

#[derive(Debug)]
pub struct Batch {
    pub service_name: String,
    pub process_tags: HashMap<String, TagValue>,
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    Str(String),
    Double(f64),
    Bool(bool),
    Long(i64),
}

#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id_low: u64,
    pub trace_id_high: u64,
    pub span_id: u64,
    pub parent_span_id: u64,
    pub operation: String,
    /// (refType: 0 CHILD_OF / 1 FOLLOWS_FROM, trace id low, trace id high, span id)
    pub references: Vec<(i32, u64, u64, u64)>,
    pub flags: i32,
    pub start_time: i64,
    pub duration: i64,
    pub tags: HashMap<String, TagValue>,
    pub logs: usize,
}

impl Span {
    pub fn tag(&self, key: &str) -> Option<&TagValue> {
        self.tags.get(key)
    }
    pub fn str_tag(&self, key: &str) -> Option<&str> {
        match self.tags.get(key) {
            Some(TagValue::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn trace_id_hex(&self) -> String {
        if self.trace_id_high == 0 {
            format!("{:016x}", self.trace_id_low)
        } else {
            format!("{:016x}{:016x}", self.trace_id_high, self.trace_id_low)
        }
    }
}

fn field(s: &Struct, id: i16) -> Option<&Data> {
    s.fields().iter().find(|f| f.id() == id).map(|f| f.data())
}

fn i64_field(s: &Struct, id: i16) -> i64 {
    match field(s, id) {
        Some(Data::I64(v)) => *v,
        other => panic!("field {id}: expected i64, got {other:?}"),
    }
}

fn i32_field(s: &Struct, id: i16) -> i32 {
    match field(s, id) {
        Some(Data::I32(v)) => *v,
        other => panic!("field {id}: expected i32, got {other:?}"),
    }
}

fn string_field(s: &Struct, id: i16) -> String {
    match field(s, id) {
        Some(Data::Binary(v)) => String::from_utf8(v.clone()).expect("utf-8"),
        other => panic!("field {id}: expected string, got {other:?}"),
    }
}

fn struct_list(s: &Struct, id: i16) -> Vec<Struct> {
    match field(s, id) {
        None => Vec::new(),
        Some(Data::List(list)) => match &**list {
            Elements::Struct(v) => v.clone(),
            other => panic!("field {id}: expected list<struct>, got {other:?}"),
        },
        other => panic!("field {id}: expected list, got {other:?}"),
    }
}

/// jaeger.thrift `Tag`: 1 key, 2 vType, 3 vStr, 4 vDouble, 5 vBool, 6 vLong, 7 vBinary.
fn decode_tags(list: Vec<Struct>) -> HashMap<String, TagValue> {
    list.iter()
        .map(|t| {
            let value = match (
                i32_field(t, 2),
                field(t, 3),
                field(t, 4),
                field(t, 5),
                field(t, 6),
            ) {
                (0, Some(Data::Binary(v)), ..) => {
                    TagValue::Str(String::from_utf8(v.clone()).unwrap())
                }
                (1, _, Some(Data::Double(v)), ..) => TagValue::Double(*v),
                (2, _, _, Some(Data::Bool(v)), _) => TagValue::Bool(*v),
                (3, .., Some(Data::I64(v))) => TagValue::Long(*v),
                other => panic!("unexpected tag encoding {other:?}"),
            };
            (string_field(t, 1), value)
        })
        .collect()
}

/// Decodes one agent datagram: an `Agent.emitBatch` oneway message in Thrift compact.
pub fn decode_emit_batch(bytes: &[u8]) -> Batch {
    let mut reader = bytes;
    let message = Message::compact_decode(&mut reader).expect("compact thrift message");
    assert_eq!(message.method_name(), "emitBatch");
    assert!(reader.is_empty(), "{} trailing bytes", reader.len());
    let Some(Data::Struct(batch)) = field(message.body(), 1) else {
        panic!("emitBatch without a batch")
    };
    let Some(Data::Struct(process)) = field(batch, 1) else {
        panic!("batch without a process")
    };
    let spans = struct_list(batch, 2)
        .iter()
        .map(|s| Span {
            trace_id_low: i64_field(s, 1) as u64,
            trace_id_high: i64_field(s, 2) as u64,
            span_id: i64_field(s, 3) as u64,
            parent_span_id: i64_field(s, 4) as u64,
            operation: string_field(s, 5),
            references: struct_list(s, 6)
                .iter()
                .map(|r| {
                    (
                        i32_field(r, 1),
                        i64_field(r, 2) as u64,
                        i64_field(r, 3) as u64,
                        i64_field(r, 4) as u64,
                    )
                })
                .collect(),
            flags: i32_field(s, 7),
            start_time: i64_field(s, 8),
            duration: i64_field(s, 9),
            tags: decode_tags(struct_list(s, 10)),
            logs: struct_list(s, 11).len(),
        })
        .collect();
    Batch {
        service_name: string_field(process, 1),
        process_tags: decode_tags(struct_list(process, 2)),
        spans,
    }
}

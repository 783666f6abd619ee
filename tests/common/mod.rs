//! Test harness: the real binary on an ephemeral loopback port, a UDP socket standing in for
//! the Jaeger agent, minimal HTTP/1.1 clients (one request per connection, or keep-alive), a
//! parser of the Prometheus text, and a decoder of the agent's datagrams built on
//! thrift_codec's generic compact decoder (field ids from jaeger.thrift / agent.thrift).
#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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
        Service::start_with_open_files(agent_port, env, None)
    }

    /// As `start`, with both limits on open files set to `open_files` when given.
    pub fn start_with_open_files(
        agent_port: u16,
        env: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_myhelloworld"));
        if let Some(n) = open_files {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and reads only the struct we own.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
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
        sample(&self.get("/metrics", &[]).body, series)
    }

    /// A number of the process's /proc/<pid>/status: `VmRSS` and `VmHWM` (KiB), `Threads`.
    pub fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in {status}"))
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
    pub fn terminate(self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.wait_exit(timeout)
    }

    /// Waits for the process to exit on its own; its status and every stderr line.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the stderr reader catch up with the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.logs());
            }
            assert!(Instant::now() < deadline, "no exit within {timeout:?}");
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

/// The value of one sample line of Prometheus text: `series` (the name and its labels, as
/// the service writes them), one space, the value. None if missing or not a `T`.
pub fn sample<T: FromStr>(text: &str, series: &str) -> Option<T> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `sample`, which must be there.
pub fn expect_sample<T: FromStr>(text: &str, series: &str) -> T {
    sample(text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"))
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

/// What one request on a keep-alive connection gave.
#[derive(Debug)]
pub enum Outcome {
    /// A whole response: status line, headers, and exactly Content-Length bytes of body.
    Complete { status: u16, body: Vec<u8> },
    /// The connection ended (EOF or reset) before a single byte of the response.
    Closed(String),
    /// Some bytes of a response, then the end: a truncated response.
    Truncated(String),
}

/// One keep-alive HTTP/1.1 connection, every read and write bounded by a timeout.
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    /// Connects (within 5 s); each later read and write waits 10 s at the most.
    pub fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            reader: BufReader::new(stream),
        })
    }

    /// The connection, e.g. to see whether the server closed it.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// `GET target` with `headers` (raw header lines, each ending in CRLF) and its response.
    pub fn get(&mut self, target: &str, headers: &str) -> Outcome {
        match self.send(target, headers) {
            Ok(()) => self.response(),
            Err(e) => Outcome::Closed(format!("write: {e}")),
        }
    }

    /// Sends `GET target` without waiting for the response.
    pub fn send(&mut self, target: &str, headers: &str) -> std::io::Result<()> {
        let head = format!("GET {target} HTTP/1.1\r\nHost: test\r\n{headers}\r\n");
        self.reader.get_mut().write_all(head.as_bytes())
    }

    /// The next response.
    pub fn response(&mut self) -> Outcome {
        let mut got = Vec::new();
        let mut content_length: Option<usize> = None;
        let mut status: Option<u16> = None;
        // The head, line by line (bounded: at most 64 lines).
        for _ in 0..64 {
            let mut line = Vec::new();
            let read = self.reader.read_until(b'\n', &mut line);
            got.extend_from_slice(&line);
            match read {
                Ok(0) | Err(_) if got.is_empty() => {
                    return Outcome::Closed(format!("{read:?} before the response"));
                }
                Ok(0) | Err(_) => return Outcome::Truncated(lossy(&got, &read)),
                Ok(_) if !line.ends_with(b"\n") => {
                    return Outcome::Truncated(lossy(&got, &read));
                }
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if status.is_none() {
                status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
                if status.is_none() {
                    return Outcome::Truncated(format!("bad status line {text:?}"));
                }
            } else if text.is_empty() {
                let Some(len) = content_length else {
                    return Outcome::Truncated(format!(
                        "no Content-Length in {:?}",
                        String::from_utf8_lossy(&got)
                    ));
                };
                let mut body = vec![0u8; len];
                return match self.reader.read_exact(&mut body) {
                    Ok(()) => Outcome::Complete {
                        status: status.unwrap_or_default(),
                        body,
                    },
                    Err(e) => Outcome::Truncated(format!(
                        "body of {len} bytes: {e} after {:?}",
                        String::from_utf8_lossy(&got)
                    )),
                };
            } else if let Some((name, value)) = text.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().ok();
            }
        }
        Outcome::Truncated("more than 64 header lines".into())
    }

    /// The status of `GET target`; panics on anything but a complete response.
    pub fn status(&mut self, target: &str) -> u16 {
        match self.get(target, "") {
            Outcome::Complete { status, .. } => status,
            other => panic!("GET {target} on a keep-alive connection: {other:?}"),
        }
    }
}

fn lossy(got: &[u8], read: &std::io::Result<usize>) -> String {
    format!("{read:?} after {:?}", String::from_utf8_lossy(got))
}

/// A UDP socket on loopback standing in for the Jaeger agent. Like the real agent it reads
/// all the time (a thread), so datagrams do not pile up in the kernel's receive buffer; the
/// thread only receives and hands the bytes over (the test decodes them), and the receive
/// buffer is enlarged: under load the default one (about three 60 kB datagrams) overflows
/// as soon as the reader falls a little behind.
pub struct Agent {
    port: u16,
    datagrams: mpsc::Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
}

/// At most this many datagrams in one `collect`: with the deadline, bounds its loop.
const MAX_DATAGRAMS: usize = 1 << 20;

impl Agent {
    /// An agent on a free port.
    pub fn new() -> Agent {
        Agent::on_port(0)
    }

    /// An agent on 127.0.0.1:`port` (0: any free port).
    pub fn on_port(port: u16) -> Agent {
        let socket = UdpSocket::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("binding the agent on 127.0.0.1:{port}: {e}"));
        let port = socket.local_addr().unwrap().port();
        let size: libc::c_int = 8 << 20; // the kernel caps it at net.core.rmem_max
        // SAFETY: setsockopt reads one c_int from a valid pointer, on a socket we own.
        let set = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        // The thread looks at `stop` at least this often.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let (tx, datagrams) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            // Ends when the agent is dropped (`stop`, or the next send fails).
            while !stopped.load(Ordering::Relaxed) {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("agent recv: {e}"),
                }
            }
        });
        Agent {
            port,
            datagrams,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next datagram, decoded, if one arrives by `deadline` (or is already there).
    fn next(&self, deadline: Instant) -> Option<Datagram> {
        let left = deadline.saturating_duration_since(Instant::now());
        let bytes = self.datagrams.recv_timeout(left).ok()?;
        Some(Datagram {
            len: bytes.len(),
            batch: decode_emit_batch(&bytes),
        })
    }

    /// Datagrams received until `spans` spans arrived or `timeout` passed.
    pub fn collect(&self, spans: usize, timeout: Duration) -> Vec<Datagram> {
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Datagram> = Vec::new();
        for _ in 0..MAX_DATAGRAMS {
            if out.iter().map(|d| d.batch.spans.len()).sum::<usize>() >= spans {
                break;
            }
            match self.next(deadline) {
                Some(d) => out.push(d),
                None => break,
            }
        }
        out
    }

    /// Adds the spans that arrive to `out` until `done(out)` or `timeout` passed. Every
    /// datagram must fit the agent's packet size.
    pub fn collect_until(
        &self,
        out: &mut Vec<Span>,
        timeout: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        for _ in 0..MAX_DATAGRAMS {
            if done(out) {
                return;
            }
            let Some(d) = self.next(deadline) else {
                return;
            };
            assert!(d.len <= 65_000, "datagram of {} bytes", d.len);
            out.extend(d.batch.spans);
        }
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

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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

//! The access log: one line per request, buffered as nginx buffers its access log
//! (`access_log … buffer=64k flush=1s`). A request formats its line into a reused
//! per-thread buffer and appends it to a shared one under a short lock: no system call and
//! no wait on stderr per request. The shared buffer goes to stderr in one write when it
//! passes 64 KiB, every second, and at shutdown (`flush`), so a line is never lost on
//! SIGTERM and reaches the log at most a second late.
//!
//! The handlers' own line per request ("Received getTime request", as the Go original logs)
//! goes into the same buffer (`Logger`): written one by one, it was a system call per request.
//!
//! The request's method and path come from the client: every byte that could forge or
//! break a line (control bytes such as CR, LF and NUL, DEL, space, `"`, `\`, and anything
//! outside ASCII) is written as `\xHH`, so one request is always one unambiguous line.

use crate::propagation::TraceId;
use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Past this many bytes the buffer is written at once (nginx's `buffer=64k`).
const BUFFER_BYTES: usize = 64 * 1024;
/// The longest a line waits in the buffer (nginx's `flush=1s`).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What one line says about a request.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub method: &'a str,
    /// The path, without the query (it may carry secrets).
    pub path: &'a str,
    pub status: u16,
    /// From taking the request to having written the response.
    pub elapsed: Duration,
    pub trace_id: TraceId,
    pub span_id: u64,
    pub sampled: bool,
}

/// `s` with every byte that could break or forge a log line written as `\xHH`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(self.0.len());
        escape_into(&mut buf, self.0);
        // Only ASCII is written.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// Appends `s` to `out`, printable ASCII as is, any other byte (and `"`, `\`) as `\xHH`.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_graphic() && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
    }
}

/// Appends the line for `e`, newline included:
/// `[INFO  access] GET /gettime 200 0.394ms trace_id=… span_id=… sampled=true`.
/// Written byte by byte rather than through `core::fmt`, which cost most of the line's
/// formatting (callgrind: README, Performance).
pub fn format_line(out: &mut Vec<u8>, e: &Entry) {
    prefix(out, log::Level::Info, "access");
    escape_into(out, e.method);
    out.push(b' ');
    escape_into(out, e.path);
    out.push(b' ');
    decimal(out, u64::from(e.status));
    out.push(b' ');
    let micros = e.elapsed.as_micros();
    match u64::try_from(micros / 1000) {
        Ok(ms) => decimal(out, ms),
        // Only a `Duration` of over 584 million years gets here.
        Err(_) => {
            let _ = write!(out, "{}", micros / 1000);
        }
    }
    out.push(b'.');
    let frac = (micros % 1000) as u16;
    out.extend([frac / 100, frac / 10 % 10, frac % 10].map(|d| b'0' + d as u8));
    out.extend_from_slice(b"ms trace_id=");
    // As `TraceId` displays: 16 or 32 digits.
    if e.trace_id.high != 0 {
        hex16(out, e.trace_id.high);
    }
    hex16(out, e.trace_id.low);
    out.extend_from_slice(b" span_id=");
    hex16(out, e.span_id);
    out.extend_from_slice(if e.sampled {
        b" sampled=true\n"
    } else {
        b" sampled=false\n"
    });
}

/// Appends what env_logger (default features off: no timestamp, no colour) writes before
/// a message: `[INFO  target] `, the level padded to five.
fn prefix(out: &mut Vec<u8>, level: log::Level, target: &str) {
    let level = level.as_str();
    out.push(b'[');
    out.extend_from_slice(level.as_bytes());
    out.extend(std::iter::repeat_n(b' ', 6 - level.len()));
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b"] ");
}

/// Appends `v` in decimal.
fn decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `v` as 16 lower-hex digits.
fn hex16(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend((0..16).rev().map(|i| DIGITS[(v >> (4 * i)) as usize & 0xf]));
}

/// Lines waiting to be written to `out`: the access lines, and the handlers' (`Logger`).
pub struct AccessLog<W: Write> {
    enabled: bool,
    pending: Mutex<Vec<u8>>,
    /// Held while a batch is taken and written, so that batches keep their order.
    out: Mutex<(W, Vec<u8>)>,
}

impl<W: Write> AccessLog<W> {
    /// A log writing to `out`; `enabled` false makes `record` do nothing.
    pub fn new(out: W, enabled: bool) -> Self {
        AccessLog {
            enabled,
            pending: Mutex::new(Vec::with_capacity(BUFFER_BYTES + 1024)),
            out: Mutex::new((out, Vec::with_capacity(BUFFER_BYTES + 1024))),
        }
    }

    /// Buffers the line for `e`; writes the buffer if it is full.
    pub fn record(&self, e: &Entry) {
        if self.enabled {
            self.append(|line| format_line(line, e));
        }
    }

    /// Buffers the line `format` writes; writes the buffer if it is full.
    fn append(&self, format: impl FnOnce(&mut Vec<u8>)) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
        }
        let add = |line: &mut Vec<u8>| {
            line.clear();
            format(line);
            let mut pending = lock(&self.pending);
            pending.extend_from_slice(line);
            pending.len() >= BUFFER_BYTES
        };
        // A line formatted while this thread formats another (a `Display` that logs) gets a
        // buffer of its own.
        let full = LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => add(&mut line),
            Err(_) => add(&mut Vec::new()),
        });
        if full {
            self.flush();
        }
    }

    /// Writes every buffered line.
    pub fn flush(&self) {
        let written = {
            let mut out = lock(&self.out);
            let (writer, batch) = &mut *out;
            // The buffers are swapped, not reallocated: the next lines go into the emptied one.
            std::mem::swap(batch, &mut *lock(&self.pending));
            if batch.is_empty() {
                return;
            }
            let written = writer.write_all(batch).and_then(|()| writer.flush());
            batch.clear();
            written
        };
        if let Err(e) = written {
            // Not through `log`: its `Logger` flushes this log first, and would fail again.
            let _ = writeln!(
                io::stderr(),
                "[WARN  {}] cannot write the access log: {e}",
                module_path!()
            );
        }
    }
}

/// A poisoned lock only means a panic elsewhere while appending bytes: the buffer is usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static STDERR: OnceLock<AccessLog<io::Stderr>> = OnceLock::new();

/// The service's access log, to stderr, with the thread that flushes it every second.
/// Enabled when the log filter lets `access` info lines through (`RUST_LOG=info,access=warn`
/// turns it off). `Logger::install` sets it up; without a logger (unit tests), the first call.
pub fn stderr() -> &'static AccessLog<io::Stderr> {
    STDERR.get_or_init(|| {
        let enabled = log::log_enabled!(target: "access", log::Level::Info);
        start(enabled, enabled)
    })
}

/// The access log to stderr; the flush thread only if `flush_thread` (something can be
/// buffered).
fn start(enabled: bool, flush_thread: bool) -> AccessLog<io::Stderr> {
    if flush_thread {
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    stderr().flush();
                }
            });
        if let Err(e) = spawned {
            // Not `log`: this may be the logger starting. Not `eprintln!`: it panics if
            // stderr fails.
            let _ = writeln!(
                io::stderr(),
                "[WARN  {}] cannot start the access log's flush thread: {e}; lines are written when 64 KiB are buffered and at shutdown",
                module_path!()
            );
        }
    }
    AccessLog::new(io::stderr(), enabled)
}

/// The process's logger: env_logger's filter and format, except that the handlers' lines
/// at info and below (one per request) are buffered with the access lines. Any other line
/// first writes what is buffered, so the lines keep their order. (A panic's message, which
/// the panic hook writes, does not wait for them; a crash loses at most a second of them.)
pub struct Logger<W: Write + Send + 'static> {
    inner: env_logger::Logger,
    buffer: &'static AccessLog<W>,
}

impl Logger<io::Stderr> {
    /// Installs `inner`'s filter and format as the logger of `log`, buffering into `stderr()`.
    pub fn install(inner: env_logger::Logger) -> Result<(), log::SetLoggerError> {
        let info = |target| {
            log::Log::enabled(
                &inner,
                &log::Metadata::builder()
                    .target(target)
                    .level(log::Level::Info)
                    .build(),
            )
        };
        let (access, handlers) = (info("access"), info(crate::handlers::LOG_TARGET));
        let buffer = STDERR.get_or_init(|| start(access, access || handlers));
        log::set_max_level(inner.filter());
        log::set_boxed_logger(Box::new(Logger { inner, buffer }))
    }
}

/// tiny_http's line when its accept loop ends (`Error accepting new client: …`), which is
/// not written: at a stop the loop ends because we shut the listening socket, no error; else
/// a worker receives the same error, and `server` says it with what is done about it.
fn redundant(record: &log::Record<'_>) -> bool {
    record.target() == "tiny_http"
        && record.level() == log::Level::Error
        && record
            .args()
            .to_string()
            .starts_with("Error accepting new client")
}

/// Whether a record is one of the handlers' lines, which are buffered.
fn buffered(record: &log::Record<'_>) -> bool {
    record.target() == crate::handlers::LOG_TARGET && record.level() >= log::Level::Info
}

impl<W: Write + Send + 'static> log::Log for Logger<W> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.inner.matches(record) || redundant(record) {
            return;
        }
        if buffered(record) {
            // The handlers' messages are one line (env_logger indents further lines), and
            // a constant one ("Received getTime request") is copied, not formatted.
            return self.buffer.append(|line| {
                prefix(line, record.level(), record.target());
                match record.args().as_str() {
                    Some(message) => line.extend_from_slice(message.as_bytes()),
                    None => {
                        let _ = line.write_fmt(*record.args());
                    }
                }
                line.push(b'\n');
            });
        }
        self.buffer.flush();
        self.inner.log(record);
    }

    fn flush(&self) {
        self.buffer.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const TRACE: TraceId = TraceId {
        high: 0x463ac35c9f6413ad,
        low: 0x48485a3953bb6124,
    };

    fn entry<'a>(method: &'a str, path: &'a str) -> Entry<'a> {
        Entry {
            method,
            path,
            status: 200,
            elapsed: Duration::from_micros(1394),
            trace_id: TRACE,
            span_id: 0xa2fb4a1d1a96d312,
            sampled: true,
        }
    }

    fn line(e: &Entry) -> String {
        let mut out = Vec::new();
        format_line(&mut out, e);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_formatted_and_hostile_bytes_escaped() {
        let cases: &[(&str, Entry, &str)] = &[
            (
                "a plain request",
                entry("GET", "/gettime"),
                "[INFO  access] GET /gettime 200 1.394ms trace_id=463ac35c9f6413ad48485a3953bb6124 span_id=a2fb4a1d1a96d312 sampled=true\n",
            ),
            (
                "a 64-bit trace id, unsampled, sub-millisecond",
                Entry {
                    trace_id: TraceId { high: 0, low: 1 },
                    sampled: false,
                    elapsed: Duration::from_micros(7),
                    status: 404,
                    ..entry("HEAD", "/x")
                },
                "[INFO  access] HEAD /x 404 0.007ms trace_id=0000000000000001 span_id=a2fb4a1d1a96d312 sampled=false\n",
            ),
            (
                "CR LF forging a second line",
                entry("GET", "/a\r\n[INFO  access] GET /admin 200"),
                "[INFO  access] GET /a\\x0D\\x0A[INFO\\x20\\x20access]\\x20GET\\x20/admin\\x20200 200 1.394ms trace_id=463ac35c9f6413ad48485a3953bb6124 span_id=a2fb4a1d1a96d312 sampled=true\n",
            ),
            (
                "NUL, ESC, DEL, a tab",
                entry("GET", "/\0\x1b[31m\x7f\t"),
                "[INFO  access] GET /\\x00\\x1B[31m\\x7F\\x09 200 1.394ms trace_id=463ac35c9f6413ad48485a3953bb6124 span_id=a2fb4a1d1a96d312 sampled=true\n",
            ),
            (
                "quotes and backslashes cannot fake an escape",
                entry("GET", r#"/"q"\x41"#),
                "[INFO  access] GET /\\x22q\\x22\\x5Cx41 200 1.394ms trace_id=463ac35c9f6413ad48485a3953bb6124 span_id=a2fb4a1d1a96d312 sampled=true\n",
            ),
            (
                "a non-standard method with a space and non-ASCII",
                entry("PÜT X", "/é"),
                "[INFO  access] P\\xC3\\x9CT\\x20X /\\xC3\\xA9 200 1.394ms trace_id=463ac35c9f6413ad48485a3953bb6124 span_id=a2fb4a1d1a96d312 sampled=true\n",
            ),
        ];
        for (name, e, want) in cases {
            assert_eq!(line(e), *want, "{name}");
            assert_eq!(line(e).lines().count(), 1, "{name}: one line");
        }
        assert_eq!(Escaped("/a b\n").to_string(), "/a\\x20b\\x0A");
    }

    /// The numbers and ids of a line, against `core::fmt` writing the same format.
    #[test]
    fn numbers_and_ids_are_written_as_fmt_writes_them() {
        let cases = [
            (0, Duration::ZERO, TraceId { high: 0, low: 0 }, 0, false),
            (200, Duration::from_micros(999), TRACE, u64::MAX, true),
            (
                404,
                Duration::from_micros(1000),
                TraceId { high: 1, low: 0 },
                1,
                true,
            ),
            (
                999,
                Duration::from_micros(1001),
                TraceId {
                    high: u64::MAX,
                    low: u64::MAX,
                },
                0x10,
                false,
            ),
            (
                u16::MAX,
                Duration::from_nanos(123_456_789_999),
                TRACE,
                0xa2fb4a1d1a96d312,
                true,
            ),
            (503, Duration::from_secs(u64::MAX / 1000), TRACE, 7, true),
            (503, Duration::MAX, TRACE, 7, true),
        ];
        for (status, elapsed, trace_id, span_id, sampled) in cases {
            let e = Entry {
                status,
                elapsed,
                trace_id,
                span_id,
                sampled,
                ..entry("GET", "/")
            };
            let micros = elapsed.as_micros();
            let want = format!(
                "[INFO  access] GET / {} {}.{:03}ms trace_id={} span_id={:016x} sampled={}\n",
                status,
                micros / 1000,
                micros % 1000,
                trace_id,
                span_id,
                sampled,
            );
            assert_eq!(line(&e), want, "{status} {elapsed:?} {trace_id} {span_id}");
        }
    }

    /// Our prefix is env_logger's, at every level.
    #[test]
    fn the_prefix_is_env_loggers_at_every_level() {
        let sink = Sink::default();
        let theirs = env_logger::Builder::new()
            .parse_filters("trace")
            .target(env_logger::Target::Pipe(Box::new(sink.clone())))
            .build();
        for level in log::Level::iter() {
            sink.0.lock().unwrap().clear();
            log_to(&theirs, "a::target", level, "message");
            let mut ours = Vec::new();
            prefix(&mut ours, level, "a::target");
            ours.extend_from_slice(b"message\n");
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(sink.0.lock().unwrap().concat()).unwrap(),
                "{level}"
            );
        }
    }

    /// A writer that records each write it gets.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_wait_for_a_flush_or_a_full_buffer_and_none_is_lost() {
        let sink = Sink::default();
        let log = AccessLog::new(sink.clone(), true);
        log.record(&entry("GET", "/gettime"));
        log.record(&entry("GET", "/"));
        assert!(sink.0.lock().unwrap().is_empty(), "buffered, not written");
        log.flush();
        assert_eq!(sink.0.lock().unwrap().len(), 1, "two lines, one write");
        log.flush();
        assert_eq!(sink.0.lock().unwrap().len(), 1, "nothing to write");

        // Enough lines to fill the buffer: written without waiting for a flush.
        let per_line = line(&entry("GET", "/gettime")).len();
        let fill = BUFFER_BYTES / per_line + 1;
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..fill {
                        log.record(&entry("GET", "/gettime"));
                    }
                });
            }
        });
        assert!(
            sink.0.lock().unwrap().len() >= 2,
            "a full buffer is written at once"
        );
        log.flush();
        let all: Vec<u8> = sink.0.lock().unwrap().concat();
        let text = String::from_utf8(all).unwrap();
        assert_eq!(text.lines().count(), 2 + 4 * fill, "every line, whole");
        assert!(
            text.lines()
                .all(|l| l.starts_with("[INFO  access] ") && l.ends_with("sampled=true"))
        );
    }

    /// Logs `message` at `level` for `target` through `logger`.
    fn log_to(logger: &dyn log::Log, target: &str, level: log::Level, message: &str) {
        logger.log(
            &log::Record::builder()
                .target(target)
                .level(level)
                .args(format_args!("{message}"))
                .build(),
        );
    }

    /// The handlers' line waits in the buffer, as env_logger would write it; a warning of
    /// theirs, or a line of another target, writes it first.
    #[test]
    fn the_logger_buffers_handler_lines_and_keeps_the_order() {
        use log::Level::{Debug, Info, Warn};
        let sink = Sink::default();
        let inner = || {
            env_logger::Builder::new()
                .parse_filters("info")
                .target(env_logger::Target::Pipe(Box::new(sink.clone())))
                .build()
        };
        let logger = Logger {
            inner: inner(),
            buffer: Box::leak(Box::new(AccessLog::new(sink.clone(), true))),
        };
        let handlers = crate::handlers::LOG_TARGET;
        let written = || String::from_utf8(sink.0.lock().unwrap().concat()).unwrap();
        // A constant message (`Arguments::as_str` is `Some`, as for the handler's `info!`):
        // copied as it is; `log_to`'s are formatted.
        log::Log::log(
            &logger,
            &log::Record::builder()
                .target(handlers)
                .level(Info)
                .args(format_args!("Received getTime request"))
                .build(),
        );
        assert_eq!(written(), "", "buffered");
        log_to(&logger, handlers, Debug, "filtered out");
        log_to(&logger, handlers, Warn, "a warning");
        log_to(&logger, handlers, Info, "Received getTime request");
        log_to(
            &logger,
            "tiny_http",
            log::Level::Error,
            "Error accepting new client: Invalid argument (os error 22)",
        );
        log_to(&logger, "myhelloworld", Info, "stopped");
        let ours = written();
        // env_logger's own line for the same record.
        sink.0.lock().unwrap().clear();
        log_to(&inner(), handlers, Info, "Received getTime request");
        let theirs = written();
        assert_eq!(
            ours,
            format!("{theirs}[WARN  {handlers}] a warning\n{theirs}[INFO  myhelloworld] stopped\n"),
            "each buffered line before the next other line, as env_logger writes it"
        );
    }

    /// A writer that always fails.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A failed write drops the batch and returns, the log usable again. (It is said on
    /// stderr, not through `log`: under `Logger` that would flush again, and once did so
    /// under the lock. No logger is installed here, so this test cannot show that case.)
    #[test]
    fn a_failing_writer_drops_the_batch_and_returns() {
        let log: &'static AccessLog<Broken> = Box::leak(Box::new(AccessLog::new(Broken, true)));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..3 {
                log.record(&entry("GET", "/"));
                log.flush();
            }
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("flushes return");
        assert!(lock(&log.pending).is_empty() && lock(&log.out).1.is_empty());
    }

    #[test]
    fn a_disabled_log_writes_nothing() {
        let sink = Sink::default();
        let log = AccessLog::new(sink.clone(), false);
        log.record(&entry("GET", "/"));
        log.flush();
        assert!(sink.0.lock().unwrap().is_empty());
    }
}

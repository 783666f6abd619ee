//! The outgoing call of `/chain`: a minimal blocking HTTP/1.1 client over `TcpStream`.
//!
//! Why our own: one GET to a plain `http://` URL (inside the mesh the sidecar adds mTLS),
//! with a total deadline on every step, is less code than configuring a general client, and
//! adds no dependency. One request per connection (`Connection: close`); the response body
//! is read by Content-Length, chunked encoding, or to the end, up to `MAX_BODY` bytes.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest downstream body we relay.
const MAX_BODY: usize = 1 << 20;
/// Largest response head we read.
const MAX_HEAD: usize = 64 << 10;

/// A parsed `http://host[:port][/path][?query]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub target: String,
}

impl Url {
    /// Parses an `http://` URL. No userinfo, no fragment, no https (the sidecar does TLS).
    pub fn parse(url: &str) -> Option<Url> {
        let rest = url.strip_prefix("http://")?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if target.contains('#') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: `[::1]`.
            Some((_, p)) if p.ends_with(']') => (authority, 80),
            Some((h, p)) => (h, p.parse().ok().filter(|&p| p != 0)?),
            None => (authority, 80),
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
        valid_host.then(|| Url {
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// The `Host` header value.
    fn host_header(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.target)
    }
}

/// What went wrong with the downstream call.
#[derive(Debug)]
pub enum Error {
    /// The deadline passed (answered 504).
    Timeout,
    /// Anything else: resolution, connection, a malformed response (answered 502).
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out"),
            Error::Failed(why) => f.write_str(why),
        }
    }
}

fn io_error(context: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout,
        _ => Error::Failed(format!("{context}: {e}")),
    }
}

/// A downstream response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `Content-Type` and `Location`, when present and valid to relay (visible ASCII, spaces
    /// and tabs: see `relayable`).
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Sends `GET url` with `headers` and reads the response, all within `timeout`.
/// Name resolution uses the system resolver and is not bounded by `timeout`.
pub fn get(url: &Url, headers: &[(&str, &str)], timeout: Duration) -> Result<Response, Error> {
    let head = request_head(url, headers)?;
    let deadline = Instant::now() + timeout;
    let mut stream = connect(url, deadline)?;
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| io_error("socket", e))?;
    stream
        .write_all(head.as_bytes())
        .map_err(|e| io_error("sending the request", e))?;
    // Every read is bounded by what is left of the deadline.
    read_response(&mut BufReader::new(DeadlineReader { stream, deadline }))
}

/// What is left until `deadline`, or a timeout.
fn remaining(deadline: Instant) -> Result<Duration, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Error::Timeout)
    } else {
        Ok(left)
    }
}

/// A connection to the first of the URL's addresses that accepts one.
fn connect(url: &Url, deadline: Instant) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = (url.connect_host(), url.port)
        .to_socket_addrs()
        .map_err(|e| Error::Failed(format!("resolving {}: {e}", url.host)))?
        .collect();
    let mut last_error = Error::Failed(format!("{} has no address", url.host));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = io_error(&format!("connecting to {addr}"), e),
        }
    }
    Err(last_error)
}

/// The request head. A header name that is not a token or a value with control bytes is
/// refused, never written: it could end the head early or add headers of its own.
fn request_head(url: &Url, headers: &[(&str, &str)]) -> Result<String, Error> {
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: myhelloworld/{}\r\nAccept: */*\r\nConnection: close\r\n",
        url.target,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in headers {
        if !is_token(name.as_bytes()) || !is_field_value(value.as_bytes()) {
            return Err(Error::Failed(format!(
                "refusing to send header {name:?}: {value:?}"
            )));
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    Ok(head)
}

/// Whether `value` is a valid header field value (RFC 9110 §5.5): no control byte but HTAB,
/// so it can neither end the header line nor the head.
pub fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Whether `name` is a token (RFC 9110 §5.6.2), as header names must be.
fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A stream whose every read waits at most until the deadline.
struct DeadlineReader {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Reads the final response to our GET: interim (1xx) responses are skipped, a 101 is
/// refused (we asked for no upgrade), and the body is read as its head frames it, within
/// `MAX_HEAD` for all heads and `MAX_BODY` for the body.
fn read_response(reader: &mut impl BufRead) -> Result<Response, Error> {
    let mut head_budget = MAX_HEAD;
    let head = loop {
        let head = read_head(reader, &mut head_budget)?;
        match head.status {
            101 => {
                return Err(Error::Failed(
                    "101 Switching Protocols: no upgrade was asked".into(),
                ));
            }
            100..=199 => continue,
            _ => break head,
        }
    };
    let body = read_body(reader, head.framing)?;
    Ok(Response {
        status: head.status,
        content_type: head.content_type,
        location: head.location,
        body,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// 1xx, 204 and 304 answers have no body whatever their headers say (RFC 9112 §6.3).
    Empty,
    Length(usize),
    Chunked,
    ToEnd,
}

/// A response head: what we relay of it and how its body is framed.
struct Head {
    status: u16,
    framing: Framing,
    content_type: Option<String>,
    location: Option<String>,
}

/// Reads one head, taking what it reads from `budget`.
fn read_head(reader: &mut impl BufRead, budget: &mut usize) -> Result<Head, Error> {
    let mut line = Vec::new();
    let mut next_line = |line: &mut Vec<u8>| read_head_line(reader, budget, line);
    next_line(&mut line)?;
    let status = parse_status_line(&line).ok_or_else(|| {
        Error::Failed(format!(
            "bad status line {:?}",
            String::from_utf8_lossy(&line)
        ))
    })?;
    let (mut transfer_encodings, mut lengths) = (Vec::new(), Vec::new());
    let (mut content_type, mut location) = (None, None);
    loop {
        next_line(&mut line)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = split_field(&line).ok_or_else(|| {
            Error::Failed(format!(
                "bad header line {:?}",
                String::from_utf8_lossy(&line)
            ))
        })?;
        let slot = match name.to_ascii_lowercase().as_slice() {
            b"transfer-encoding" => Some(&mut transfer_encodings),
            b"content-length" => Some(&mut lengths),
            b"content-type" if content_type.is_none() => {
                content_type = relayable(value);
                None
            }
            b"location" if location.is_none() => {
                location = relayable(value);
                None
            }
            _ => None,
        };
        if let Some(values) = slot {
            // A list may also come as one header with commas (RFC 9110 §5.3).
            values.extend(value.split(|&b| b == b',').map(|v| trim(v).to_vec()));
        }
    }
    let framing = framing(status, &transfer_encodings, &lengths).map_err(Error::Failed)?;
    Ok(Head {
        status,
        framing,
        content_type,
        location,
    })
}

/// Reads one line of a head into `line`, without its LF or CRLF, taking it from `budget`.
fn read_head_line(
    reader: &mut impl BufRead,
    budget: &mut usize,
    line: &mut Vec<u8>,
) -> Result<(), Error> {
    line.clear();
    let n = reader
        .take(*budget as u64)
        .read_until(b'\n', line)
        .map_err(|e| io_error("reading the response", e))?;
    *budget -= n;
    if !line.ends_with(b"\n") {
        return Err(Error::Failed(
            "connection closed or response head too large".into(),
        ));
    }
    let end = line.len() - if line.ends_with(b"\r\n") { 2 } else { 1 };
    line.truncate(end);
    Ok(())
}

/// `HTTP/1.x NNN [reason]` → NNN.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next()?;
    let code = parts.next()?;
    (version.len() == 8 && version.starts_with(b"HTTP/1.") && version[7].is_ascii_digit())
        .then_some(())?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = std::str::from_utf8(code).ok()?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

/// `name: value` → the name (a token, no space before the colon) and the trimmed value.
fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    is_token(name).then(|| (name, trim(value)))
}

/// `v` without leading and trailing spaces and tabs (OWS).
fn trim(v: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// A header value we can pass on: visible ASCII, spaces and tabs only.
fn relayable(value: &[u8]) -> Option<String> {
    (is_field_value(value) && value.is_ascii())
        .then(|| String::from_utf8_lossy(value).into_owned())
        .filter(|v| !v.is_empty())
}

/// How the body after a head with `status` and these `Transfer-Encoding` and
/// `Content-Length` list elements is framed (RFC 9112 §6.3), or why it is nonsense: both
/// headers, a coding other than a lone `chunked` (we sent no `TE`), lengths that differ or
/// are not numbers, a length past `MAX_BODY`.
fn framing(
    status: u16,
    transfer_encodings: &[Vec<u8>],
    lengths: &[Vec<u8>],
) -> Result<Framing, String> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    match (transfer_encodings, lengths) {
        ([], []) => Ok(Framing::ToEnd),
        ([te], []) if te.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        (tes, []) => Err(format!(
            "unsupported Transfer-Encoding {:?}",
            String::from_utf8_lossy(&tes.join(&b", "[..]))
        )),
        ([], [first, rest @ ..]) => {
            if rest.iter().any(|l| l != first) {
                return Err("differing Content-Lengths".into());
            }
            let text = String::from_utf8_lossy(first);
            if first.is_empty() || !first.iter().all(u8::is_ascii_digit) {
                return Err(format!("bad Content-Length {text:?}"));
            }
            // All digits: a parse error is an overflow, and too large either way.
            match text.parse::<usize>() {
                Ok(n) if n <= MAX_BODY => Ok(Framing::Length(n)),
                _ => Err(format!("body of {text} bytes is too large")),
            }
        }
        _ => Err("both Transfer-Encoding and Content-Length".into()),
    }
}

fn read_body(reader: &mut impl BufRead, framing: Framing) -> Result<Vec<u8>, Error> {
    match framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(n) => {
            let mut body = vec![0; n];
            reader
                .read_exact(&mut body)
                .map_err(|e| io_error("reading the body", e))?;
            Ok(body)
        }
        Framing::Chunked => read_chunked(reader),
        Framing::ToEnd => {
            let mut body = Vec::new();
            reader
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
                .map_err(|e| io_error("reading the body", e))?;
            if body.len() > MAX_BODY {
                return Err(too_large());
            }
            Ok(body)
        }
    }
}

fn too_large() -> Error {
    Error::Failed(format!("body is larger than {MAX_BODY} bytes"))
}

/// A chunked body, up to `MAX_BODY` bytes. Trailers are not read: the connection is ours
/// alone and closed after this response.
fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        reader
            .take(1024)
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error("reading a chunk", e))?;
        let size = parse_chunk_size(&line).ok_or_else(|| {
            Error::Failed(format!(
                "bad chunk size line {:?}",
                String::from_utf8_lossy(&line)
            ))
        })?;
        if size == 0 {
            return Ok(body);
        }
        if size > MAX_BODY - body.len() {
            return Err(too_large());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| io_error("reading a chunk", e))?;
        let mut crlf = [0u8; 2];
        reader
            .read_exact(&mut crlf)
            .map_err(|e| io_error("reading a chunk", e))?;
        if &crlf != b"\r\n" {
            return Err(Error::Failed("chunk data longer than its size".into()));
        }
    }
}

/// `1*HEXDIG [BWS ";" extensions] CRLF` → the size; saturating, so a size past any limit
/// reads as `usize::MAX` instead of overflowing.
fn parse_chunk_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = trim(line.split(|&b| b == b';').next()?);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |size, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(size.saturating_mul(16).saturating_add(digit as usize))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = |host: &str, port, target: &str| {
            Some(Url {
                host: host.into(),
                port,
                target: target.into(),
            })
        };
        let cases = [
            (
                "http://myhelloworld-backend:8080/gettime",
                url("myhelloworld-backend", 8080, "/gettime"),
            ),
            ("http://example", url("example", 80, "/")),
            ("http://127.0.0.1:9/a?b=c", url("127.0.0.1", 9, "/a?b=c")),
            ("http://h?x=1", url("h", 80, "/?x=1")),
            ("http://[::1]:8080/x", url("[::1]", 8080, "/x")),
            ("http://[::1]/x", url("[::1]", 80, "/x")),
            ("https://h/", None),
            ("http://", None),
            ("http://h:0/", None),
            ("http://h:99999/", None),
            ("http://user@h/", None),
            ("http://h/a b", None),
            ("http://h/#frag", None),
            ("ftp://h/", None),
        ];
        for (input, want) in cases {
            assert_eq!(Url::parse(input), want, "{input}");
        }
        assert_eq!(
            Url::parse("http://b:8080/gettime").unwrap().to_string(),
            "http://b:8080/gettime"
        );
    }

    #[test]
    fn status_lines() {
        let cases = [
            ("HTTP/1.1 200 OK", Some(200)),
            ("HTTP/1.0 404 Not Found", Some(404)),
            ("HTTP/1.1 503", Some(503)),
            ("HTTP/1.1 100 Continue", Some(100)),
            ("HTTP/2 200 OK", None),
            ("HTTP/1.10 200 OK", None),
            ("HTTP/1.1 20 OK", None),
            ("HTTP/1.1 +20 OK", None),
            ("HTTP/1.1 999 What", None),
            ("HTTP/1.1  200 OK", None),
            ("garbage", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_status_line(line.as_bytes()), want, "{line:?}");
        }
    }

    #[test]
    fn header_names_and_values() {
        assert!(is_token(b"x-request-id") && is_token(b"X_Odd~1"));
        for name in ["", "a b", "a:b", "a\nb", "a\0", "é"] {
            assert!(!is_token(name.as_bytes()), "{name:?}");
        }
        assert!(is_field_value(b"abc") && is_field_value(b"a\tb c") && is_field_value(b""));
        for value in [
            "abc\nHost: evil",
            "a\rb",
            "a\0",
            "\x01",
            "a\x7fb",
            "\x1b[31m",
        ] {
            assert!(!is_field_value(value.as_bytes()), "{value:?}");
        }
    }

    #[test]
    fn a_header_that_could_split_the_request_is_refused() {
        let url = Url::parse("http://b:8080/gettime").unwrap();
        let head = request_head(&url, &[("x-request-id", "abc"), ("b3", "0")]).unwrap();
        assert!(
            head.ends_with("\r\nx-request-id: abc\r\nb3: 0\r\n\r\n"),
            "{head}"
        );
        for (name, value) in [
            ("x-request-id", "abc\nHost: evil.example"),
            ("x-request-id", "abc\r\n\r\nGET /smuggled HTTP/1.1"),
            ("traceparent", "00-\0"),
            ("x-a\r\nx-b", "v"),
            ("", "v"),
        ] {
            let refused = request_head(&url, &[(name, value)]);
            assert!(
                matches!(refused, Err(Error::Failed(_))),
                "{name:?}: {value:?}"
            );
        }
    }

    #[test]
    fn chunk_sizes() {
        let cases: &[(&str, Option<usize>)] = &[
            ("5\r\n", Some(5)),
            ("A\n", Some(10)),
            ("6;x=y\r\n", Some(6)),
            ("6 ;x\r\n", Some(6)),
            ("0\r\n", Some(0)),
            ("0000000000000000000010\r\n", Some(16)),
            ("ffffffffffffffff\r\n", Some(usize::MAX)),
            ("fffffffffffffffffffffff\r\n", Some(usize::MAX)),
            ("+5\r\n", None),
            ("-1\r\n", None),
            ("\r\n", None),
            ("5", None),
            ("0x5\r\n", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_chunk_size(line.as_bytes()), *want, "{line:?}");
        }
    }

    /// The client's own reader on raw response bytes.
    fn read(raw: &[u8]) -> Result<Response, Error> {
        read_response(&mut BufReader::new(raw))
    }

    fn body(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
        read(raw).ok().map(|r| (r.status, r.body))
    }

    #[test]
    fn hostile_and_odd_answers() {
        let ok = |status, body: &[u8]| Some((status, body.to_vec()));
        type Case<'a> = (&'a str, &'a [u8], Option<(u16, Vec<u8>)>);
        let cases: &[Case] = &[
            ("length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", ok(200, b"hello")),
            (
                "chunked with an extension",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
                ok(200, b"hello world"),
            ),
            ("to the end", b"HTTP/1.0 503 Busy\r\n\r\nuntil the end", ok(503, b"until the end")),
            ("bare LF lines", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", ok(200, b"hi")),
            (
                "binary body kept as bytes",
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\xff\x00\xfe\n",
                ok(200, b"\xff\x00\xfe\n"),
            ),
            (
                "equal lengths, repeated or listed",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nhi",
                ok(200, b"hi"),
            ),
            (
                "100 Continue and 103 skipped",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                ok(200, b"ok"),
            ),
            (
                "204 has no body whatever it says",
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
                ok(204, b""),
            ),
            (
                "304 has no body, even chunked",
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                ok(304, b""),
            ),
            ("101 is not an answer to a GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", None),
            (
                "a chunk size that overflows",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nb\r\n0\r\n\r\n",
                None,
            ),
            (
                "chunk data longer than its size",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n0\r\n\r\n",
                None,
            ),
            ("truncated chunked body", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", None),
            ("truncated length body", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi", None),
            ("a head without its end", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", None),
            ("bad length", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", None),
            ("signed length", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", None),
            ("empty length", b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", None),
            (
                "huge length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000000000000000\r\n\r\n",
                None,
            ),
            (
                "differing lengths",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
                None,
            ),
            (
                "both Transfer-Encoding and Content-Length",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
                None,
            ),
            (
                "Transfer-Encoding not ending in chunked",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhello",
                None,
            ),
            (
                "a coding before chunked",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                None,
            ),
            ("xchunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", None),
            ("no colon", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", None),
            (
                "space before the colon",
                b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi",
                None,
            ),
            (
                "a folded line",
                b"HTTP/1.1 200 OK\r\nX-A: 1\r\n Content-Length: 2\r\n\r\nhi",
                None,
            ),
            ("an HTTP/2 status line", b"HTTP/2 200\r\n\r\n", None),
            ("nothing", b"", None),
        ];
        for (name, raw, want) in cases {
            assert_eq!(body(raw), *want, "{name}");
        }
    }

    #[test]
    fn the_limits_hold_for_every_framing() {
        let exactly = vec![b'x'; MAX_BODY];
        let over = vec![b'x'; MAX_BODY + 1];
        let with_length = |b: &[u8]| {
            let mut raw =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).into_bytes();
            raw.extend_from_slice(b);
            raw
        };
        let to_end = |b: &[u8]| [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), b].concat();
        // Chunks of 64 KiB, then one byte more where asked.
        let chunked = |b: &[u8]| {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for chunk in b.chunks(64 << 10) {
                raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                raw.extend_from_slice(chunk);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            raw
        };
        for (name, frame) in [
            ("length", &with_length as &dyn Fn(&[u8]) -> Vec<u8>),
            ("to the end", &to_end),
            ("chunked", &chunked),
        ] {
            let whole = read(&frame(&exactly)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(whole.body.len(), MAX_BODY, "{name}");
            assert!(read(&frame(&over)).is_err(), "{name}: one byte over");
        }
        // Heads: 64 KiB in all, interim heads included.
        let filler = format!("X-Filler: {}\r\n", "f".repeat(1000));
        let big_head = format!("HTTP/1.1 200 OK\r\n{}\r\n", filler.repeat(66));
        assert!(read(big_head.as_bytes()).is_err());
        let endless_continues = "HTTP/1.1 100 Continue\r\n\r\n".repeat(3000);
        assert!(read(endless_continues.as_bytes()).is_err());
    }

    #[test]
    fn content_type_and_location_are_relayed_when_valid() {
        let r = read(
            b"HTTP/1.1 302 Found\r\nContent-Type: image/png\r\nLocation: /elsewhere?a=b\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.content_type.as_deref(), r.location.as_deref()),
            (Some("image/png"), Some("/elsewhere?a=b"))
        );
        let r = read(
            b"HTTP/1.1 302 Found\r\nContent-Type: a\x01b\r\nLocation: /x\x00y\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.content_type, r.location), (None, None));
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!((r.content_type, r.location), (None, None));
    }
}

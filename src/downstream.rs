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
    pub body: Vec<u8>,
}

/// Sends `GET url` with `headers` and reads the response, all within `timeout`.
/// Name resolution uses the system resolver and is not bounded by `timeout`.
pub fn get(url: &Url, headers: &[(&str, &str)], timeout: Duration) -> Result<Response, Error> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Error::Timeout)
        } else {
            Ok(left)
        }
    };
    let addrs: Vec<SocketAddr> = (url.connect_host(), url.port)
        .to_socket_addrs()
        .map_err(|e| Error::Failed(format!("resolving {}: {e}", url.host)))?
        .collect();
    let mut last_error = Error::Failed(format!("{} has no address", url.host));
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = io_error(&format!("connecting to {addr}"), e),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let _ = stream.set_nodelay(true);

    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: myhelloworld/{}\r\nAccept: */*\r\nConnection: close\r\n",
        url.target,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(|e| io_error("socket", e))?;
    stream
        .write_all(head.as_bytes())
        .map_err(|e| io_error("sending the request", e))?;

    // Every read is bounded by what is left of the deadline.
    let mut reader = BufReader::new(DeadlineReader { stream, deadline });
    let (status, framing) = read_head(&mut reader)?;
    let body = match framing {
        Framing::Length(n) if n > MAX_BODY => {
            return Err(Error::Failed(format!("body of {n} bytes is too large")));
        }
        Framing::Length(n) => {
            let mut body = vec![0; n];
            reader
                .read_exact(&mut body)
                .map_err(|e| io_error("reading the body", e))?;
            body
        }
        Framing::Chunked => read_chunked(&mut reader)?,
        Framing::ToEnd => {
            let mut body = Vec::new();
            reader
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
                .map_err(|e| io_error("reading the body", e))?;
            if body.len() > MAX_BODY {
                return Err(Error::Failed("body is too large".into()));
            }
            body
        }
    };
    Ok(Response { status, body })
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

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    ToEnd,
}

/// Reads the status line and headers; returns the status and how the body is framed.
fn read_head(reader: &mut impl BufRead) -> Result<(u16, Framing), Error> {
    let mut line = String::new();
    let mut read = 0;
    let mut next_line = |line: &mut String| -> Result<(), Error> {
        line.clear();
        let n = reader
            .take((MAX_HEAD - read) as u64)
            .read_line(line)
            .map_err(|e| io_error("reading the response", e))?;
        read += n;
        if n == 0 || !line.ends_with('\n') {
            return Err(Error::Failed(
                "connection closed or response head too large".into(),
            ));
        }
        Ok(())
    };
    next_line(&mut line)?;
    let status = parse_status_line(&line)
        .ok_or_else(|| Error::Failed(format!("bad status line {:?}", line.trim_end())))?;
    let mut framing = Framing::ToEnd;
    loop {
        next_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            return Ok((status, framing));
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Error::Failed(format!("bad header line {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let n = value
                .parse()
                .map_err(|_| Error::Failed(format!("bad Content-Length {value:?}")))?;
            framing = Framing::Length(n);
        }
    }
}

/// `HTTP/1.x NNN reason` → NNN.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    (version.starts_with("HTTP/1.") && code.len() == 3)
        .then(|| code.parse().ok())
        .flatten()
        .filter(|c| (100..=599).contains(c))
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader
            .take(1024)
            .read_line(&mut line)
            .map_err(|e| io_error("reading a chunk", e))?;
        let size_text = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Error::Failed(format!("bad chunk size {size_text:?}")))?;
        if body.len() + size > MAX_BODY {
            return Err(Error::Failed("body is too large".into()));
        }
        if size == 0 {
            return Ok(body);
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
    }
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
            ("HTTP/1.1 200 OK\r\n", Some(200)),
            ("HTTP/1.0 404 Not Found\r\n", Some(404)),
            ("HTTP/1.1 503\r\n", Some(503)),
            ("HTTP/2 200 OK\r\n", None),
            ("HTTP/1.1 20 OK\r\n", None),
            ("HTTP/1.1 999 What\r\n", None),
            ("garbage", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_status_line(line), want, "{line:?}");
        }
    }

    fn head_and_body(raw: &str) -> Result<(u16, Vec<u8>), Error> {
        let mut reader = BufReader::new(raw.as_bytes());
        let (status, framing) = read_head(&mut reader)?;
        let body = match framing {
            Framing::Length(n) => {
                let mut b = vec![0; n];
                reader.read_exact(&mut b).map_err(|e| io_error("body", e))?;
                b
            }
            Framing::Chunked => read_chunked(&mut reader)?,
            Framing::ToEnd => {
                let mut b = Vec::new();
                reader.read_to_end(&mut b).unwrap();
                b
            }
        };
        Ok((status, body))
    }

    #[test]
    fn response_framing() {
        let cases: [(&str, Option<(u16, &str)>); 6] = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                Some((200, "hello")),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
                Some((200, "hello world")),
            ),
            (
                "HTTP/1.0 503 Busy\r\n\r\nuntil the end",
                Some((503, "until the end")),
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", None),
            ("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", None),
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", None),
        ];
        for (raw, want) in cases {
            let got = head_and_body(raw).ok();
            let want = want.map(|(s, b)| (s, b.as_bytes().to_vec()));
            assert_eq!(got, want, "{raw:?}");
        }
    }
}

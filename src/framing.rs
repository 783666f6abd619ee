//! Whether a request head can be answered safely on its connection (RFC 9112 §3.2, §6).
//!
//! tiny_http trusts the head more than is safe: it ignores `Content-Length` whenever any
//! `Transfer-Encoding` is present (whatever its value), takes the first of several
//! `Content-Length`s, reads one it cannot parse as "no body", leaves a chunked body unread,
//! and drains a longer body (over 1 KiB, or any after `Expect: 100-continue`) only when the
//! request is dropped, blocking on the client and allocating the whole declared length at
//! once. Any of these makes the next request on the connection start at the wrong byte, or
//! lets one request hold a worker or end the process. So, before answering, `judge` reads the
//! head the way RFC 9112 does: ambiguous framing is refused, a body no route takes is refused,
//! and a connection whose body tiny_http left unread is closed after the answer. Pure: the
//! server does the closing.

/// Longest body tiny_http reads together with the head (`Expect: 100-continue` aside); a
/// longer one it leaves to be drained. No route takes a body, so this is also the longest we
/// accept (and ignore).
pub const BUFFERED_BODY: u64 = 1024;

/// A request refused before it reaches a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Answer this instead of the route's reply.
    pub refusal: Option<Refusal>,
    /// Close the connection after the answer: the rest of what the client sent cannot be
    /// told apart from a next request.
    pub close: bool,
    /// The body tiny_http left in the socket, as it reads the head (`tiny_http_drain`): it
    /// drains that many bytes, into one buffer of the whole length, when the request is
    /// dropped.
    pub drain: Option<u64>,
}

/// The header fields `judge` reads, gathered in one pass.
#[derive(Default)]
struct Fields<'a> {
    hosts: usize,
    hosts_valid: bool,
    lengths: usize,
    /// The one length all `Content-Length` lines agree on; None if none or invalid.
    length: Option<u64>,
    lengths_valid: bool,
    encodings: usize,
    /// The last `Transfer-Encoding` line.
    codings: Option<&'a str>,
    /// The first line of each, which is all tiny_http reads.
    first_length: Option<&'a str>,
    first_expect: Option<&'a str>,
    first_connection: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn gather(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Fields<'a> {
        let mut f = Fields {
            hosts_valid: true,
            lengths_valid: true,
            ..Fields::default()
        };
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("host") {
                f.hosts += 1;
                f.hosts_valid &= valid_host(value);
            } else if name.eq_ignore_ascii_case("content-length") {
                f.lengths += 1;
                f.first_length.get_or_insert(value);
                match (parse_length(value), f.length) {
                    (Some(n), None) if f.lengths_valid => f.length = Some(n),
                    (Some(n), Some(first)) if n == first => {}
                    _ => f.lengths_valid = false,
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                f.encodings += 1;
                f.codings = Some(value);
            } else if name.eq_ignore_ascii_case("expect") {
                f.first_expect.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("connection") {
                f.first_connection.get_or_insert(value);
            }
        }
        f
    }

    /// The body tiny_http leaves unread, read as tiny_http reads the head: the first
    /// `Content-Length` as a `usize` (a `+` allowed), ignored under any `Transfer-Encoding`
    /// or `Connection: upgrade`; unread when longer than `BUFFERED_BODY`, or behind the
    /// first `Expect: 100-continue`. Our own reading can differ (and refuse the head): what
    /// tiny_http will drain is what decides whether dropping the request is safe.
    fn tiny_http_drain(&self) -> Option<u64> {
        let upgrade = self
            .first_connection
            .is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"));
        if self.encodings > 0 || upgrade {
            return None;
        }
        let n = self.first_length?.parse::<usize>().ok()? as u64;
        let expects = self
            .first_expect
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
        (n > 0 && (n > BUFFERED_BODY || expects)).then_some(n)
    }

    /// RFC 9112's reading: a refusal, and whether the connection must close after it.
    fn refusal(&self, http11: bool) -> Option<(Refusal, bool)> {
        let refuse = |status, reason, close| Some((Refusal { status, reason }, close));
        if self.encodings > 0 {
            if self.lengths > 0 {
                return refuse(400, "both Transfer-Encoding and Content-Length", true);
            }
            // tiny_http decodes chunked whatever the codings say, and reads one line of
            // them: more than one could hide a coding.
            if self.encodings > 1 || !self.codings.is_some_and(ends_in_chunked) {
                return refuse(400, "Transfer-Encoding other than chunked", true);
            }
        }
        if !self.lengths_valid {
            return refuse(400, "invalid or conflicting Content-Length", true);
        }
        if self.length.is_some_and(|n| n > BUFFERED_BODY) {
            return refuse(413, "request body too large", true);
        }
        refuse(400, self.host_refusal(http11)?, false)
    }

    /// Why the `Host` lines are refused (RFC 9112 §3.2), if they are.
    fn host_refusal(&self, http11: bool) -> Option<&'static str> {
        if self.hosts > 1 {
            Some("more than one Host")
        } else if self.hosts == 0 && http11 {
            Some("no Host")
        } else if !self.hosts_valid {
            Some("invalid Host")
        } else {
            None
        }
    }
}

/// Judges a request head: its HTTP minor version (1.0 or 1.1) and its header fields.
pub fn judge<'a>(http11: bool, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Verdict {
    let f = Fields::gather(headers);
    let refusal = f.refusal(http11);
    let drain = f.tiny_http_drain();
    Verdict {
        refusal: refusal.map(|(r, _)| r),
        // A chunked body, or one tiny_http will drain, is still in the socket.
        close: refusal.is_some_and(|(_, close)| close) || f.encodings > 0 || drain.is_some(),
        drain,
    }
}

/// `1*DIGIT`, as RFC 9110 §8.6 defines it (no sign, no list, no spaces inside).
fn parse_length(value: &str) -> Option<u64> {
    let digits = value.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether the last transfer coding is `chunked`, the only framing a request may end with.
fn ends_in_chunked(codings: &str) -> bool {
    codings.rsplit(',').next().is_some_and(|last| {
        last.trim_matches([' ', '\t'])
            .eq_ignore_ascii_case("chunked")
    })
}

/// `uri-host [ ":" port ]`: the characters of a reg-name, an IP literal or a port (RFC 3986).
fn valid_host(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// The origin form (`/path?query`) of a request target. Absolute form (`http://host/path`),
/// which a server must accept (RFC 9112 §3.2.2), is reduced to its path; other targets are
/// returned as they are.
pub fn origin_form(target: &str) -> &str {
    let Some(scheme_end) = target.find("://") else {
        return target;
    };
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return target;
    }
    let rest = &target[scheme_end + 3..];
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: (&str, &str) = ("Host", "example");

    fn serve(close: bool, drain: Option<u64>) -> Verdict {
        Verdict {
            refusal: None,
            close,
            drain,
        }
    }

    fn refused(status: u16, reason: &'static str, close: bool, drain: Option<u64>) -> Verdict {
        Verdict {
            refusal: Some(Refusal { status, reason }),
            close,
            drain,
        }
    }

    const BAD_LENGTH: &str = "invalid or conflicting Content-Length";
    const NOT_CHUNKED: &str = "Transfer-Encoding other than chunked";

    #[test]
    fn heads_are_judged_as_rfc_9112_reads_them() {
        type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)], Verdict);
        let cases: &[Case] = &[
            ("no body", true, &[HOST], serve(false, None)),
            ("HTTP/1.0 needs no Host", false, &[], serve(false, None)),
            (
                "HTTP/1.1 without Host",
                true,
                &[],
                refused(400, "no Host", false, None),
            ),
            (
                "two Hosts",
                true,
                &[HOST, ("host", "other")],
                refused(400, "more than one Host", false, None),
            ),
            (
                "a Host with a space",
                true,
                &[("Host", "a b")],
                refused(400, "invalid Host", false, None),
            ),
            (
                "an IPv6 Host with a port",
                true,
                &[("Host", "[::1]:8080")],
                serve(false, None),
            ),
            (
                "an empty body",
                true,
                &[HOST, ("Content-Length", "0")],
                serve(false, None),
            ),
            (
                "a body tiny_http has read",
                true,
                &[HOST, ("content-length", "1024")],
                serve(false, None),
            ),
            (
                "a body past what tiny_http reads",
                true,
                &[HOST, ("Content-Length", "1025")],
                refused(413, "request body too large", true, Some(1025)),
            ),
            (
                "100 GB",
                true,
                &[HOST, ("Content-Length", "100000000000")],
                refused(413, "request body too large", true, Some(100_000_000_000)),
            ),
            (
                "past u64 (tiny_http: no body)",
                true,
                &[HOST, ("Content-Length", "99999999999999999999")],
                refused(400, BAD_LENGTH, true, None),
            ),
            (
                "a sign (tiny_http reads it)",
                true,
                &[HOST, ("Content-Length", "+5")],
                refused(400, BAD_LENGTH, true, None),
            ),
            (
                "a sign on a huge length: tiny_http would drain 10^15 bytes",
                true,
                &[HOST, ("Content-Length", "+1000000000000000")],
                refused(400, BAD_LENGTH, true, Some(1_000_000_000_000_000)),
            ),
            (
                "a huge first length, a small second: tiny_http reads the first",
                true,
                &[
                    HOST,
                    ("Content-Length", "1000000000000000"),
                    ("Content-Length", "1"),
                ],
                refused(400, BAD_LENGTH, true, Some(1_000_000_000_000_000)),
            ),
            (
                "not a number",
                true,
                &[HOST, ("Content-Length", "five")],
                refused(400, BAD_LENGTH, true, None),
            ),
            (
                "empty",
                true,
                &[HOST, ("Content-Length", "")],
                refused(400, BAD_LENGTH, true, None),
            ),
            (
                "a list in one line (tiny_http reads it as no body)",
                true,
                &[HOST, ("Content-Length", "5, 5")],
                refused(400, BAD_LENGTH, true, None),
            ),
            (
                "two that differ",
                true,
                &[HOST, ("Content-Length", "5"), ("Content-Length", "6")],
                refused(400, BAD_LENGTH, true, None),
            ),
            (
                "two that agree",
                true,
                &[HOST, ("Content-Length", "5"), ("Content-Length", "5")],
                serve(false, None),
            ),
            (
                "chunked: served, the unread body closes the connection",
                true,
                &[HOST, ("Transfer-Encoding", "chunked")],
                serve(true, None),
            ),
            (
                "gzip then chunked",
                true,
                &[HOST, ("Transfer-Encoding", "gzip, Chunked")],
                serve(true, None),
            ),
            (
                "xchunked",
                true,
                &[HOST, ("Transfer-Encoding", "xchunked")],
                refused(400, NOT_CHUNKED, true, None),
            ),
            (
                "chunked then gzip",
                true,
                &[HOST, ("Transfer-Encoding", "chunked, gzip")],
                refused(400, NOT_CHUNKED, true, None),
            ),
            (
                "two Transfer-Encoding lines",
                true,
                &[
                    HOST,
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked"),
                ],
                refused(400, NOT_CHUNKED, true, None),
            ),
            (
                "Transfer-Encoding and Content-Length (tiny_http ignores the length)",
                true,
                &[
                    HOST,
                    ("Transfer-Encoding", "chunked"),
                    ("Content-Length", "5000"),
                ],
                refused(400, "both Transfer-Encoding and Content-Length", true, None),
            ),
            (
                "100-continue: tiny_http leaves even a small body unread",
                true,
                &[HOST, ("Expect", "100-continue"), ("Content-Length", "10")],
                serve(true, Some(10)),
            ),
            (
                "100-continue then another Expect: tiny_http reads the first",
                true,
                &[
                    HOST,
                    ("Expect", "100-continue"),
                    ("Expect", "x"),
                    ("Content-Length", "10"),
                ],
                serve(true, Some(10)),
            ),
            (
                "100-continue with no body",
                true,
                &[HOST, ("Expect", "100-Continue"), ("Content-Length", "0")],
                serve(false, None),
            ),
            (
                "Connection: upgrade: tiny_http gives the whole stream, drains nothing",
                true,
                &[HOST, ("Connection", "Upgrade"), ("Content-Length", "5000")],
                refused(413, "request body too large", true, None),
            ),
            (
                "framing is judged before Host",
                true,
                &[("Content-Length", "x")],
                refused(400, BAD_LENGTH, true, None),
            ),
            (
                "no Host and a chunked body: refused and closed",
                true,
                &[("Transfer-Encoding", "chunked")],
                refused(400, "no Host", true, None),
            ),
        ];
        for (name, http11, headers, want) in cases {
            assert_eq!(judge(*http11, headers.iter().copied()), *want, "{name}");
        }
    }

    #[test]
    fn absolute_targets_are_routed_by_their_path() {
        let cases = [
            ("/gettime", "/gettime"),
            ("http://example/gettime", "/gettime"),
            ("HTTP://example:8080/chain?x=1", "/chain?x=1"),
            ("https://example", "/"),
            ("http://example?x=1", "/"),
            ("*", "*"),
            ("ftp://example/gettime", "ftp://example/gettime"),
            ("/a://b", "/a://b"),
        ];
        for (target, want) in cases {
            assert_eq!(origin_form(target), want, "{target}");
        }
    }
}

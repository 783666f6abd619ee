//! The Jaeger agent as the reporter sees it: its address (resolved again over time), a UDP
//! socket connected to it (so that refusals come back; see the `reporter` module), and the
//! process head every datagram starts with.

use super::batch::Batch;
use super::drain::{Refused, Sent, Transport, Unsent};
use crate::jaeger_thrift;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// The process tag naming the client: the Jaeger clients write `<name>-<version>` here.
const CLIENT_VERSION: &str = concat!("myhelloworld-", env!("CARGO_PKG_VERSION"));

/// The longest `ip` tag value: an IPv6 address in text, with an embedded IPv4 address.
const MAX_IP_TEXT: usize = 45;

/// The process the datagrams describe.
pub(super) struct Process {
    pub(super) service_name: String,
    pub(super) tags: Vec<(String, String)>,
    pub(super) hostname: String,
}

impl Process {
    /// The datagram head: the service name and the process tags, as the Jaeger clients send
    /// them (client version, hostname, the IP we send from), then `JAEGER_TAGS`.
    fn head(&self, ip: &str) -> Vec<u8> {
        let mut tags = vec![("jaeger.version", CLIENT_VERSION)];
        if !self.hostname.is_empty() {
            tags.push(("hostname", &self.hostname));
        }
        tags.push(("ip", ip));
        tags.extend(self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        jaeger_thrift::batch_head(&self.service_name, &tags)
    }

    /// The length of the longest head: the address we send from is known only once connected.
    pub(super) fn longest_head(&self) -> usize {
        self.head(&"0".repeat(MAX_IP_TEXT)).len()
    }
}

/// The host's name (the pod's name in Kubernetes); empty if it cannot be read.
pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

pub(super) struct Agent {
    resolver: Resolver,
    process: Process,
    /// A socket connected to the agent's address, and that address.
    socket: Option<(UdpSocket, SocketAddr)>,
    /// `process`'s head with the address the socket sends from.
    head: Vec<u8>,
    datagram: Vec<u8>,
    /// Spans in the last datagram sent: refused, if the next send finds an ICMP error.
    last_sent: u64,
}

impl Agent {
    pub(super) fn new(host: String, port: u16, process: Process) -> Agent {
        Agent {
            resolver: Resolver::new(host, port),
            process,
            socket: None,
            head: Vec::new(),
            datagram: Vec::new(),
            last_sent: 0,
        }
    }

    /// The socket connected to `addr`: ours if it is connected there, else a new one.
    fn take_socket(&mut self, addr: SocketAddr) -> Result<UdpSocket, String> {
        match self.socket.take() {
            Some((socket, to)) if to == addr => Ok(socket),
            _ => {
                self.last_sent = 0;
                let socket = connect(addr)?;
                let ip = socket.local_addr().map(|a| a.ip().to_string());
                self.head = self.process.head(&ip.unwrap_or_default());
                Ok(socket)
            }
        }
    }

    /// The spans of the last datagram, if `error` says it was refused.
    fn refused(&mut self, addr: SocketAddr, error: Option<&std::io::Error>) -> Option<Refused> {
        let error = error?;
        let spans = std::mem::take(&mut self.last_sent);
        (spans > 0).then(|| Refused {
            spans,
            addr,
            error: error.to_string(),
        })
    }
}

impl Transport for Agent {
    fn send(&mut self, batch: &Batch) -> Sent {
        let name = format!("Jaeger agent {}:{}", self.resolver.host, self.resolver.port);
        let addr = match self.resolver.addr(Instant::now()) {
            Ok(addr) => addr,
            Err(e) => return Unsent::Unresolved(format!("{name} does not resolve: {e}")).into(),
        };
        let socket = match self.take_socket(addr) {
            Ok(socket) => socket,
            Err(e) => return Unsent::Failed(format!("sending to {name} failed: {e}")).into(),
        };
        // An ICMP error for the last datagram is pending on the socket (Linux sets it for port
        // unreachable), or comes back as this send's own error (then this datagram was not
        // sent either).
        let pending = socket.take_error().ok().flatten();
        batch.datagram(&mut self.datagram, &self.head);
        let result = socket.send(&self.datagram);
        let refusal = pending.as_ref().or(result
            .as_ref()
            .err()
            .filter(|e| e.kind() == ErrorKind::ConnectionRefused));
        let refused = self.refused(addr, refusal);
        let result = match result {
            Ok(bytes) => {
                self.last_sent = batch.len() as u64;
                self.socket = Some((socket, addr));
                Ok(bytes)
            }
            // The socket is dropped: a connected socket keeps the source address it got, so
            // the next send connects afresh, in case the route or the local address changed.
            Err(e) => Err(Unsent::Failed(format!("sending to {name} failed: {e}"))),
        };
        Sent { result, refused }
    }
}

/// A UDP socket connected to `addr`, bound to the wildcard address of its family (a socket
/// bound to loopback could not reach a remote agent).
fn connect(addr: SocketAddr) -> Result<UdpSocket, String> {
    let any: SocketAddr = if addr.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).map_err(|e| format!("binding a UDP socket to {any}: {e}"))?;
    socket
        .connect(addr)
        .map_err(|e| format!("connecting a UDP socket to {addr}: {e}"))?;
    Ok(socket)
}

/// The agent's address, resolved when first needed and again every 30 s (a Service or pod IP
/// may change), and retried at most once a second while it does not resolve.
struct Resolver {
    host: String,
    port: u16,
    addr: Option<SocketAddr>,
    next_resolve: Instant,
}

impl Resolver {
    fn new(host: String, port: u16) -> Self {
        Resolver {
            host,
            port,
            addr: None,
            next_resolve: Instant::now(),
        }
    }

    fn addr(&mut self, now: Instant) -> Result<SocketAddr, String> {
        if now >= self.next_resolve {
            match (self.host.as_str(), self.port).to_socket_addrs() {
                Ok(mut addrs) => match addrs.next() {
                    Some(addr) => {
                        self.addr = Some(addr);
                        self.next_resolve = now + Duration::from_secs(30);
                    }
                    None => self.next_resolve = now + Duration::from_secs(1),
                },
                // Keep a previously good address: a resolver hiccup should not drop spans.
                Err(e) if self.addr.is_none() => {
                    self.next_resolve = now + Duration::from_secs(1);
                    return Err(e.to_string());
                }
                Err(_) => self.next_resolve = now + Duration::from_secs(1),
            }
        }
        self.addr.ok_or_else(|| "no address".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A name that fails to resolve without asking DNS (a label over 63 octets).
    fn unresolvable() -> String {
        format!("{}.invalid", "a".repeat(64))
    }

    #[test]
    fn resolution_is_retried_each_second_and_a_good_address_kept() {
        let mut r = Resolver::new(unresolvable(), 6831);
        let t0 = r.next_resolve; // due at once
        assert!(r.addr(t0).is_err());
        assert_eq!(r.next_resolve, t0 + Duration::from_secs(1));
        r.host = "127.0.0.1".into();
        let before = t0 + Duration::from_millis(999);
        assert!(r.addr(before).is_err(), "not tried again within the second");
        let t1 = t0 + Duration::from_secs(1);
        let good: SocketAddr = "127.0.0.1:6831".parse().unwrap();
        assert_eq!(r.addr(t1), Ok(good));
        assert_eq!(r.next_resolve, t1 + Duration::from_secs(30));
        r.host = unresolvable();
        let t2 = t1 + Duration::from_secs(30);
        assert_eq!(r.addr(t2), Ok(good), "kept through a failure");
        assert_eq!(r.next_resolve, t2 + Duration::from_secs(1));
    }

    fn process() -> Process {
        Process {
            service_name: "test".into(),
            tags: vec![("zone".into(), "a".into())],
            hostname: "host-1".into(),
        }
    }

    /// A batch of `n` spans of 10 bytes each (the agent does not read them).
    fn batch(n: usize) -> Batch {
        let mut batch = Batch::new(65_000, process().longest_head());
        for _ in 0..n {
            batch.push(&[0; 10]);
        }
        batch
    }

    fn receiver() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    #[test]
    fn sends_the_process_head_with_the_address_it_sends_from() {
        let rx = receiver();
        let port = rx.local_addr().unwrap().port();
        let mut agent = Agent::new("127.0.0.1".into(), port, process());
        let sent = agent.send(&batch(3));
        let mut buf = [0u8; 65_536];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(sent.result.ok(), Some(n));
        let mut want = Vec::new();
        batch(3).datagram(&mut want, &process().head("127.0.0.1"));
        assert_eq!(buf[..n], want[..]);
        assert!(n <= 65_000 && process().head("127.0.0.1").len() < process().longest_head());
        assert_eq!(from.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
    }

    /// Nothing listens: each send finds the refusal of the datagram before it, and counts
    /// that datagram's spans, once.
    #[test]
    fn a_refusal_counts_the_spans_of_the_datagram_before() {
        let port = receiver().local_addr().unwrap().port(); // closed again at once
        let mut agent = Agent::new("127.0.0.1".into(), port, process());
        assert!(
            agent.send(&batch(2)).refused.is_none(),
            "nothing sent before"
        );
        std::thread::sleep(Duration::from_millis(20)); // the ICMP answer arrives
        let second = agent.send(&batch(5));
        assert_eq!(second.refused.map(|r| r.spans), Some(2));
        std::thread::sleep(Duration::from_millis(20));
        let third = agent.send(&batch(1));
        assert_eq!(third.refused.map(|r| r.spans), Some(5));
    }

    /// A failed send (a datagram over UDP's limit) drops the socket: the next send connects
    /// afresh, from a new port.
    #[test]
    fn after_a_failed_send_the_next_connects_afresh() {
        let rx = receiver();
        let port = rx.local_addr().unwrap().port();
        let mut agent = Agent::new("127.0.0.1".into(), port, process());
        let mut buf = [0u8; 65_536];
        assert!(agent.send(&batch(1)).result.is_ok());
        let (_, first) = rx.recv_from(&mut buf).unwrap();
        let mut huge = Batch::new(100_000, 0);
        huge.push(&[0; 70_000]);
        assert!(matches!(agent.send(&huge).result, Err(Unsent::Failed(_))));
        assert!(agent.send(&batch(1)).result.is_ok());
        let (_, second) = rx.recv_from(&mut buf).unwrap();
        assert_ne!(first.port(), second.port());
    }

    #[test]
    fn an_unresolvable_agent_sends_nothing() {
        let mut agent = Agent::new(unresolvable(), 6831, process());
        let sent = agent.send(&batch(1));
        assert!(
            matches!(sent.result, Err(Unsent::Unresolved(e)) if e.contains("does not resolve"))
        );
    }
}

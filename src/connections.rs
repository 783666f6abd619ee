//! Bounds what HTTP clients can hold. tiny_http gives every connection a thread and two file
//! descriptors, sets no timeout, and ends its accept loop on the first accept error (such as
//! running out of descriptors). So an idle keep-alive client, a client that sends its head a
//! byte at a time, or one that never reads its responses would hold a thread for ever, and
//! enough of them would stop the server.
//!
//! tiny_http 0.12's thread pool has a race too: a connection accepted just after another,
//! while a pool thread is waking up, is queued for a thread that is already taken, and waits
//! until some connection ends (an hour, with keep-alive clients). The watchdog sees such a
//! connection (data waiting that nothing ever read) and closes the longest-unanswered
//! other connection, whose thread then takes it.
//!
//! tiny_http does not hand us its sockets, so a watchdog thread finds them: every descriptor
//! of the process whose local address is the listening one and which has a peer. The kernel
//! says when each last sent and received data (`TCP_INFO`); `verdicts` decides, and the
//! watchdog shuts the socket down, which makes tiny_http's blocked read or write return and
//! its thread close the connection. It inspects and shuts down its own duplicate of the
//! descriptor, so a descriptor number reused meanwhile by a new connection is never touched.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(500);
/// Data unread this long on a connection nothing ever read from: no thread has it.
const UNCLAIMED_AFTER: Duration = Duration::from_millis(100);
/// Descriptors a connection costs: tiny_http clones the stream for reading and writing.
const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors kept for everything else (listener, span socket, /chain calls, the scan).
const RESERVED_FDS: u64 = 64;
/// `tcpi_state` values (linux/include/net/tcp_states.h; not in the libc crate for Linux).
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LISTEN: u8 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections beyond this are closed, longest unanswered first.
    pub max_connections: usize,
    /// A connection with no request under way is closed after this long without traffic.
    pub idle_timeout: Duration,
    /// A request not answered this long after it began (its first byte or the connection,
    /// whichever is later) has its connection closed.
    pub request_timeout: Duration,
}

/// What the kernel says about one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Since we last sent data, or since the connection was set up if we never did.
    pub since_sent: Duration,
    /// Since we last received data, or since the connection was set up.
    pub since_recv: Duration,
    /// Whether we ever sent data on it.
    pub answered: bool,
    /// Whether some of what we wrote is still in the kernel, unsent or unacknowledged (a
    /// client that does not read its responses).
    pub undelivered: bool,
    /// Whether data has arrived and none of it was ever read.
    pub unread: bool,
    /// Whether some data was read: a thread has the connection.
    pub read: bool,
}

impl Observed {
    /// A request is under way: nothing was answered yet, data came after our last reply, or
    /// the reply has not reached the client.
    fn waiting(&self) -> bool {
        !self.answered || self.since_recv < self.since_sent || self.undelivered
    }

    /// tiny_http queued it for a thread that never came.
    fn unclaimed(&self) -> bool {
        self.unread && self.since_recv >= UNCLAIMED_AFTER
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Idle,
    RequestTimeout,
    OverLimit,
    /// Closed to free a thread for an unclaimed connection.
    FreeThread,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::Idle,
        Reason::RequestTimeout,
        Reason::OverLimit,
        Reason::FreeThread,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Idle => "idle",
            Reason::RequestTimeout => "request_timeout",
            Reason::OverLimit => "over_limit",
            Reason::FreeThread => "free_thread",
        }
    }
}

/// Which of `conns` to close, and why.
pub fn verdicts(conns: &[Observed], limits: &Limits) -> Vec<(usize, Reason)> {
    let mut close = Vec::new();
    let mut kept = Vec::with_capacity(conns.len());
    for (i, c) in conns.iter().enumerate() {
        if c.waiting() && c.since_sent > limits.request_timeout {
            close.push((i, Reason::RequestTimeout));
        } else if !c.waiting() && c.since_sent > limits.idle_timeout {
            close.push((i, Reason::Idle));
        } else {
            kept.push(i);
        }
    }
    // An unclaimed connection is new and holds no thread: never closed here.
    let unclaimed = kept.iter().filter(|&&i| conns[i].unclaimed()).count();
    kept.retain(|&i| !conns[i].unclaimed());
    // The ones that have waited longest for an answer (or been idle longest) go first: a new
    // client, or one being answered, is the one to keep.
    kept.sort_by_key(|&i| std::cmp::Reverse(conns[i].since_sent));
    let excess = (kept.len() + unclaimed).saturating_sub(limits.max_connections);
    let (over, rest) = kept.split_at(excess.min(kept.len()));
    close.extend(over.iter().map(|&i| (i, Reason::OverLimit)));
    // Each connection closed that a thread was reading frees that thread for an unclaimed
    // one; a silent connection may be unclaimed itself, so it does not count.
    let freed = close.iter().filter(|&&(i, _)| conns[i].read).count();
    close.extend(
        rest.iter()
            .filter(|&&i| conns[i].read)
            .take(unclaimed.saturating_sub(freed))
            .map(|&i| (i, Reason::FreeThread)),
    );
    close
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections at the last look.
    pub open: AtomicU64,
    /// Connections closed, by `Reason` (in `Reason::ALL` order).
    pub closed: [AtomicU64; Reason::ALL.len()],
    /// Requests never released to tiny_http (see `server`): each holds a thread and two
    /// descriptors for the life of the process.
    pub parked: AtomicU64,
    /// Connections closed but held by a tiny_http thread that will never release them (one
    /// deadlocked on an HTTP/2.0 request line, a parked request), at the last look.
    pub stuck: AtomicU64,
    /// Whether so many are stuck that only a restart gives their threads and descriptors
    /// back.
    pub unhealthy: AtomicBool,
}

/// Starts the watchdog over the connections accepted on `listening`, with the connection
/// limit lowered if the open-files limit cannot hold it; returns the limits in force. An
/// accept that fails for want of descriptors would end tiny_http's accept loop. Without
/// /proc the descriptors cannot be listed: a warning, and no watchdog.
pub fn start(listening: SocketAddr, mut limits: Limits, stats: Arc<Stats>) -> Limits {
    match raise_fd_limit() {
        Ok(fds) => {
            let fit = fds.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
            if (limits.max_connections as u64) > fit {
                log::warn!(
                    "HTTP_MAX_CONNECTIONS={} needs more than the {fds} open files allowed: using {fit}",
                    limits.max_connections
                );
                limits.max_connections = fit.max(1) as usize;
            }
        }
        Err(e) => log::warn!("cannot read the open files limit: {e}"),
    }
    if let Err(e) = spawn(listening, limits, stats) {
        log::warn!("connection limits and timeouts are off: cannot list connections: {e}");
    }
    limits
}

/// Raises the soft limit on open files to the hard one (as Go's runtime does), and returns
/// the soft limit now in force.
fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur);
        }
    }
    Ok(limit.rlim_cur)
}

fn spawn(listening: SocketAddr, limits: Limits, stats: Arc<Stats>) -> io::Result<()> {
    scan(listening)?;
    std::thread::Builder::new()
        .name("connections".into())
        .spawn(move || {
            let mut lingering = Lingering::default();
            loop {
                std::thread::sleep(TICK);
                match scan(listening) {
                    Ok(found) => {
                        enforce(&found.open, &limits, &stats);
                        // Longer than any request may take (a /chain call included).
                        let stuck = lingering.update(
                            &found.lingering,
                            limits.request_timeout,
                            Instant::now(),
                        );
                        stats.stuck.store(stuck as u64, Relaxed);
                        stats
                            .unhealthy
                            .store(stuck >= stuck_limit(&limits), Relaxed);
                    }
                    Err(e) => log::warn!("cannot list connections: {e}"),
                }
            }
        })?;
    Ok(())
}

/// Stuck connections past which the process reports itself unhealthy (`GET /healthz` 503),
/// so that the kubelet's liveness probe restarts it: a quarter of the connections it can
/// hold are gone for good.
fn stuck_limit(limits: &Limits) -> usize {
    (limits.max_connections / 4).max(1)
}

/// Sockets closed but still held open, by inode, with when each was first seen so.
#[derive(Debug, Default)]
struct Lingering(HashMap<u64, Instant>);

impl Lingering {
    /// Takes one look's lingering sockets; returns how many have lingered `after` or longer.
    fn update(&mut self, seen: &[u64], after: Duration, now: Instant) -> usize {
        self.0.retain(|inode, _| seen.contains(inode));
        for &inode in seen {
            self.0.entry(inode).or_insert(now);
        }
        self.0
            .values()
            .filter(|&&since| now - since >= after)
            .count()
    }
}

fn enforce(conns: &[(Socket, Observed)], limits: &Limits, stats: &Stats) {
    let observed: Vec<Observed> = conns.iter().map(|(_, o)| *o).collect();
    let verdicts = verdicts(&observed, limits);
    stats
        .open
        .store((conns.len() - verdicts.len()) as u64, Relaxed);
    let mut closed = [0u64; Reason::ALL.len()];
    for &(i, reason) in &verdicts {
        if conns[i].0.open().is_some_and(|fd| shutdown(&fd)) {
            closed[reason as usize] += 1;
        }
    }
    for (counter, n) in stats.closed.iter().zip(closed) {
        counter.fetch_add(n, Relaxed);
    }
    let [idle, timed_out, over, freeing] = closed;
    if idle > 0 {
        log::debug!("closed {idle} idle connections");
    }
    if timed_out + over + freeing > 0 {
        log::warn!(
            "closed {timed_out} connections with a request unanswered after {:?}, {over} over the limit of {}, {freeing} to free a thread for a connection tiny_http left waiting",
            limits.request_timeout,
            limits.max_connections
        );
    }
}

/// One accepted socket: a descriptor number of tiny_http's and the socket's inode, so that a
/// number closed and reused meanwhile is never taken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Socket {
    fd: RawFd,
    inode: u64,
}

impl Socket {
    /// Our own duplicate of the descriptor, if it still is this socket.
    fn open(self) -> Option<OwnedFd> {
        dup(self.fd).filter(|d| inode(d.as_raw_fd()) == Some(self.inode))
    }
}

fn dup(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on any number is safe; on success we own the result.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    // SAFETY: `dup` is a new descriptor that nothing else owns.
    (dup >= 0).then(|| unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Every socket on `listening`'s address (accepted connections, and the listening socket and
/// its duplicates), once each (tiny_http holds each connection through two descriptors),
/// with our duplicate of it. Lazy, so that a caller that drops each duplicate holds one extra
/// descriptor at a time, never one per connection.
fn on_port(listening: SocketAddr) -> io::Result<impl Iterator<Item = (Socket, OwnedFd)>> {
    // Listed whole first, so that the duplicates made below are not listed too.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut seen = HashSet::with_capacity(fds.len());
    Ok(fds.into_iter().filter_map(move |fd| {
        let dup = dup(fd)?; // None: closed since the listing
        let inode = inode(dup.as_raw_fd()).filter(|&ino| seen.insert(ino))?;
        let ours = local_addr(dup.as_raw_fd()).is_some_and(|local| {
            local.port() == listening.port()
                && (listening.ip().is_unspecified() || local.ip() == listening.ip())
        });
        ours.then_some((Socket { fd, inode }, dup))
    }))
}

/// What one look finds.
#[derive(Debug, Default)]
struct Scan {
    /// Every open connection, with what the kernel says about it.
    open: Vec<(Socket, Observed)>,
    /// Connections closed (by either side) whose descriptors are still held: by a tiny_http
    /// thread that will never release them, if they stay.
    lingering: Vec<u64>,
}

fn scan(listening: SocketAddr) -> io::Result<Scan> {
    let mut found = Scan::default();
    for (socket, dup) in on_port(listening)? {
        let Some(info) = kernel_tcp_info(dup.as_raw_fd()) else {
            continue;
        };
        match info.tcpi_state {
            TCP_LISTEN => {}
            // One the client half-closed still has a request to answer.
            TCP_ESTABLISHED | TCP_CLOSE_WAIT => {
                if let Some(observed) = observe(dup.as_raw_fd(), &info) {
                    found.open.push((socket, observed));
                }
            }
            _ => found.lingering.push(socket.inode),
        }
    }
    Ok(found)
}

/// Our own duplicate of the connection from `peer` accepted on `listening`, for the server to
/// shut down a connection tiny_http would otherwise keep reading. Shutting it down ends the
/// connection for every descriptor of the socket, tiny_http's included.
pub fn find(listening: SocketAddr, peer: SocketAddr) -> Option<TcpStream> {
    on_port(listening)
        .ok()?
        .find(|(_, dup)| peer_addr(dup.as_raw_fd()) == Some(peer))
        .map(|(_, dup)| TcpStream::from(dup))
}

/// Shuts a socket down both ways, for every descriptor of it, tiny_http's included: its
/// blocked reads and writes return.
fn shutdown(socket: &OwnedFd) -> bool {
    // SAFETY: shutdown on a descriptor we own.
    unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) == 0 }
}

/// The socket (or file) a descriptor refers to.
fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: an all-zero stat is valid; fstat writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

fn local_addr(fd: RawFd) -> Option<SocketAddr> {
    socket_addr(fd, libc::getsockname)
}

fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    socket_addr(fd, libc::getpeername)
}

type AddrGetter =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// The address `get` (getsockname or getpeername) gives; None for what is not an IP socket.
fn socket_addr(fd: RawFd, get: AddrGetter) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is valid; `get` writes at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&storage) as libc::socklen_t;
    if unsafe { get(fd, (&raw mut storage).cast(), &mut len) } != 0 {
        return None; // not a socket, or no peer
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(&raw const storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(&raw const storage).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

fn kernel_tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: an all-zero tcp_info is valid; the kernel writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    (got == 0).then_some(info)
}

/// Connections the kernel has set up on a listening socket that nobody has accepted yet.
/// tiny_http's accept loop takes each at once; a queue that stays full means it has died
/// (it panics when the descriptor for its second handle of a connection cannot be had).
pub fn accept_queue(listener: &TcpListener) -> Option<u32> {
    let info = kernel_tcp_info(listener.as_raw_fd())?;
    // For a listening socket, Linux reports the accept queue's length as `tcpi_unacked`.
    (info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_unacked)
}

fn observe(fd: RawFd, info: &libc::tcp_info) -> Option<Observed> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes the receive queue's length into the int we own.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 {
        return None;
    }
    let queued = u64::try_from(queued).unwrap_or(0);
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    Some(Observed {
        since_sent: ms(info.tcpi_last_data_sent),
        since_recv: ms(info.tcpi_last_data_recv),
        answered: info.tcpi_data_segs_out > 0,
        undelivered: info.tcpi_notsent_bytes > 0 || info.tcpi_unacked > 0,
        unread: info.tcpi_bytes_received > 0 && queued == info.tcpi_bytes_received,
        read: info.tcpi_bytes_received > queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(10),
    };

    fn conn(since_sent: u64, since_recv: u64, answered: bool) -> Observed {
        Observed {
            since_sent: Duration::from_secs(since_sent),
            since_recv: Duration::from_secs(since_recv),
            answered,
            undelivered: false,
            unread: false,
            read: answered,
        }
    }

    /// A head arriving slowly, read by a thread.
    fn head(since_sent: u64, since_recv: u64) -> Observed {
        Observed {
            read: true,
            ..conn(since_sent, since_recv, false)
        }
    }

    /// Its data sat unread for `since_recv`: no thread took it.
    fn unclaimed(since_sent: u64, since_recv: u64) -> Observed {
        Observed {
            unread: true,
            ..conn(since_sent, since_recv, false)
        }
    }

    fn unread(since_sent: u64, since_recv: u64) -> Observed {
        Observed {
            undelivered: true,
            ..conn(since_sent, since_recv, true)
        }
    }

    #[test]
    fn each_connection_is_judged_by_its_state() {
        use Reason::*;
        let cases: &[(&str, Observed, Option<Reason>)] = &[
            (
                "new, silent, within the request timeout",
                conn(5, 5, false),
                None,
            ),
            (
                "new, silent for too long",
                conn(11, 11, false),
                Some(RequestTimeout),
            ),
            (
                "head trickling in a byte at a time",
                conn(11, 0, false),
                Some(RequestTimeout),
            ),
            (
                "answered, then a new request too slow",
                conn(11, 3, true),
                Some(RequestTimeout),
            ),
            (
                "answered, then a new request in time",
                conn(9, 3, true),
                None,
            ),
            (
                "idle keep-alive within the idle timeout",
                conn(59, 59, true),
                None,
            ),
            (
                "idle keep-alive, reply after request",
                conn(59, 60, true),
                None,
            ),
            (
                "idle keep-alive past the idle timeout",
                conn(61, 61, true),
                Some(Idle),
            ),
            ("a reply still going out", conn(0, 30, true), None),
            (
                "a reply stuck, the client not reading",
                unread(11, 20),
                Some(RequestTimeout),
            ),
            ("a reply stuck for a short while", unread(5, 20), None),
        ];
        let limits = Limits {
            max_connections: 100,
            ..LIMITS
        };
        for (name, c, want) in cases {
            let got = verdicts(&[*c], &limits).first().map(|&(_, r)| r);
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn over_the_limit_the_longest_unanswered_go_first() {
        let conns = [
            conn(1, 1, true),   // busy
            conn(8, 8, false),  // silent since it connected
            conn(2, 0, false),  // new, sending its head
            conn(30, 30, true), // idle
            conn(70, 70, true), // idle past the timeout: closed as idle, not counted
        ];
        let mut got = verdicts(&conns, &LIMITS);
        got.sort();
        assert_eq!(
            got,
            [
                (1, Reason::OverLimit),
                (3, Reason::OverLimit),
                (4, Reason::Idle)
            ]
        );
        assert_eq!(verdicts(&conns[..2], &LIMITS), []);
    }

    #[test]
    fn an_unclaimed_connection_gets_the_thread_of_the_longest_unanswered_other() {
        use Reason::*;
        let limits = Limits {
            max_connections: 100,
            ..LIMITS
        };
        type Case = (&'static str, Vec<Observed>, Vec<(usize, Reason)>);
        let cases: &[Case] = &[
            (
                "the idle one gives its thread",
                vec![unclaimed(1, 1), conn(30, 31, true), conn(2, 2, true)],
                vec![(1, FreeThread)],
            ),
            (
                "data just arrived: not unclaimed yet",
                vec![unclaimed(1, 0), conn(30, 31, true)],
                vec![],
            ),
            (
                "two unclaimed, one freed already by a timeout",
                vec![
                    unclaimed(1, 1),
                    unclaimed(2, 2),
                    head(12, 1),
                    conn(3, 4, true),
                    conn(5, 6, true),
                ],
                vec![(2, RequestTimeout), (4, FreeThread)],
            ),
            (
                "a silent connection timed out may hold no thread",
                vec![unclaimed(1, 1), conn(12, 12, false), conn(3, 4, true)],
                vec![(1, RequestTimeout), (2, FreeThread)],
            ),
            (
                "a silent one is not closed to free a thread",
                vec![unclaimed(1, 1), conn(8, 8, false)],
                vec![],
            ),
            (
                "nothing else to close",
                vec![unclaimed(1, 1), unclaimed(2, 2)],
                vec![],
            ),
        ];
        for (name, conns, want) in cases {
            assert_eq!(&verdicts(conns, &limits), want, "{name}");
        }
        // Over the limit, an unclaimed connection is kept and another goes.
        let over = Limits {
            max_connections: 1,
            ..LIMITS
        };
        assert_eq!(
            verdicts(&[unclaimed(9, 9), conn(1, 1, true)], &over),
            [(1, OverLimit)]
        );
    }

    #[test]
    fn sockets_that_linger_past_the_limit_are_stuck() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Lingering::default();
        assert_eq!(l.update(&[1, 2], s(10), t0), 0);
        assert_eq!(l.update(&[1, 2, 3], s(10), t0 + s(9)), 0);
        assert_eq!(
            l.update(&[1, 2, 3], s(10), t0 + s(10)),
            2,
            "1 and 2 since t0"
        );
        assert_eq!(
            l.update(&[2, 3], s(10), t0 + s(11)),
            1,
            "1 was closed at last"
        );
        assert_eq!(
            l.update(&[1, 3], s(10), t0 + s(12)),
            0,
            "1 again is new: inode reused"
        );
        assert_eq!(l.update(&[1, 3], s(10), t0 + s(19)), 1, "3 since t0 + 9 s");
        assert_eq!(stuck_limit(&LIMITS), 1);
        let many = Limits {
            max_connections: 512,
            ..LIMITS
        };
        assert_eq!(stuck_limit(&many), 128);
    }

    #[test]
    fn accept_queue_counts_connections_not_yet_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(accept_queue(&listener), Some(0));
        let _clients: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(accept_queue(&listener), Some(3));
        drop(listener.accept().unwrap());
        assert_eq!(accept_queue(&listener), Some(2));
    }

    /// The kernel facts `verdicts` relies on, on real loopback sockets: a new connection
    /// counts from its set-up and is unanswered; data either way updates the clocks.
    #[test]
    fn scan_finds_accepted_connections_and_reads_their_clocks() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let found = scan(addr).unwrap().open;
        assert_eq!(
            found.len(),
            1,
            "the listener and the client side are not ours"
        );
        assert!(!found[0].1.answered && !found[0].1.unread);
        std::thread::sleep(Duration::from_millis(300));
        client.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(scan(addr).unwrap().open[0].1.unread, "arrived, not read");
        let mut byte = [0];
        server.read_exact(&mut byte).unwrap();
        let o = scan(addr).unwrap().open[0].1;
        assert!(!o.unread, "{o:?}");
        assert!(o.since_recv < Duration::from_millis(200), "{o:?}");
        assert!(o.since_sent >= Duration::from_millis(250), "{o:?}");
        assert!(o.waiting());
        server.write_all(b"y").unwrap();
        client.read_exact(&mut byte).unwrap();
        let o = scan(addr).unwrap().open[0].1;
        assert!(o.answered && !o.waiting(), "{o:?}");
        // Found by its peer; shutting our duplicate down ends the connection for its owner.
        let peer = client.local_addr().unwrap();
        assert!(find(addr, addr).is_none(), "no connection from that peer");
        let found = find(addr, peer).unwrap();
        found.shutdown(std::net::Shutdown::Both).unwrap();
        // Closed, still held open (by `server` here): lingering, no longer open.
        let after = scan(addr).unwrap();
        assert!(after.open.is_empty(), "{after:?}");
        assert_eq!(after.lingering.len(), 1, "{after:?}");
        assert_eq!(server.read(&mut byte).unwrap(), 0);
        assert_eq!(client.read(&mut byte).unwrap(), 0);
    }
}

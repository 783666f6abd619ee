//! Bounds what HTTP clients can hold. tiny_http gives every connection a thread and two file
//! descriptors, sets no timeout, and ends its accept loop on the first accept error (such as
//! running out of descriptors). So an idle keep-alive client, a client that sends its head a
//! byte at a time, or one that never reads its responses would hold a thread for ever, and
//! enough of them would stop the server.
//!
//! tiny_http 0.12's thread pool has a race too: a connection accepted just after another,
//! while a pool thread is waking up, is queued for a thread that is already taken, and waits
//! until some connection ends (an hour, with keep-alive clients). Connections arriving wake
//! the watchdog (it polls its own duplicate of the listening socket), which looks 2 ms later
//! and again while any connection has data that nothing ever read. For each one still
//! stranded it opens a connection to the listener and closes it at once: with no pool thread
//! idle, tiny_http gives that connection a new thread, which reads its end at once and then
//! takes the stranded connection from the pool's queue. Nobody's connection is closed, and
//! while connections only come and go with keep-alive clients the watchdog does nothing more
//! than its regular look.
//!
//! tiny_http does not hand us its sockets, so a watchdog thread finds them: every descriptor
//! of the process whose local address is the listening one and which has a peer. The kernel
//! says when each last sent and received data (`TCP_INFO`); `verdicts` decides, and the
//! watchdog shuts the socket down, which makes tiny_http's blocked read or write return and
//! its thread close the connection. It inspects and shuts down its own duplicate of the
//! descriptor, so a descriptor number reused meanwhile by a new connection is never touched.

use std::collections::HashSet;
use std::io;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(500);
/// Data unread this long on a connection nothing ever read from: no thread has it.
const UNCLAIMED_AFTER: Duration = Duration::from_millis(100);
/// After connections arrive: tiny_http has handed each to a thread by the first look unless
/// the pool race stranded it; a connection unread at two looks in a row may be stranded.
/// While some connection stays unread (a thread not run yet on a busy machine, or stranded)
/// the pause between looks doubles up to `BURST_LOOK_MAX`, for at most a `TICK`.
const BURST_LOOK: Duration = Duration::from_millis(2);
const BURST_LOOK_MAX: Duration = Duration::from_millis(32);
/// Rest after watching a burst: under a stream of new connections (clients that close after
/// each request) the watchdog looks about 20 times a second, not after every one.
const BURST_REST: Duration = Duration::from_millis(50);
/// A wake-up connection to our own listener on loopback connects at once, or not at all.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// A wake-up connection tiny_http has not closed by then was itself queued, or the machine is
/// overloaded: more may be made.
const WAKE_LANDS_WITHIN: Duration = Duration::from_millis(100);
/// Descriptors a connection costs: tiny_http clones the stream for reading and writing.
const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors kept for everything else (listener, span socket, /chain calls, the scan).
const RESERVED_FDS: u64 = 64;
/// `tcpi_state` values (linux/include/net/tcp_states.h; not in the libc crate for Linux).
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

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
}

impl Reason {
    pub const ALL: [Reason; 3] = [Reason::Idle, Reason::RequestTimeout, Reason::OverLimit];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Idle => "idle",
            Reason::RequestTimeout => "request_timeout",
            Reason::OverLimit => "over_limit",
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
    close.extend(
        kept[..excess.min(kept.len())]
            .iter()
            .map(|&i| (i, Reason::OverLimit)),
    );
    close
}

/// How many of `conns` (each with its socket's inode) tiny_http left without a thread.
/// A pool thread serves one connection at a time, and a connection waits in the pool's queue
/// for good only while no pool thread is idle: so at most `conns.len() - pool_threads` are
/// stranded. Of those, only ones seen: data that nothing ever read, already at the previous
/// look (`unread_before`) or for longer than `UNCLAIMED_AFTER` (a new thread may simply not
/// have run yet).
pub fn stranded(
    conns: &[(u64, Observed)],
    unread_before: &HashSet<u64>,
    pool_threads: usize,
) -> usize {
    let seen = conns
        .iter()
        .filter(|(inode, c)| c.unread && (unread_before.contains(inode) || c.unclaimed()))
        .count();
    seen.min(conns.len().saturating_sub(pool_threads))
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections at the last look.
    pub open: AtomicU64,
    /// Connections closed, by `Reason` (in `Reason::ALL` order).
    pub closed: [AtomicU64; Reason::ALL.len()],
    /// Connections tiny_http's pool race left without a thread, given one.
    pub stranded: AtomicU64,
}

/// Starts the watchdog over the connections accepted on `listener`, with the connection
/// limit lowered if the open-files limit cannot hold it; returns the limits in force. An
/// accept that fails for want of descriptors would end tiny_http's accept loop. Without
/// /proc the descriptors cannot be listed: a warning, and no watchdog.
pub fn start(listener: &TcpListener, mut limits: Limits, stats: Arc<Stats>) -> Limits {
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
    if let Err(e) = spawn(listener, limits, stats) {
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

fn spawn(listener: &TcpListener, limits: Limits, stats: Arc<Stats>) -> io::Result<()> {
    let listening = listener.local_addr()?;
    scan(listening)?;
    let arrivals = Arrivals::new(listener)?;
    std::thread::Builder::new()
        .name("connections".into())
        .spawn(move || watch(listening, arrivals, &limits, &stats))?;
    Ok(())
}

/// The watchdog: a look every `TICK`, and a closer watch after connections arrive.
fn watch(listening: SocketAddr, mut arrivals: Arrivals, limits: &Limits, stats: &Stats) {
    let mut wake = Wake::new(own_address(listening));
    // One look; true while some connection has data that nothing read yet.
    let mut look = || match scan(listening) {
        Ok(conns) => {
            enforce(&conns, limits, stats);
            wake.stranded(&conns, stats)
        }
        Err(e) => {
            log::warn!("cannot list connections: {e}");
            false
        }
    };
    loop {
        if !arrivals.wait(TICK) {
            let _ = look();
            continue;
        }
        let (started, mut pause) = (Instant::now(), BURST_LOOK);
        loop {
            std::thread::sleep(pause);
            if !look() || started.elapsed() > TICK {
                break;
            }
            pause = (pause * 2).min(BURST_LOOK_MAX);
        }
        std::thread::sleep(BURST_REST);
    }
}

/// Wakes tiny_http's pool for stranded connections: a connection to our own listener, closed
/// at once. With no pool thread idle (one is stranded), tiny_http gives it a new thread,
/// which reads its end, closes it, and takes the stranded connection from the queue next.
struct Wake {
    addr: SocketAddr,
    /// Connections with data that nothing had read at the previous look, by inode.
    unread: HashSet<u64>,
    /// Wake-up connections tiny_http has not closed yet, and when each was made: each will
    /// give a stranded connection its thread (unless lost: `WAKE_LANDS_WITHIN`).
    pending: Vec<(TcpStream, Instant)>,
}

impl Wake {
    fn new(addr: SocketAddr) -> Wake {
        Wake {
            addr,
            unread: HashSet::new(),
            pending: Vec::new(),
        }
    }

    /// Wakes the pool once for each stranded connection of `conns`; true while some
    /// connection has data that nothing read yet.
    fn stranded(&mut self, conns: &[Conn], stats: &Stats) -> bool {
        let observed: Vec<(u64, Observed)> = conns.iter().map(|c| (c.inode, c.observed)).collect();
        let unread_before = std::mem::take(&mut self.unread);
        self.unread = observed
            .iter()
            .filter(|(_, o)| o.unread)
            .map(|&(inode, _)| inode)
            .collect();
        self.pending
            .retain(|(s, made)| made.elapsed() < WAKE_LANDS_WITHIN && !closed_by_peer(s));
        if self.unread.is_empty() {
            return false;
        }
        let stranded = match pool_threads() {
            Ok(threads) => stranded(&observed, &unread_before, threads),
            Err(e) => {
                log::warn!("cannot count tiny_http's threads: {e}");
                0
            }
        };
        let woken = self.pending.len();
        for _ in woken..stranded {
            let wake = TcpStream::connect_timeout(&self.addr, WAKE_CONNECT_TIMEOUT).and_then(|s| {
                s.shutdown(Shutdown::Write)
                    .and(s.set_nonblocking(true))
                    .map(|()| s)
            });
            match wake {
                Ok(s) => self.pending.push((s, Instant::now())),
                Err(e) => log::warn!(
                    "cannot connect to {} to wake tiny_http's pool: {e}",
                    self.addr
                ),
            }
        }
        let woken = self.pending.len() - woken;
        if woken > 0 {
            stats.stranded.fetch_add(woken as u64, Relaxed);
            log::debug!("{woken} connections left without a thread by tiny_http's pool: woken");
        }
        true
    }
}

/// Whether the other end closed `s` (non-blocking).
fn closed_by_peer(mut s: &TcpStream) -> bool {
    !matches!(s.read(&mut [0]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// tiny_http's pool threads: the threads without a name of their own (every thread of ours
/// is named; a thread inherits its creator's name), less the main thread and tiny_http's
/// accept thread.
fn pool_threads() -> io::Result<usize> {
    let comm = |path: &std::path::Path| std::fs::read(path.join("comm"));
    let unnamed = comm(std::path::Path::new("/proc/self"))?;
    let mut count = 0usize;
    for task in std::fs::read_dir("/proc/self/task")? {
        // A thread ending meanwhile is not counted.
        if comm(&task?.path()).is_ok_and(|c| c == unnamed) {
            count += 1;
        }
    }
    Ok(count.saturating_sub(2))
}

/// Where to connect to reach `listening` from this host.
fn own_address(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}

/// Our duplicate of the listening socket, polled to learn that connections arrive. Held
/// only while tiny_http holds its own: a listening socket stays open while any descriptor
/// of it does, and after the stop new connections must be refused, not left waiting.
struct Arrivals {
    ours: Option<OwnedFd>,
    /// tiny_http's descriptor of the listener, and the socket's inode.
    theirs: RawFd,
    inode: u64,
}

impl Arrivals {
    fn new(listener: &TcpListener) -> io::Result<Arrivals> {
        let ours = OwnedFd::from(listener.try_clone()?);
        let inode = inode(ours.as_raw_fd()).ok_or_else(io::Error::last_os_error)?;
        Ok(Arrivals {
            ours: Some(ours),
            theirs: listener.as_raw_fd(),
            inode,
        })
    }

    /// Waits up to `timeout` for a connection to be waiting for accept; false on timeout.
    fn wait(&mut self, timeout: Duration) -> bool {
        let Some(fd) = self.ours.as_ref().map(AsRawFd::as_raw_fd) else {
            std::thread::sleep(timeout);
            return false;
        };
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own; the timeout fits (TICK is 500 ms).
        let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) } > 0;
        // tiny_http closed its listener (the stop): close ours too, at once.
        if inode(self.theirs) != Some(self.inode) {
            self.ours = None;
            return false;
        }
        ready
    }
}

fn enforce(conns: &[Conn], limits: &Limits, stats: &Stats) {
    let observed: Vec<Observed> = conns.iter().map(|c| c.observed).collect();
    let verdicts = verdicts(&observed, limits);
    stats
        .open
        .store((conns.len() - verdicts.len()) as u64, Relaxed);
    let mut closed = [0u64; Reason::ALL.len()];
    for &(i, reason) in &verdicts {
        // SAFETY: shutdown on a descriptor we own; it ends the connection for every
        // descriptor of the socket, tiny_http's included.
        if unsafe { libc::shutdown(conns[i].fd.as_raw_fd(), libc::SHUT_RDWR) } == 0 {
            closed[reason as usize] += 1;
        }
    }
    for (counter, n) in stats.closed.iter().zip(closed) {
        counter.fetch_add(n, Relaxed);
    }
    let [idle, timed_out, over] = closed;
    if idle > 0 {
        log::debug!("closed {idle} idle connections");
    }
    if timed_out + over > 0 {
        log::warn!(
            "closed {timed_out} connections with a request unanswered after {:?}, {over} over the limit of {}",
            limits.request_timeout,
            limits.max_connections
        );
    }
}

/// One connection: our own duplicate of its descriptor, its socket's inode, what the kernel
/// says about it.
struct Conn {
    fd: OwnedFd,
    inode: u64,
    observed: Observed,
}

/// Every connection accepted on `listening`.
fn scan(listening: SocketAddr) -> io::Result<Vec<Conn>> {
    // Listed whole first, so that the duplicates made below are not listed too.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // tiny_http holds each connection through two descriptors: one look per socket.
    let mut seen = HashSet::with_capacity(fds.len());
    let mut found = Vec::new();
    for fd in fds {
        // SAFETY: F_DUPFD_CLOEXEC on any number is safe; on success we own the result.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            continue; // closed since the listing
        }
        // SAFETY: `dup` is a new descriptor that nothing else owns.
        let dup = unsafe { OwnedFd::from_raw_fd(dup) };
        let raw = dup.as_raw_fd();
        let Some(ino) = inode(raw).filter(|&ino| seen.insert(ino)) else {
            continue;
        };
        let accepted = local_addr(raw).is_some_and(|local| {
            local.port() == listening.port()
                && (listening.ip().is_unspecified() || local.ip() == listening.ip())
        }) && has_peer(raw);
        if accepted && let Some(observed) = tcp_info(raw) {
            found.push(Conn {
                fd: dup,
                inode: ino,
                observed,
            });
        }
    }
    Ok(found)
}

/// The socket (or file) a descriptor refers to.
fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: an all-zero stat is valid; fstat writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

fn local_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is valid; getsockname writes at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&storage) as libc::socklen_t;
    if unsafe { libc::getsockname(fd, (&raw mut storage).cast(), &mut len) } != 0 {
        return None; // not a socket
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

/// The listening socket has none.
fn has_peer(fd: RawFd) -> bool {
    // SAFETY: as in `local_addr`.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&storage) as libc::socklen_t;
    unsafe { libc::getpeername(fd, (&raw mut storage).cast(), &mut len) == 0 }
}

fn tcp_info(fd: RawFd) -> Option<Observed> {
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
    // Connections already shut down (ours, closing) are no longer counted; one the client
    // half-closed (CLOSE_WAIT) still has a request to answer.
    if got != 0 || ![TCP_ESTABLISHED, TCP_CLOSE_WAIT].contains(&info.tcpi_state) {
        return None;
    }
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
    fn an_unclaimed_connection_is_never_closed_and_closes_no_other() {
        let limits = Limits {
            max_connections: 100,
            ..LIMITS
        };
        let conns = [unclaimed(1, 1), conn(30, 31, true), conn(2, 2, true)];
        assert_eq!(verdicts(&conns, &limits), []);
        // Over the limit, an unclaimed connection is kept and another goes.
        let over = Limits {
            max_connections: 1,
            ..LIMITS
        };
        assert_eq!(
            verdicts(&[unclaimed(9, 9), conn(1, 1, true)], &over),
            [(1, Reason::OverLimit)]
        );
    }

    #[test]
    fn stranded_connections_are_unread_at_two_looks_or_for_long_and_lack_a_thread() {
        let ms = |since_recv: u64| Observed {
            since_recv: Duration::from_millis(since_recv),
            ..unclaimed(1, 0)
        };
        let read = conn(1, 1, true);
        // (name, connections, unread at the previous look, pool threads, stranded)
        type Case = (&'static str, Vec<(u64, Observed)>, Vec<u64>, usize, usize);
        let cases: &[Case] = &[
            ("nothing unread", vec![(1, read), (2, read)], vec![], 0, 0),
            (
                "unread for the first time, just now",
                vec![(1, ms(0))],
                vec![],
                0,
                0,
            ),
            (
                "unread at the previous look too",
                vec![(1, ms(0))],
                vec![1],
                0,
                1,
            ),
            ("unread for long", vec![(1, ms(100))], vec![], 0, 1),
            (
                "another connection was unread before",
                vec![(1, ms(2)), (2, read)],
                vec![2],
                0,
                0,
            ),
            (
                "read since the previous look",
                vec![(1, read), (2, ms(3))],
                vec![1, 2],
                0,
                1,
            ),
            (
                "unread twice, but a thread for each connection: not run yet",
                vec![(1, read), (2, ms(3)), (3, ms(3))],
                vec![2, 3],
                3,
                0,
            ),
            (
                "three unread, one thread short",
                vec![(1, read), (2, ms(3)), (3, ms(3)), (4, ms(3))],
                vec![2, 3, 4],
                3,
                1,
            ),
            (
                "more threads than connections (idle ones)",
                vec![(1, ms(200))],
                vec![1],
                4,
                0,
            ),
        ];
        for (name, conns, before, threads, want) in cases {
            let before: HashSet<u64> = before.iter().copied().collect();
            assert_eq!(stranded(conns, &before, *threads), *want, "{name}");
        }
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
        let found = scan(addr).unwrap();
        assert_eq!(
            found.len(),
            1,
            "the listener and the client side are not ours"
        );
        assert!(!found[0].observed.answered && !found[0].observed.unread);
        std::thread::sleep(Duration::from_millis(300));
        client.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(scan(addr).unwrap()[0].observed.unread, "arrived, not read");
        let mut byte = [0];
        server.read_exact(&mut byte).unwrap();
        let o = scan(addr).unwrap()[0].observed;
        assert!(!o.unread, "{o:?}");
        assert!(o.since_recv < Duration::from_millis(200), "{o:?}");
        assert!(o.since_sent >= Duration::from_millis(250), "{o:?}");
        assert!(o.waiting());
        server.write_all(b"y").unwrap();
        client.read_exact(&mut byte).unwrap();
        let o = scan(addr).unwrap()[0].observed;
        assert!(o.answered && !o.waiting(), "{o:?}");
        // Shutting our duplicate down ends the connection for its owner too.
        let fd = scan(addr).unwrap().pop().unwrap().fd;
        assert_eq!(
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) },
            0
        );
        assert_eq!(server.read(&mut byte).unwrap(), 0);
        assert_eq!(client.read(&mut byte).unwrap(), 0);
    }
}

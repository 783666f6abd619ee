//! Bounds what HTTP clients can hold. tiny_http gives every connection a thread and two file
//! descriptors, sets no timeout, and ends its accept loop on the first accept error (such as
//! running out of descriptors). So an idle keep-alive client, a client that sends its head a
//! byte at a time, or one that never reads its responses would hold a thread for ever, and
//! enough of them would stop the server.
//!
//! tiny_http 0.12's thread pool has a race too: a connection accepted just after another,
//! while an idle pool thread is waking up, is queued for a thread that is already taken, and
//! waits until some connection ends (an hour, with keep-alive clients). At start, before any
//! client can be served, `start` gives each of the pool's idle threads a connection of our
//! own that never ends (parked): with no idle thread, tiny_http gives every new connection a
//! new thread at once, and a burst of new clients meets no race. Pool threads that go idle
//! later (a client left; for 5 s, then they end) can still meet it: the watchdog sees a
//! connection with data that nothing ever read while there are more connections than pool
//! threads, and wakes the pool with a connection of our own closed at once, whose new thread
//! then takes the stranded one. Nobody's connection is closed for it.
//!
//! tiny_http does not hand us its sockets, so a watchdog thread finds them: every descriptor
//! of the process whose local address is the listening one and which has a peer. The kernel
//! says when each last sent and received data (`TCP_INFO`); `verdicts` decides, and the
//! watchdog shuts the socket down, which makes tiny_http's blocked read or write return and
//! its thread close the connection. It inspects and shuts down its own duplicate of the
//! descriptor, so a descriptor number reused meanwhile by a new connection is never touched.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(500);
/// Data unread this long on a connection nothing ever read from: no thread has it.
const UNCLAIMED_AFTER: Duration = Duration::from_millis(100);
/// A wake-up connection to our own listener on loopback connects at once, or not at all.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// Right after start, when clients (wrk, Envoy after a rollout) open their connections at
/// once, the watchdog looks this often, for this long, so that a connection stranded anyway
/// (an idle thread appears whenever a connection ends, e.g. a client's connect-and-close
/// probe) waits milliseconds, not a `TICK`.
const WARM_UP: Duration = Duration::from_secs(2);
const WARM_UP_LOOK: Duration = Duration::from_millis(10);
/// A wake-up connection tiny_http has not closed by then was itself queued: more are made.
const WAKE_LANDS_WITHIN: Duration = Duration::from_millis(100);
/// At most this many parked connections (tiny_http 0.12 starts 4 idle threads), each taken
/// by its thread within `PARK_WITHIN`.
const MAX_PARKED: usize = 16;
const PARK_WITHIN: Duration = Duration::from_secs(1);
/// Descriptors a connection costs: tiny_http clones the stream for reading and writing.
const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors kept for everything else: the listener and its duplicates, the span socket,
/// /chain calls, the scan, and our parked and wake-up connections (three each, ours and
/// tiny_http's two; usually 5 parked).
const RESERVED_FDS: u64 = 96;
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

/// How many of `conns` (by client address) tiny_http left without a thread. A pool thread
/// serves one connection at a time, and a connection waits in the pool's queue for good only
/// while no pool thread is idle: so at most `conns.len() - pool_threads` are stranded, and of
/// those only the ones seen, with data that nothing ever read at the previous look too
/// (`unread_before`) or for `UNCLAIMED_AFTER`.
pub fn stranded(
    conns: &[(SocketAddr, Observed)],
    unread_before: &HashSet<SocketAddr>,
    pool_threads: usize,
) -> usize {
    let seen = conns
        .iter()
        .filter(|(peer, c)| c.unread && (unread_before.contains(peer) || c.unclaimed()))
        .count();
    seen.min(conns.len().saturating_sub(pool_threads))
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections at the last look.
    pub open: AtomicU64,
    /// Connections closed, by `Reason`.
    pub closed: Closed,
    /// Connections tiny_http's pool race left without a thread, given one.
    pub stranded: AtomicU64,
    /// Requests never released to tiny_http (see `server`): each holds a thread and two
    /// descriptors for the life of the process.
    pub kept: AtomicU64,
    /// Connections closed but held by a tiny_http thread that will never release them (one
    /// deadlocked on an HTTP/2.0 request line, a kept request), at the last look.
    pub stuck: AtomicU64,
    /// Whether so many are stuck that only a restart gives their threads and descriptors
    /// back.
    pub unhealthy: AtomicBool,
}

/// A counter for each `Reason`.
#[derive(Debug, Default)]
pub struct Closed {
    idle: AtomicU64,
    request_timeout: AtomicU64,
    over_limit: AtomicU64,
}

impl Closed {
    pub fn get(&self, reason: Reason) -> &AtomicU64 {
        match reason {
            Reason::Idle => &self.idle,
            Reason::RequestTimeout => &self.request_timeout,
            Reason::OverLimit => &self.over_limit,
        }
    }
}

/// To be called once tiny_http serves `listening`: parks its idle pool threads, and starts
/// the watchdog over the connections accepted there, with the connection limit lowered if
/// the open-files limit cannot hold it; returns the limits in force. Without /proc the
/// descriptors cannot be listed: a warning, and no watchdog (and nothing parked).
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
    let own = own_address(listening);
    let parked = park(listening, own).unwrap_or_else(|e| {
        log::warn!("cannot park tiny_http's idle threads: {e}");
        Vec::new()
    });
    let started = Instant::now();
    std::thread::Builder::new()
        .name("connections".into())
        .spawn(move || {
            // Ours, kept open for the life of the process, and left alone.
            let parked_peers: HashSet<SocketAddr> =
                parked.iter().filter_map(|s| s.local_addr().ok()).collect();
            let mut wake = Wake::new(own, parked.len());
            let mut lingering = Lingering::default();
            loop {
                let warming = started.elapsed() < WARM_UP;
                std::thread::sleep(if warming { WARM_UP_LOOK } else { TICK });
                match scan(listening) {
                    Ok(mut found) => {
                        found
                            .open
                            .retain(|c| !parked_peers.contains(&c.peer) && !wake.made(c.peer));
                        enforce(&found.open, &limits, &stats);
                        // Threads holding closed connections for good serve no other.
                        wake.stranded(&found.open, found.lingering.len(), &stats);
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

/// Gives each idle thread of tiny_http's pool a connection of ours that never ends, one at a
/// time: each is taken by an idle thread, until one gets a new thread, which shows that none
/// was idle any more. Each sends one byte of a request line, so that the thread that takes it
/// waits for the rest for good, and we see when it was taken (the byte was read).
fn park(listening: SocketAddr, own: SocketAddr) -> io::Result<Vec<TcpStream>> {
    let mut parked: Vec<TcpStream> = Vec::new();
    while parked.len() < MAX_PARKED {
        let mut s = TcpStream::connect_timeout(&own, PARK_WITHIN)?;
        s.write_all(b"G")?;
        let ours = s.local_addr()?;
        parked.push(s);
        let deadline = Instant::now() + PARK_WITHIN;
        loop {
            let taken = scan(listening)?
                .open
                .iter()
                .any(|c| c.peer == ours && c.observed.read);
            if taken {
                break;
            }
            if Instant::now() > deadline {
                log::warn!("tiny_http did not take a parked connection within {PARK_WITHIN:?}");
                return Ok(parked);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if pool_threads()? <= parked.len() {
            break;
        }
    }
    log::debug!("{} of tiny_http's idle threads parked", parked.len());
    Ok(parked)
}

/// Wakes tiny_http's pool for stranded connections: a connection to our own listener, shut
/// down at once. No pool thread being idle (one is stranded), tiny_http gives it a new thread,
/// which reads its end, closes it, and takes the stranded connection from the queue next.
struct Wake {
    own: SocketAddr,
    /// Pool threads held by parked connections.
    parked: usize,
    /// Clients whose connection had data that nothing ever read at the previous look.
    unread: HashSet<SocketAddr>,
    /// Wake-up connections tiny_http has not closed yet, and when each was made: each will
    /// give a stranded connection its thread (unless itself queued: `WAKE_LANDS_WITHIN`).
    pending: Vec<(TcpStream, Instant)>,
}

impl Wake {
    fn new(own: SocketAddr, parked: usize) -> Wake {
        Wake {
            own,
            parked,
            unread: HashSet::new(),
            pending: Vec::new(),
        }
    }

    /// Whether `peer` is one of our wake-up connections.
    fn made(&self, peer: SocketAddr) -> bool {
        self.pending
            .iter()
            .any(|(s, _)| s.local_addr().is_ok_and(|a| a == peer))
    }

    /// Wakes the pool once for each stranded connection of `conns` not already woken;
    /// `held` pool threads hold closed connections for good.
    fn stranded(&mut self, conns: &[Conn], held: usize, stats: &Stats) {
        let observed: Vec<(SocketAddr, Observed)> =
            conns.iter().map(|c| (c.peer, c.observed)).collect();
        let unread_before = std::mem::take(&mut self.unread);
        self.unread = observed
            .iter()
            .filter(|(_, o)| o.unread)
            .map(|&(peer, _)| peer)
            .collect();
        self.pending
            .retain(|(s, made)| made.elapsed() < WAKE_LANDS_WITHIN && !closed_by_peer(s));
        if self.unread.is_empty() {
            return;
        }
        let stranded = match pool_threads() {
            Ok(threads) => stranded(
                &observed,
                &unread_before,
                threads.saturating_sub(self.parked + held),
            ),
            Err(e) => {
                log::warn!("cannot count tiny_http's threads: {e}");
                0
            }
        };
        let already = self.pending.len();
        for _ in already..stranded {
            let wake = TcpStream::connect_timeout(&self.own, WAKE_CONNECT_TIMEOUT).and_then(|s| {
                s.shutdown(Shutdown::Write)?;
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match wake {
                Ok(s) => self.pending.push((s, Instant::now())),
                Err(e) => log::warn!(
                    "cannot connect to {} to wake tiny_http's pool: {e}",
                    self.own
                ),
            }
        }
        let woken = self.pending.len().saturating_sub(already);
        if woken > 0 {
            stats.stranded.fetch_add(woken as u64, Relaxed);
            log::debug!("{woken} connections left without a thread by tiny_http's pool: woken");
        }
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

fn enforce(conns: &[Conn], limits: &Limits, stats: &Stats) {
    let observed: Vec<Observed> = conns.iter().map(|c| c.observed).collect();
    let verdicts = verdicts(&observed, limits);
    stats
        .open
        .store((conns.len() - verdicts.len()) as u64, Relaxed);
    let closed = Closed::default();
    for &(i, reason) in &verdicts {
        if conns[i].socket.open().is_some_and(|fd| shutdown(&fd)) {
            closed.get(reason).fetch_add(1, Relaxed);
            stats.closed.get(reason).fetch_add(1, Relaxed);
        }
    }
    let count = |reason| closed.get(reason).load(Relaxed);
    let idle = count(Reason::Idle);
    if idle > 0 {
        log::debug!("closed {idle} idle connections");
    }
    let (timed_out, over) = (count(Reason::RequestTimeout), count(Reason::OverLimit));
    if timed_out + over > 0 {
        log::warn!(
            "closed {timed_out} connections with a request unanswered after {:?}, {over} over the limit of {}",
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

/// One open connection: where to find its socket, the client's address, and what the kernel
/// says about it.
#[derive(Debug)]
struct Conn {
    socket: Socket,
    peer: SocketAddr,
    observed: Observed,
}

/// What one look finds.
#[derive(Debug, Default)]
struct Scan {
    /// Every open connection.
    open: Vec<Conn>,
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
                if let Some(peer) = peer_addr(dup.as_raw_fd())
                    && let Some(observed) = observe(dup.as_raw_fd(), &info)
                {
                    found.open.push(Conn {
                        socket,
                        peer,
                        observed,
                    });
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
    fn an_unclaimed_connection_is_never_closed_and_closes_no_other_below_the_limit() {
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
        let waiting = |ms: u64| Observed {
            since_recv: Duration::from_millis(ms),
            ..unclaimed(1, 0)
        };
        let read = conn(1, 1, true);
        let peer = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        // (name, connections by client port, unread at the previous look, pool threads, stranded)
        type Case = (&'static str, Vec<(u16, Observed)>, Vec<u16>, usize, usize);
        let cases: &[Case] = &[
            ("nothing unread", vec![(1, read), (2, read)], vec![], 0, 0),
            (
                "unread for the first time",
                vec![(1, waiting(4))],
                vec![],
                0,
                0,
            ),
            (
                "unread at the previous look too",
                vec![(1, waiting(4))],
                vec![1],
                0,
                1,
            ),
            (
                "unread for long",
                vec![(1, read), (2, waiting(100))],
                vec![],
                1,
                1,
            ),
            (
                "another connection was unread before",
                vec![(1, waiting(4)), (2, read)],
                vec![2],
                0,
                0,
            ),
            (
                "unread twice, but a thread for each: not run yet",
                vec![(1, read), (2, waiting(8))],
                vec![2],
                2,
                0,
            ),
            (
                "three unread twice, one thread short",
                vec![(1, read), (2, waiting(8)), (3, waiting(8)), (4, waiting(8))],
                vec![2, 3, 4],
                3,
                1,
            ),
            ("idle threads", vec![(1, waiting(900))], vec![1], 4, 0),
        ];
        for (name, conns, before, threads, want) in cases {
            let conns: Vec<(SocketAddr, Observed)> =
                conns.iter().map(|&(p, o)| (peer(p), o)).collect();
            let before: HashSet<SocketAddr> = before.iter().map(|&p| peer(p)).collect();
            assert_eq!(stranded(&conns, &before, *threads), *want, "{name}");
        }
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
        assert!(!found[0].observed.answered && !found[0].observed.unread);
        std::thread::sleep(Duration::from_millis(300));
        client.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            scan(addr).unwrap().open[0].observed.unread,
            "arrived, not read"
        );
        let mut byte = [0];
        server.read_exact(&mut byte).unwrap();
        let o = scan(addr).unwrap().open[0].observed;
        assert!(!o.unread, "{o:?}");
        assert!(o.since_recv < Duration::from_millis(200), "{o:?}");
        assert!(o.since_sent >= Duration::from_millis(250), "{o:?}");
        assert!(o.waiting());
        server.write_all(b"y").unwrap();
        client.read_exact(&mut byte).unwrap();
        let o = scan(addr).unwrap().open[0].observed;
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

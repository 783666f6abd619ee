use myhelloworld::access_log;
use myhelloworld::config::{Config, HELP};
use myhelloworld::connections;
use myhelloworld::handlers::App;
use myhelloworld::metrics::Metrics;
use myhelloworld::reporter::{self, MAX_PACKET_BYTES, Queue, Settings, Stats};
use myhelloworld::server::{self, Service, Stop};
use myhelloworld::signals::Signals;
use myhelloworld::trace::{Sampler, Tracing};
use std::net::{SocketAddr, TcpListener};
use std::process::exit;
use std::sync::Arc;
use std::thread::JoinHandle;
use time::UtcOffset;

/// mimalloc instead of the C library's allocator: tiny_http allocates about 50 times per
/// request, and musl's allocator (what the static image links) takes a global lock for each
/// (README, "Performance"). Large blocks are mapped directly (`alloc`).
#[global_allocator]
static ALLOCATOR: myhelloworld::alloc::Allocator = myhelloworld::alloc::Allocator;
/// `mi_option_arena_eager_commit` (mimalloc.h's `mi_option_e`; the binding names no constant
/// for it). Its default (eager on Linux) keeps freed pages of every thread resident: with a
/// thread per connection, 35 MB at 32 connections instead of 6 MB, for the same CPU.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Sets mimalloc's options before its first allocation (mimalloc decides when it reserves its
/// first arena, and the Rust runtime allocates before `main`): a constructor, run by the
/// loader (or the static binary's start code) before `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static SET_MIMALLOC_OPTIONS: extern "C" fn() = {
    extern "C" fn set() {
        // SAFETY: stores an option value; mimalloc needs no initialisation for it.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    set
};

fn main() {
    // First, before any thread exists, so that every thread inherits the blocked mask.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("myhelloworld: cannot block SIGTERM/SIGINT: {e}");
            exit(1);
        }
    };
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("--help" | "-h") => {
            print!("{HELP}");
            return;
        }
        Some("--version" | "-V") => {
            println!("myhelloworld {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Some(other) => {
            eprintln!("myhelloworld: unknown argument {other:?} (see --help)");
            exit(2);
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = match Config::from_lookup(|var| std::env::var(var).ok(), cpus) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("myhelloworld: {e}");
            exit(2);
        }
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Err(e) = access_log::Logger::install(logger.build()) {
        eprintln!("myhelloworld: {e}");
        exit(2);
    }
    // Still single-threaded: the only moment `time` may read the local offset.
    let utc_offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    exit(run(config, signals, utc_offset));
}

/// Serves until stopped; returns the exit status.
fn run(config: Config, signals: Signals, utc_offset: UtcOffset) -> i32 {
    let address = SocketAddr::from((config.host, config.port));
    let listener = match TcpListener::bind(address) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {address}: {e}");
            return 1;
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            log::error!("cannot read the listening address: {e}");
            return 1;
        }
    };
    let conn_stats = Arc::new(connections::Stats::default());

    let stats = Arc::new(Stats::default());
    let (spans, reporter) = match start_reporter(&config, &stats) {
        Ok(started) => started,
        Err(e) => {
            log::error!("cannot start the span reporter: {e}");
            return 1;
        }
    };
    let service = Service {
        app: App::new(utc_offset),
        tracing: Tracing::new(spans, Sampler::new(config.sampler), config.shared_rpc_span),
        propagation: config.propagation.clone(),
        downstream: config
            .downstream_url
            .clone()
            .map(|url| (url, config.downstream_timeout)),
        metrics: Metrics::default(),
        span_stats: stats,
        conn_stats: conn_stats.clone(),
        listening: local,
    };
    let first = match server::listen(&listener) {
        Ok(h) => h,
        Err(e) => {
            log::error!("cannot start the HTTP server: {e}");
            return 1;
        }
    };
    // Once tiny_http serves: the watchdog parks its idle pool threads (see connections.rs).
    let limits = connections::start(local, config.connections, conn_stats);
    log_start(&config, local, limits.max_connections);
    // A server whose accept loop failed serves on until its connections have been idle or
    // unanswered past the watchdog's limits, which close them.
    let retire_after = limits.idle_timeout + limits.request_timeout;
    let stop = server::run(
        listener,
        first,
        config.workers,
        &service,
        signals,
        retire_after,
    );
    // The last span sender goes with the service: the reporter sends what it holds, then ends.
    drop(service);
    if let Some(reporter) = reporter
        && reporter.join().is_err()
    {
        log::error!("the span reporter panicked");
    }
    match stop {
        Stop::Signal(_) => {
            log::info!("stopped");
            0
        }
        Stop::Failed(_) => 1,
    }
}

/// The span queue and the reporter thread draining it; neither when tracing is disabled.
fn start_reporter(
    config: &Config,
    stats: &Arc<Stats>,
) -> std::io::Result<(Option<Queue>, Option<JoinHandle<()>>)> {
    if config.disabled {
        return Ok((None, None));
    }
    let (queue, rx) = reporter::channel(stats.clone(), config.max_queue_size);
    let settings = Settings {
        service_name: config.service_name.clone(),
        tags: config.tags.clone(),
        agent_host: config.agent_host.clone(),
        agent_port: config.agent_port,
        flush_interval: config.flush_interval,
        log_spans: config.log_spans,
        max_packet: MAX_PACKET_BYTES,
    };
    let handle = reporter::spawn(settings, rx, stats.clone())?;
    Ok((Some(queue), Some(handle)))
}

/// What the service runs with, in the log: tests and operators read the `listening on` line.
fn log_start(config: &Config, local: SocketAddr, max_connections: usize) {
    if let Some(url) = &config.downstream_url {
        log::info!(
            "/chain calls {url} (timeout {:?})",
            config.downstream_timeout
        );
    }
    if config.disabled {
        log::info!(
            "tracing disabled (JAEGER_DISABLED): trace headers are read and propagated, no span is recorded"
        );
    }
    log::info!(
        "myhelloworld {} listening on http://{local} with {} workers, at most {max_connections} connections; service {:?}, spans to {}:{} every {:?}; trace context {}",
        env!("CARGO_PKG_VERSION"),
        config.workers,
        config.service_name,
        config.agent_host,
        config.agent_port,
        config.flush_interval,
        config.propagation,
    );
}

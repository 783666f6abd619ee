//! `GET /metrics`: the service's counters in the Prometheus text format (version 0.0.4).
//! Recording is a few relaxed atomic additions per request, in fixed arrays (no lock, no
//! allocation); only rendering allocates.

use crate::connections::{self, Reason};
use crate::handlers::Route;
use crate::reporter::Stats;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Statuses 100 to 599, one counter each.
const STATUSES: usize = 500;

/// Per-route request counters and duration histograms.
pub struct Metrics {
    requests: [[AtomicU64; STATUSES]; Route::ALL.len()],
    /// Requests per bucket (not cumulative; `render` sums them).
    buckets: [[AtomicU64; BUCKETS.len()]; Route::ALL.len()],
    duration_us: [AtomicU64; Route::ALL.len()],
    count: [AtomicU64; Route::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; STATUSES] }; Route::ALL.len()],
            buckets: [const { [const { AtomicU64::new(0) }; BUCKETS.len()] }; Route::ALL.len()],
            duration_us: [const { AtomicU64::new(0) }; Route::ALL.len()],
            count: [const { AtomicU64::new(0) }; Route::ALL.len()],
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn observe(&self, route: Route, status: u16, elapsed: Duration) {
        let r = route.index();
        if let Some(counter) = self.requests[r].get(usize::from(status).wrapping_sub(100)) {
            counter.fetch_add(1, Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[r][b].fetch_add(1, Relaxed);
        }
        self.duration_us[r].fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.count[r].fetch_add(1, Relaxed);
    }

    /// The exposition text: these metrics, the span reporter's and the connection watchdog's.
    pub fn render(&self, spans: &Stats, conns: &connections::Stats) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.write(&mut out, spans);
        let _ = write_connections(&mut out, conns);
        out
    }

    fn write(&self, out: &mut String, spans: &Stats) -> std::fmt::Result {
        out.push_str("# HELP myhelloworld_http_requests_total HTTP requests answered, by route and status.\n# TYPE myhelloworld_http_requests_total counter\n");
        for route in Route::ALL {
            for (i, counter) in self.requests[route.index()].iter().enumerate() {
                let n = counter.load(Relaxed);
                if n > 0 {
                    writeln!(
                        out,
                        "myhelloworld_http_requests_total{{route=\"{}\",status=\"{}\"}} {n}",
                        route.label(),
                        i + 100
                    )?;
                }
            }
        }
        out.push_str("# HELP myhelloworld_http_request_duration_seconds Time from taking a request to having written its response.\n# TYPE myhelloworld_http_request_duration_seconds histogram\n");
        for route in Route::ALL {
            let r = route.index();
            let count = self.count[r].load(Relaxed);
            if count == 0 {
                continue;
            }
            let label = route.label();
            let mut cumulative = 0;
            for (le, bucket) in BUCKETS.iter().zip(&self.buckets[r]) {
                cumulative += bucket.load(Relaxed);
                writeln!(
                    out,
                    "myhelloworld_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"{le}\"}} {cumulative}"
                )?;
            }
            writeln!(
                out,
                "myhelloworld_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {count}"
            )?;
            writeln!(
                out,
                "myhelloworld_http_request_duration_seconds_sum{{route=\"{label}\"}} {}",
                self.duration_us[r].load(Relaxed) as f64 / 1e6
            )?;
            writeln!(
                out,
                "myhelloworld_http_request_duration_seconds_count{{route=\"{label}\"}} {count}"
            )?;
        }
        let s = spans;
        let counters: [(&str, &str, &str, u64); 10] = [
            (
                "myhelloworld_spans_finished_total",
                "Sampled spans that ended: sent, dropped, or waiting in the reporter.",
                "",
                s.admitted.load(Relaxed) + s.dropped_queue_full.load(Relaxed),
            ),
            (
                "myhelloworld_spans_sent_total",
                "Spans in datagrams the kernel accepted for the Jaeger agent.",
                "",
                s.sent.load(Relaxed),
            ),
            (
                "myhelloworld_spans_dropped_total",
                "Spans not sent, by reason.",
                "reason=\"queue_full\"",
                s.dropped_queue_full.load(Relaxed),
            ),
            (
                "myhelloworld_spans_dropped_total",
                "",
                "reason=\"send_error\"",
                s.dropped_send_error.load(Relaxed),
            ),
            (
                "myhelloworld_spans_dropped_total",
                "",
                "reason=\"agent_unresolved\"",
                s.dropped_agent_unresolved.load(Relaxed),
            ),
            (
                "myhelloworld_spans_dropped_total",
                "",
                "reason=\"too_large\"",
                s.dropped_too_large.load(Relaxed),
            ),
            (
                "myhelloworld_spans_refused_total",
                "Spans counted as sent whose datagram the agent's host refused (ICMP port unreachable, seen at the next send; a lower bound).",
                "",
                s.refused.load(Relaxed),
            ),
            (
                "myhelloworld_reporter_datagrams_total",
                "emitBatch datagrams sent to the Jaeger agent.",
                "",
                s.datagrams.load(Relaxed),
            ),
            (
                "myhelloworld_reporter_bytes_total",
                "Bytes of those datagrams.",
                "",
                s.bytes.load(Relaxed),
            ),
            (
                "myhelloworld_reporter_send_errors_total",
                "Datagrams whose send failed.",
                "",
                s.send_errors.load(Relaxed),
            ),
        ];
        for (name, help, labels, value) in counters {
            if !help.is_empty() {
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter")?;
            }
            if labels.is_empty() {
                writeln!(out, "{name} {value}")?;
            } else {
                writeln!(out, "{name}{{{labels}}} {value}")?;
            }
        }
        writeln!(
            out,
            "# HELP myhelloworld_reporter_queue_length Spans in flight or waiting for the reporter.\n# TYPE myhelloworld_reporter_queue_length gauge\nmyhelloworld_reporter_queue_length {}",
            s.reserved.load(Relaxed)
        )
    }
}

fn write_connections(out: &mut String, conns: &connections::Stats) -> std::fmt::Result {
    writeln!(
        out,
        "# HELP myhelloworld_http_connections Open client connections at the watchdog's last look.\n# TYPE myhelloworld_http_connections gauge\nmyhelloworld_http_connections {}",
        conns.open.load(Relaxed)
    )?;
    out.push_str("# HELP myhelloworld_http_connections_closed_total Client connections the watchdog closed, by reason.\n# TYPE myhelloworld_http_connections_closed_total counter\n");
    for (reason, counter) in Reason::ALL.iter().zip(&conns.closed) {
        writeln!(
            out,
            "myhelloworld_http_connections_closed_total{{reason=\"{}\"}} {}",
            reason.label(),
            counter.load(Relaxed)
        )?;
    }
    writeln!(
        out,
        "# HELP myhelloworld_http_connections_stranded_total Connections tiny_http's pool race left without a thread, given one at once.\n# TYPE myhelloworld_http_connections_stranded_total counter\nmyhelloworld_http_connections_stranded_total {}",
        conns.stranded.load(Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_requests_histograms_and_spans() {
        let m = Metrics::default();
        m.observe(Route::GetTime, 200, Duration::from_micros(300));
        m.observe(Route::GetTime, 200, Duration::from_millis(3));
        m.observe(Route::GetTime, 405, Duration::from_secs(10));
        m.observe(Route::Unknown, 404, Duration::from_micros(50));
        let stats = Stats::default();
        stats.admitted.store(7, Relaxed);
        stats.dropped_queue_full.store(2, Relaxed);
        stats.sent.store(6, Relaxed);
        stats.dropped_send_error.store(1, Relaxed);
        let conns = connections::Stats::default();
        conns.open.store(3, Relaxed);
        conns.closed[Reason::RequestTimeout as usize].store(4, Relaxed);
        let text = m.render(&stats, &conns);
        let cases: &[(&str, f64)] = &[
            (
                "myhelloworld_http_requests_total{route=\"/gettime\",status=\"200\"}",
                2.0,
            ),
            (
                "myhelloworld_http_requests_total{route=\"/gettime\",status=\"405\"}",
                1.0,
            ),
            (
                "myhelloworld_http_requests_total{route=\"unknown\",status=\"404\"}",
                1.0,
            ),
            (
                "myhelloworld_http_request_duration_seconds_bucket{route=\"/gettime\",le=\"0.0005\"}",
                1.0,
            ),
            (
                "myhelloworld_http_request_duration_seconds_bucket{route=\"/gettime\",le=\"0.005\"}",
                2.0,
            ),
            (
                "myhelloworld_http_request_duration_seconds_bucket{route=\"/gettime\",le=\"2.5\"}",
                2.0,
            ),
            (
                "myhelloworld_http_request_duration_seconds_bucket{route=\"/gettime\",le=\"+Inf\"}",
                3.0,
            ),
            (
                "myhelloworld_http_request_duration_seconds_sum{route=\"/gettime\"}",
                10.0033,
            ),
            ("myhelloworld_spans_finished_total", 9.0),
            ("myhelloworld_spans_sent_total", 6.0),
            (
                "myhelloworld_spans_dropped_total{reason=\"queue_full\"}",
                2.0,
            ),
            (
                "myhelloworld_spans_dropped_total{reason=\"send_error\"}",
                1.0,
            ),
            ("myhelloworld_reporter_queue_length", 0.0),
            ("myhelloworld_http_connections", 3.0),
            (
                "myhelloworld_http_connections_closed_total{reason=\"request_timeout\"}",
                4.0,
            ),
            (
                "myhelloworld_http_connections_closed_total{reason=\"idle\"}",
                0.0,
            ),
        ];
        for (series, want) in cases {
            let got = value(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
            assert!((got - want).abs() < 1e-9, "{series}: {got} != {want}");
        }
        // Routes without requests are left out; every sample line is `name{labels} value`.
        assert!(!text.contains("route=\"/chain\""));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
        // One TYPE line per metric name.
        let types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE myhelloworld_spans_dropped_total"));
        assert_eq!(types.count(), 1);
    }

    #[test]
    fn out_of_range_statuses_are_not_counted_but_timed() {
        let m = Metrics::default();
        m.observe(Route::Root, 99, Duration::ZERO);
        m.observe(Route::Root, 600, Duration::ZERO);
        let text = m.render(&Stats::default(), &connections::Stats::default());
        assert!(!text.contains("myhelloworld_http_requests_total{"));
        assert_eq!(
            value(
                &text,
                "myhelloworld_http_request_duration_seconds_count{route=\"/\"}"
            ),
            Some(2.0)
        );
    }
}

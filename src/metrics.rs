//! `GET /metrics`: the service's counters in the Prometheus text format (version 0.0.4).
//! Recording is a few relaxed atomic additions per request, in fixed arrays (no lock, no
//! allocation); only rendering allocates.

use crate::connections::{self, Reason};
use crate::handlers::{PerRoute, Route};
use crate::reporter::{Metric, SERIES, Stats};
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
    requests: PerRoute<[AtomicU64; STATUSES]>,
    /// Requests per bucket, the last one past every bound (not cumulative: `render` sums
    /// what it loaded, so the `+Inf` bucket and the count always agree with the others).
    buckets: PerRoute<[AtomicU64; BUCKETS.len() + 1]>,
    duration_us: PerRoute<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: PerRoute::new([const { [const { AtomicU64::new(0) }; STATUSES] }; _]),
            buckets: PerRoute::new([const { [const { AtomicU64::new(0) }; BUCKETS.len() + 1] }; _]),
            duration_us: PerRoute::new([const { AtomicU64::new(0) }; _]),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn observe(&self, route: Route, status: u16, elapsed: Duration) {
        if let Some(counter) = self.requests[route].get(usize::from(status).wrapping_sub(100)) {
            counter.fetch_add(1, Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[route][b].fetch_add(1, Relaxed);
        self.duration_us[route].fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// The exposition text: these metrics, the span reporter's and the connection watchdog's.
    pub(crate) fn render(&self, spans: &Stats, conns: &connections::Stats) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.write_requests(&mut out);
        let _ = self.write_durations(&mut out);
        let _ = write_spans(&mut out, spans);
        let _ = write_connections(&mut out, conns);
        out
    }

    fn write_requests(&self, out: &mut String) -> std::fmt::Result {
        out.push_str("# HELP myhelloworld_http_requests_total HTTP requests answered, by route and status.\n# TYPE myhelloworld_http_requests_total counter\n");
        for route in Route::ALL {
            for (i, counter) in self.requests[route].iter().enumerate() {
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
        Ok(())
    }

    fn write_durations(&self, out: &mut String) -> std::fmt::Result {
        out.push_str("# HELP myhelloworld_http_request_duration_seconds Time from taking a request to having written its response.\n# TYPE myhelloworld_http_request_duration_seconds histogram\n");
        for route in Route::ALL {
            // One load per bucket: every line below is derived from this snapshot.
            let loaded = self.buckets[route].each_ref().map(|b| b.load(Relaxed));
            let count: u64 = loaded.iter().sum();
            if count == 0 {
                continue;
            }
            let label = route.label();
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(loaded) {
                cumulative += n;
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
                self.duration_us[route].load(Relaxed) as f64 / 1e6
            )?;
            writeln!(
                out,
                "myhelloworld_http_request_duration_seconds_count{{route=\"{label}\"}} {count}"
            )?;
        }
        Ok(())
    }
}

/// The span reporter's series, from its list (`reporter::SERIES`).
fn write_spans(out: &mut String, spans: &Stats) -> std::fmt::Result {
    for series in &SERIES {
        let Some(Metric {
            name,
            labels,
            help,
            kind,
        }) = series.metric
        else {
            continue;
        };
        if !help.is_empty() {
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}")?;
        }
        let value = (series.read)(spans);
        if labels.is_empty() {
            writeln!(out, "{name} {value}")?;
        } else {
            writeln!(out, "{name}{{{labels}}} {value}")?;
        }
    }
    Ok(())
}

fn write_connections(out: &mut String, conns: &connections::Stats) -> std::fmt::Result {
    writeln!(
        out,
        "# HELP myhelloworld_http_connections Open client connections at the watchdog's last look.\n# TYPE myhelloworld_http_connections gauge\nmyhelloworld_http_connections {}",
        conns.open.load(Relaxed)
    )?;
    out.push_str("# HELP myhelloworld_http_connections_closed_total Client connections the watchdog closed, by reason.\n# TYPE myhelloworld_http_connections_closed_total counter\n");
    for reason in Reason::ALL {
        writeln!(
            out,
            "myhelloworld_http_connections_closed_total{{reason=\"{}\"}} {}",
            reason.label(),
            conns.closed.get(reason).load(Relaxed)
        )?;
    }
    writeln!(
        out,
        "# HELP myhelloworld_http_connections_stuck Closed connections a tiny_http thread holds for good (an HTTP/2.0 request line deadlocks it; kept requests); past a quarter of HTTP_MAX_CONNECTIONS, /healthz answers 503.\n# TYPE myhelloworld_http_connections_stuck gauge\nmyhelloworld_http_connections_stuck {}",
        conns.stuck.load(Relaxed)
    )?;
    writeln!(
        out,
        "# HELP myhelloworld_http_requests_kept_total Requests declaring a body too long for tiny_http to drain safely: answered 413, their connection closed, the request kept (a thread and two descriptors each).\n# TYPE myhelloworld_http_requests_kept_total counter\nmyhelloworld_http_requests_kept_total {}",
        conns.kept.load(Relaxed)
    )?;
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
        stats.received.store(7, Relaxed);
        stats.dropped_queue_full.store(2, Relaxed);
        stats.sent.store(6, Relaxed);
        stats.dropped_send_error.store(1, Relaxed);
        let conns = connections::Stats::default();
        conns.open.store(3, Relaxed);
        conns.closed.get(Reason::RequestTimeout).store(4, Relaxed);
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

    /// Every sample line of a rendering: series → value.
    fn samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Scrapes taken while requests are observed and spans counted from other threads:
    /// in each, a histogram's buckets grow with `le` up to `+Inf`, which equals `_count`; from
    /// one to the next, no counter and no bucket goes down.
    #[test]
    fn concurrent_scrapes_are_consistent_and_counters_only_grow() {
        let m = Metrics::default();
        let stats = Stats::default();
        let conns = connections::Stats::default();
        // Set however the scrapes end, so that a failed assertion stops the observers too.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        // Durations in every bounded bucket (past the last bound is in the test above: here it
        // would hide a count loaded apart from the buckets, as it is in no bounded bucket).
        let durations: Vec<Duration> = BUCKETS
            .iter()
            .map(|&le| Duration::from_secs_f64(le * 0.9))
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for t in 0..2 {
                let (m, stats, stop, durations) = (&m, &stats, &stop, &durations);
                scope.spawn(move || {
                    let mut i = t;
                    while !stop.load(Relaxed) {
                        m.observe(Route::GetTime, 200, durations[i % durations.len()]);
                        stats.received.fetch_add(1, Relaxed);
                        stats.dropped_queue_full.fetch_add(1, Relaxed);
                        i += 1;
                    }
                });
            }
            let _stop = Stop(&stop);
            let mut previous: Vec<(String, f64)> = Vec::new();
            for _ in 0..2000 {
                let text = m.render(&stats, &conns);
                let now = samples(&text);
                let value = |series: &str| {
                    now.iter()
                        .find(|(s, _)| s == series)
                        .map_or(0.0, |(_, v)| *v)
                };
                let route = "route=\"/gettime\"";
                let mut last = 0.0;
                for le in BUCKETS
                    .iter()
                    .map(|le| le.to_string())
                    .chain(["+Inf".into()])
                {
                    let bucket = value(&format!(
                        "myhelloworld_http_request_duration_seconds_bucket{{{route},le=\"{le}\"}}"
                    ));
                    assert!(bucket >= last, "le={le}: {bucket} < {last}\n{text}");
                    last = bucket;
                }
                assert_eq!(
                    value(&format!(
                        "myhelloworld_http_request_duration_seconds_count{{{route}}}"
                    )),
                    last,
                    "{text}"
                );
                for (series, before) in &previous {
                    let grows = series.contains("_total")
                        || series.contains("_bucket")
                        || series.contains("_count");
                    if grows {
                        assert!(value(series) >= *before, "{series} went down");
                    }
                }
                previous = now;
            }
        });
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

    /// README's Metrics table names every metric of `/metrics` and no other, and lists the
    /// values of each `reason` label.
    #[test]
    fn readme_lists_every_metric() {
        let text = Metrics::default().render(&Stats::default(), &connections::Stats::default());
        let ours: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        let rows = crate::readme::table("Metrics");
        let readme: Vec<&str> = rows
            .iter()
            .map(|row| row[0].split('{').next().unwrap())
            .collect();
        let (mut a, mut b) = (ours.clone(), readme.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, rest)) = line.split_once("{reason=\"") else {
                continue;
            };
            let reason = rest.split('"').next().unwrap();
            let row = rows.iter().find(|r| r[0].starts_with(name)).unwrap();
            assert!(row[1].contains(reason), "{name}: {reason} not in README");
        }
    }
}

//! The span counters, and the one list of them from which the shutdown line and `/metrics`
//! are written (README's Metrics table is checked against `/metrics`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters shared by the workers and the reporter. Plain relaxed atomics: each is an
/// independent count, read for logs and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Spans admitted by `Queue::try_admit` (each is later sent or dropped below).
    pub(crate) admitted: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    /// Spans the reporter took from the channel, however they were started.
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) dropped_send_error: AtomicU64,
    pub(crate) dropped_agent_unresolved: AtomicU64,
    pub(crate) dropped_too_large: AtomicU64,
    pub(crate) datagrams: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    /// Spans counted `sent` whose datagram the agent's host then refused (ICMP port
    /// unreachable, noticed at the next send): a lower bound, see the `reporter` module.
    pub(crate) refused: AtomicU64,
    /// Spans started and not yet finished: the `Slot`s alive (a gauge).
    pub(crate) in_flight: AtomicUsize,
    /// Spans waiting in the channel when the reporter last took one (a gauge).
    pub(crate) queued: AtomicUsize,
}

/// A Prometheus series of `/metrics`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    /// `key="value"`, or empty.
    pub(crate) labels: &'static str,
    /// The `# HELP` text, on the first series of a name only (the others share it).
    pub(crate) help: &'static str,
    pub(crate) kind: &'static str,
}

/// One value read from `Stats`: where it shows in the shutdown line and in `/metrics`.
pub(crate) struct Series {
    /// In the shutdown line: `{separator}{key}={value}`.
    pub(crate) summary: Option<(&'static str, &'static str)>,
    pub(crate) metric: Option<Metric>,
    pub(crate) read: fn(&Stats) -> u64,
}

const fn counter(name: &'static str, labels: &'static str, help: &'static str) -> Option<Metric> {
    Some(Metric {
        name,
        labels,
        help,
        kind: "counter",
    })
}

/// Every span series, in the order of the shutdown line; the series of one metric together.
pub(crate) const SERIES: [Series; 13] = [
    Series {
        summary: Some(("spans ", "admitted")),
        metric: None,
        read: |s| s.admitted.load(Relaxed),
    },
    Series {
        summary: Some((" ", "received")),
        metric: None,
        read: |s| s.received.load(Relaxed),
    },
    Series {
        summary: None,
        metric: counter(
            "myhelloworld_spans_finished_total",
            "",
            "Sampled spans that ended and reached the reporter (sent, dropped, or in its next datagram), and those not started for a full queue.",
        ),
        read: |s| s.received.load(Relaxed) + s.dropped_queue_full.load(Relaxed),
    },
    Series {
        summary: Some((" ", "sent")),
        metric: counter(
            "myhelloworld_spans_sent_total",
            "",
            "Spans in datagrams the kernel accepted for the Jaeger agent.",
        ),
        read: |s| s.sent.load(Relaxed),
    },
    Series {
        summary: Some((" dropped: ", "queue_full")),
        metric: counter(
            "myhelloworld_spans_dropped_total",
            "reason=\"queue_full\"",
            "Spans not sent, by reason.",
        ),
        read: |s| s.dropped_queue_full.load(Relaxed),
    },
    Series {
        summary: Some((" ", "send_error")),
        metric: counter(
            "myhelloworld_spans_dropped_total",
            "reason=\"send_error\"",
            "",
        ),
        read: |s| s.dropped_send_error.load(Relaxed),
    },
    Series {
        summary: Some((" ", "agent_unresolved")),
        metric: counter(
            "myhelloworld_spans_dropped_total",
            "reason=\"agent_unresolved\"",
            "",
        ),
        read: |s| s.dropped_agent_unresolved.load(Relaxed),
    },
    Series {
        summary: Some((" ", "too_large")),
        metric: counter(
            "myhelloworld_spans_dropped_total",
            "reason=\"too_large\"",
            "",
        ),
        read: |s| s.dropped_too_large.load(Relaxed),
    },
    Series {
        summary: Some(("; ", "datagrams")),
        metric: counter(
            "myhelloworld_reporter_datagrams_total",
            "",
            "emitBatch datagrams sent to the Jaeger agent.",
        ),
        read: |s| s.datagrams.load(Relaxed),
    },
    Series {
        summary: Some((" ", "bytes")),
        metric: counter(
            "myhelloworld_reporter_bytes_total",
            "",
            "Bytes of those datagrams.",
        ),
        read: |s| s.bytes.load(Relaxed),
    },
    Series {
        summary: Some((" ", "send_errors")),
        metric: counter(
            "myhelloworld_reporter_send_errors_total",
            "",
            "Datagrams whose send failed.",
        ),
        read: |s| s.send_errors.load(Relaxed),
    },
    Series {
        summary: Some((" ", "refused")),
        metric: counter(
            "myhelloworld_spans_refused_total",
            "",
            "Spans counted as sent whose datagram the agent's host refused (ICMP port unreachable, seen at the next send; a lower bound).",
        ),
        read: |s| s.refused.load(Relaxed),
    },
    Series {
        summary: None,
        metric: Some(Metric {
            name: "myhelloworld_reporter_queue_length",
            labels: "",
            help: "Spans in flight or waiting for the reporter.",
            kind: "gauge",
        }),
        read: |s| (s.in_flight.load(Relaxed) + s.queued.load(Relaxed)) as u64,
    },
];

impl Stats {
    /// One line with every counter, for the shutdown log and for tests.
    pub fn summary(&self) -> String {
        SERIES
            .iter()
            .filter_map(|s| s.summary.map(|(sep, key)| (sep, key, (s.read)(self))))
            .map(|(sep, key, value)| format!("{sep}{key}={value}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_line_keeps_its_form() {
        let stats = Stats::default();
        let counters = [
            &stats.admitted,
            &stats.received,
            &stats.sent,
            &stats.dropped_queue_full,
            &stats.dropped_send_error,
            &stats.dropped_agent_unresolved,
            &stats.dropped_too_large,
            &stats.datagrams,
            &stats.bytes,
            &stats.send_errors,
            &stats.refused,
        ];
        for (n, counter) in (1..).zip(counters) {
            counter.store(n, Relaxed);
        }
        assert_eq!(
            stats.summary(),
            "spans admitted=1 received=2 sent=3 dropped: queue_full=4 send_error=5 agent_unresolved=6 too_large=7; datagrams=8 bytes=9 send_errors=10 refused=11"
        );
    }

    /// A metric's series are together, the first with the help text, each with its own labels.
    #[test]
    fn each_metric_is_named_and_described_once() {
        let metrics: Vec<Metric> = SERIES.iter().filter_map(|s| s.metric).collect();
        for (i, m) in metrics.iter().enumerate() {
            let first = metrics.iter().position(|o| o.name == m.name).unwrap();
            assert!(
                first == i || metrics[i - 1].name == m.name,
                "{} apart",
                m.name
            );
            assert_eq!(first == i, !m.help.is_empty(), "{} help", m.name);
            let same = metrics.iter().filter(|o| o.name == m.name);
            assert_eq!(same.filter(|o| o.labels == m.labels).count(), 1);
        }
    }
}

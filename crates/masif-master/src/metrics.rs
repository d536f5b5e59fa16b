//! The master's Prometheus metrics (served by `masif_daemon::metrics` on `metrics_listen`):
//! reports by outcome and how long they took, the v2 reports held now and how often they were
//! woken by approval changes, kept as the routes go; open connections, the store's retries and whether the TLS files can be used, read at
//! scrape time.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use masif_daemon::serve::OpenConnections;
use masif_store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::tls::ReloadingTls;

/// Upper bounds of the report duration buckets, seconds: 1 ms to the 30 s report timeout.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How a report (`POST /v1/pending-tasks`, `POST /v2/report`) was answered: the `outcome`
/// label of `masif_master_reports_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200: stored, answered with its approvals.
    Ok,
    /// 408: the body was not complete in time.
    Timeout,
    /// 413 or 429: over a limit (body size, tasks, requests at once, report rate).
    Rejected,
    /// 503: the database stayed busy or out of reach, or no room for the body in time.
    Unavailable,
    /// Any other 5xx: a database failure.
    Error,
    /// Any other 4xx: a malformed report, a wrong method, an unusable or revoked certificate.
    BadRequest,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::BadRequest,
        Outcome::Rejected,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    fn of(status: StatusCode) -> Self {
        match status.as_u16() {
            200..=399 => Outcome::Ok,
            408 => Outcome::Timeout,
            413 | 429 => Outcome::Rejected,
            503 => Outcome::Unavailable,
            500..=599 => Outcome::Error,
            _ => Outcome::BadRequest,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadRequest => "bad_request",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// What the routes count.
#[derive(Debug)]
pub(crate) struct ReportMetrics {
    reports: Family<OutcomeLabel, Counter>,
    /// The family's counter of each outcome, in [`Outcome::ALL`]'s order: a report counts
    /// without a label lookup.
    by_outcome: [Counter; 6],
    duration: Histogram,
    held: Gauge<i64, AtomicI64>,
    woken: Counter,
}

impl ReportMetrics {
    pub(crate) fn new() -> Self {
        let reports = Family::<OutcomeLabel, Counter>::default();
        // Every outcome shows from the start, at 0.
        let by_outcome = Outcome::ALL.map(|outcome| {
            reports
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.as_str(),
                })
                .clone()
        });
        Self {
            reports,
            by_outcome,
            duration: Histogram::new(DURATION_BUCKETS),
            held: Gauge::default(),
            woken: Counter::default(),
        }
    }

    /// A held v2 report was handed changed approvals to look at.
    pub(crate) fn woken(&self) {
        self.woken.inc();
    }

    /// A report that arrived at `started` was answered (or, for a held v2 report, its answer
    /// was known before the hold) with `status`.
    pub(crate) fn answered(&self, started: Instant, status: StatusCode) {
        self.duration.observe(started.elapsed().as_secs_f64());
        let outcome = Outcome::of(status);
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.by_outcome[i].inc();
        }
    }

    /// Counts a v2 report as held until the guard is dropped (answered, or its client gone).
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        self.held.inc();
        Held(self.clone())
    }

    /// The count a test sees; also what the gauge shows.
    #[cfg(test)]
    fn held_now(&self) -> i64 {
        self.held.get()
    }
}

/// One held v2 report in `masif_master_longpolls_waiting`.
pub(crate) struct Held(Arc<ReportMetrics>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.dec();
    }
}

/// The master's metrics registry: the route counters and the values read at scrape time.
pub(crate) struct MasterExposition {
    registry: Registry,
}

impl MasterExposition {
    pub(crate) fn new(
        reports: &ReportMetrics,
        connections: OpenConnections,
        store: Arc<dyn Store>,
        tls: Arc<ReloadingTls>,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "masif_master_reports",
            "Agent reports (v1 and v2) by how they were answered",
            reports.reports.clone(),
        );
        registry.register(
            "masif_master_report_duration_seconds",
            "Time from a report's arrival to its answer, body and database included; \
             the time a v2 report is then held waiting for approvals is not included",
            reports.duration.clone(),
        );
        registry.register(
            "masif_master_longpolls_waiting",
            "v2 reports held now, waiting for their approvals to change",
            reports.held.clone(),
        );
        registry.register(
            "masif_master_longpoll_wakeups",
            "Held v2 reports handed changed approvals to match against their tasks",
            reports.woken.clone(),
        );
        registry.register_collector(Box::new(AtScrape {
            connections,
            store,
            tls,
        }));
        Self { registry }
    }
}

impl masif_daemon::metrics::Exposition for MasterExposition {
    async fn render(&self) -> Result<String, String> {
        Ok(masif_daemon::metrics::encode(&self.registry))
    }
}

/// Values read when a scrape comes.
struct AtScrape {
    connections: OpenConnections,
    store: Arc<dyn Store>,
    tls: Arc<ReloadingTls>,
}

impl std::fmt::Debug for AtScrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtScrape").finish_non_exhaustive()
    }
}

impl Collector for AtScrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let retries = ConstCounter::new(self.store.retries());
        retries.encode(encoder.encode_descriptor(
            "masif_master_db_retries",
            "Database transaction attempts that conflicted (deadlock, lock wait timeout, busy) \
             or met a failed node, and were rolled back to be retried or given up",
            None,
            retries.metric_type(),
        )?)?;
        let connections =
            ConstGauge::new(i64::try_from(self.connections.get()).unwrap_or(i64::MAX));
        connections.encode(encoder.encode_descriptor(
            "masif_master_connections",
            "Agent connections open now",
            None,
            connections.metric_type(),
        )?)?;
        let problem = ConstGauge::new(i64::from(self.tls.problem().is_some()));
        problem.encode(encoder.encode_descriptor(
            "masif_master_crl_problem",
            "1 while the certificate, key or CRL files on disk cannot be used (the previous \
             ones stay in force), else 0",
            None,
            problem.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_outcomes() {
        let cases = [
            (200, "ok"),
            (400, "bad_request"),
            (403, "bad_request"),
            (404, "bad_request"),
            (405, "bad_request"),
            (408, "timeout"),
            (413, "rejected"),
            (429, "rejected"),
            (500, "error"),
            (503, "unavailable"),
        ];
        for (status, outcome) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(Outcome::of(status).as_str(), outcome, "{status}");
        }
    }

    #[test]
    fn held_reports_are_counted_until_the_guard_goes() {
        let metrics = Arc::new(ReportMetrics::new());
        let first = metrics.hold();
        let second = metrics.hold();
        assert_eq!(metrics.held_now(), 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.held_now(), 0);
    }
}

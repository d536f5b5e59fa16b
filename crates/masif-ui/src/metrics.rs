//! The UI's Prometheus metrics (served by `masif_daemon::metrics` on `metrics_listen`): fleet
//! gauges read from the database when a scrape comes, at most one set of queries per
//! [`CACHE_FOR`] however often it is scraped. A database error answers the scrape 503 (no
//! stale numbers; Prometheus' `up` turns 0).

use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;

use crate::pages::status::Now;

/// How long one set of query results answers scrapes.
pub(crate) const CACHE_FOR: Duration = Duration::from_secs(5);

/// Longest the queries of one scrape may take before it is answered 503 (scrapes waiting
/// behind it then try again).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// The fleet gauges and the last exposition.
pub(crate) struct FleetMetrics {
    store: Arc<dyn Store>,
    /// Seconds without a report after which an agent is offline (`offline_after`).
    offline_after: i64,
    /// How long one set of query results answers scrapes ([`CACHE_FOR`]).
    cache_for: Duration,
    registry: Registry,
    agents: Gauge,
    offline: Gauge,
    failing: Gauge,
    reboot_required: Gauge,
    pending: Family<ActionLabel, Gauge>,
    /// The last exposition and when its queries ran; scrapes queue here, so concurrent ones
    /// share one set of queries.
    last: Mutex<Option<(Instant, String)>>,
}

impl FleetMetrics {
    pub(crate) fn new(store: Arc<dyn Store>, offline_after: u64, cache_for: Duration) -> Self {
        let mut registry = Registry::default();
        let agents = Gauge::default();
        let offline = Gauge::default();
        let failing = Gauge::default();
        let reboot_required = Gauge::default();
        let pending = Family::<ActionLabel, Gauge>::default();
        registry.register("masif_agents", "Agents known", agents.clone());
        registry.register(
            "masif_agents_offline",
            "Agents without a report for offline_after seconds (or never seen)",
            offline.clone(),
        );
        registry.register(
            "masif_agents_failing",
            "Agents with a package whose latest run failed",
            failing.clone(),
        );
        registry.register(
            "masif_agents_reboot_required",
            "Agents whose host needs a reboot",
            reboot_required.clone(),
        );
        registry.register(
            "masif_pending_tasks",
            "Pending (not approved) task rows by action",
            pending.clone(),
        );
        Self {
            store,
            offline_after: i64::try_from(offline_after).unwrap_or(i64::MAX),
            cache_for,
            registry,
            agents,
            offline,
            failing,
            reboot_required,
            pending,
            last: Mutex::new(None),
        }
    }

    /// Reads the fleet's numbers into the gauges.
    async fn refresh(&self) -> masif_store::Result<()> {
        let now = Now::with_offline_after(self.offline_after);
        let (counts, pending) = tokio::try_join!(
            self.store.agent_counts(now.offline_before),
            self.store.pending_by_action(),
        )?;
        let set = |gauge: &Gauge, n: u64| gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        set(&self.agents, counts.agents);
        set(&self.offline, counts.offline);
        set(&self.failing, counts.failing);
        set(&self.reboot_required, counts.reboot_required);
        for (action, n) in pending {
            set(
                &self.pending.get_or_create(&ActionLabel {
                    action: action.as_str(),
                }),
                n,
            );
        }
        Ok(())
    }
}

impl masif_daemon::metrics::Exposition for FleetMetrics {
    async fn render(&self) -> Result<String, String> {
        let mut last = self.last.lock().await;
        if let Some((at, text)) = last.as_ref() {
            if at.elapsed() < self.cache_for {
                return Ok(text.clone());
            }
        }
        let started = Instant::now();
        match tokio::time::timeout(QUERY_TIMEOUT, self.refresh()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("reading the fleet's numbers: {e}")),
            Err(_) => return Err("reading the fleet's numbers took too long".into()),
        }
        let text = masif_daemon::metrics::encode(&self.registry);
        *last = Some((started, text.clone()));
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use masif_daemon::metrics::Exposition;
    use masif_proto::{AgentName, TaskSet};
    use masif_testkit::tasks::install;

    use super::*;

    async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = masif_store::sqlite::SqliteStore::open(dir.path().join("masif.db"))
            .await
            .unwrap();
        (dir, Arc::new(store))
    }

    async fn report(store: &Arc<dyn Store>, agent: &str) {
        let tasks: TaskSet = [install("nginx", "1.0")].into_iter().collect();
        store
            .report(&AgentName::new(agent).unwrap(), &tasks)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn scrapes_within_the_cache_time_share_one_set_of_queries() {
        let (_dir, store) = sqlite().await;
        report(&store, "a").await;
        let fleet = FleetMetrics::new(store.clone(), 900, Duration::from_secs(3600));
        let first = fleet.render().await.unwrap();
        assert!(first.contains("\nmasif_agents 1\n"), "{first}");
        report(&store, "b").await;
        assert_eq!(
            fleet.render().await.unwrap(),
            first,
            "answered from the cache"
        );
        let fresh = FleetMetrics::new(store, 900, Duration::ZERO);
        let second = fresh.render().await.unwrap();
        assert!(second.contains("\nmasif_agents 2\n"), "{second}");
    }

    #[tokio::test]
    async fn a_database_error_fails_the_scrape_and_is_not_cached() {
        let (dir, store) = sqlite().await;
        let fleet = FleetMetrics::new(store, 900, Duration::from_secs(3600));
        let raw = rusqlite::Connection::open(dir.path().join("masif.db")).unwrap();
        raw.execute_batch("ALTER TABLE pending_package_summary RENAME TO away")
            .unwrap();
        let err = fleet.render().await.unwrap_err();
        assert!(err.contains("fleet"), "{err}");
        raw.execute_batch("ALTER TABLE away RENAME TO pending_package_summary")
            .unwrap();
        let text = fleet.render().await.unwrap();
        assert!(
            text.contains("masif_pending_tasks{action=\"install\"} 0"),
            "{text}"
        );
    }
}

//! The MySQL/MariaDB back end: the database addresses and their pools (`nodes`), session
//! setup, migrations at connect; the report transaction lives in `report`, the UI's queries in
//! `admin`, the long-poll token and run results in `agent_loop`.

mod admin;
mod agent_loop;
mod agents;
mod approval_chunks;
mod batch;
mod changes;
mod fact_rows;
mod host_facts;
mod last_seen;
mod migrate;
mod nodes;
mod orphans;
mod overview;
mod pending_counts;
mod report;
mod rollout_steps;
mod rollouts;
mod rows;
mod runs;
mod shared;
mod snapshot;
mod sql;
mod summary;
mod url;
mod write;

pub use shared::ReportStats;
pub(crate) use sql::is_node_failure;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, PoolOpts};

use crate::backoff::Policy;
use crate::{Result, StoreError};
use nodes::{Node, Nodes};
use url::parse_url;

/// Tunables of the MySQL back end. `Default` is what `MysqlStore::connect` uses.
#[derive(Debug, Clone)]
pub struct MysqlOptions {
    /// Most connections in the pool, unless the URL says `?pool_max=N`.
    pub pool_max: usize,
    /// Attempts of a conflicting (1213/1205) report transaction before
    /// [`StoreError::RetriesExhausted`].
    pub max_attempts: u32,
    /// Session `innodb_lock_wait_timeout` in seconds (`None`: the server's default). Report
    /// transactions lock one agent's rows for a few milliseconds, so a long wait means trouble:
    /// better to fail and retry.
    pub lock_wait_timeout: Option<u32>,
    /// `last_seen` of an unchanged report is written at most this often per agent.
    pub last_seen_interval: Duration,
    /// How often the `last_seen` of unchanged reports is written (all due agents at once).
    pub last_seen_flush: Duration,
    /// Most reports inside the store at once, waiting for a batch, in one or retrying
    /// (`db.max_queued_reports`); one more fails at once with `StoreError::Overloaded`.
    pub max_queued_reports: usize,
    /// With several addresses: how long connecting (or waiting for a pooled connection) may
    /// take before the node counts as out of reach and the next address is tried.
    pub connect_timeout: Duration,
    /// Session `max_join_size` (`None`: the server's default): the server refuses (error 1104)
    /// a SELECT whose plan it estimates to cost more than this, about one unit per five rows
    /// an index or table scan reads and one per row looked up, so a read whose plan turned
    /// into a scan of a large table fails instead of loading the database. Writes
    /// (`MysqlStore::write`) and migrations are exempt.
    pub max_join_size: Option<u32>,
}

impl Default for MysqlOptions {
    fn default() -> Self {
        Self {
            pool_max: 32,
            max_attempts: 8,
            lock_wait_timeout: Some(5),
            last_seen_interval: crate::clock::LAST_SEEN_INTERVAL,
            last_seen_flush: Duration::from_secs(1),
            max_queued_reports: crate::DEFAULT_MAX_QUEUED_REPORTS,
            connect_timeout: nodes::DEFAULT_CONNECT_TIMEOUT,
            max_join_size: None,
        }
    }
}

/// A MySQL/MariaDB database holding the original three tables plus ours.
pub struct MysqlStore {
    pub(crate) nodes: Nodes,
    pub(crate) options: MysqlOptions,
    pub(crate) stats: Arc<shared::Stats>,
    pub(crate) snapshots: snapshot::Snapshots,
    pub(crate) writes: write::Writes,
    pub(crate) last_seen: last_seen::LastSeen,
    pub(crate) queue: crate::queue::ReportQueue,
}

impl fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlStore")
            .field("nodes", &self.nodes)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl MysqlStore {
    /// Connects to `url` (`mysql://user:password@host:port/database[?param=value&…]`, the
    /// database must exist) and applies any missing schema migration. Besides mysql_async's
    /// parameters (`pool_max`, `require_ssl`, …) the URL may set `max_attempts`,
    /// `lock_wait_timeout`, `last_seen_interval`, `connect_timeout` (seconds) and
    /// `max_join_size` of [`MysqlOptions`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, MysqlOptions::default()).await
    }

    /// [`MysqlStore::connect`] with explicit tunables.
    pub async fn connect_with(url: &str, options: MysqlOptions) -> Result<Self> {
        Self::connect_nodes(&[url], options).await
    }

    /// Connects to the first of `urls` that works (each as [`MysqlStore::connect`] takes it;
    /// the store's parameters are read from the first), applies any missing schema migration
    /// there, and moves to the next address that works whenever the node in use fails (see
    /// the `nodes` module). On a Galera node (`wsrep_on`) every session sets
    /// `wsrep_sync_wait = 1`, and a node counts as working only with `wsrep_ready` ON. One
    /// address behaves as [`MysqlStore::connect_with`] always did; none that works is
    /// [`StoreError::NoNodeWorks`], naming each with why.
    pub async fn connect_nodes(urls: &[&str], options: MysqlOptions) -> Result<Self> {
        let Some(first) = urls.first() else {
            return Err(StoreError::Url(String::new(), "no address given".into()));
        };
        let (_, options) = parse_url(first, options)?;
        let mut list = Vec::with_capacity(urls.len());
        for url in urls {
            let (opts, _) = parse_url(url, options.clone())?;
            list.push(Node::new(url, opts));
        }
        let (nodes, mut conn) = Nodes::connect(list, options.connect_timeout).await?;
        let migrated = migrate::run(&mut conn).await;
        if let Err(e) = conn.disconnect().await {
            tracing::debug!("closing the migration connection: {e}");
        }
        migrated?;
        Ok(Self::with_nodes(nodes, options))
    }

    /// The store on `nodes`, with the background tasks of the report path started (on the
    /// current tokio runtime).
    fn with_nodes(nodes: Nodes, options: MysqlOptions) -> Self {
        let stats = Arc::new(shared::Stats::default());
        Self {
            snapshots: snapshot::Snapshots::start(nodes.clone(), stats.clone()),
            writes: write::Writes::start(nodes.clone(), stats.clone()),
            last_seen: last_seen::LastSeen::start(
                nodes.clone(),
                stats.clone(),
                options.last_seen_flush,
            ),
            queue: crate::queue::ReportQueue::new(options.max_queued_reports),
            nodes,
            options,
            stats,
        }
    }

    /// Counters of the report path since connect.
    pub fn stats(&self) -> ReportStats {
        self.stats.snapshot()
    }

    /// Writes what is held behind (see [`crate::Reports::flush`]) and closes every pooled
    /// connection (waits for connections in use to come back).
    pub async fn disconnect(self) -> Result<()> {
        // Write what is due, and end the background tasks, which hold handles on the pool.
        self.last_seen.flush().await;
        drop((self.snapshots, self.writes, self.last_seen));
        self.nodes.disconnect().await
    }

    /// How conflicting transactions (reports and the UI's writes) are retried: at most
    /// `max_attempts` times, after pauses from 5 ms doubling up to 320 ms.
    pub(crate) fn retry_policy(&self) -> Policy {
        Policy {
            max_attempts: self.options.max_attempts,
            base: Duration::from_millis(5),
        }
    }
}

/// Connections go back to the pool without `COM_RESET_CONNECTION` (two round trips each);
/// code that leaves a transaction open on a connection switches the reset on for that one
/// connection (see `report`), so a dropped future still rolls back.
pub(crate) fn reset_only_when_asked(pool_opts: PoolOpts) -> PoolOpts {
    pool_opts.with_reset_connection(false)
}

/// Session settings applied to every new (or reset) connection: strict mode so nothing is
/// truncated silently, UTC, utf8mb4, a bounded lock wait, the plan guard if asked for
/// (`max_join_size`, which also turns `sql_big_selects` off), this store's slot of the pending
/// summary (one per store, see `summary`). The isolation level is added once
/// known (see [`check_server`]), and on Galera the sync wait (see `nodes`).
pub(crate) fn session_setup(options: &MysqlOptions) -> Vec<String> {
    let mut set = vec![
        "sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
         ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
            .to_owned(),
        "time_zone = '+00:00'".to_owned(),
        "NAMES utf8mb4".to_owned(),
    ];
    if let Some(secs) = options.lock_wait_timeout {
        set.push(format!("innodb_lock_wait_timeout = {secs}"));
    }
    if let Some(size) = options.max_join_size {
        set.push(format!("max_join_size = {size}"));
    }
    set.push(format!(
        "{} = {}",
        summary::SLOT_VARIABLE,
        summary::new_slot()
    ));
    vec![format!("SET {}", set.join(", "))]
}

/// A report of the largest body the master accepts becomes statements of up to about three
/// times its size (names are repeated in the snapshot query).
const MIN_PACKET: u64 = 4 * masif_proto::MAX_BODY_BYTES;

/// READ COMMITTED, unless the server writes a statement-based binary log, which InnoDB refuses
/// under READ COMMITTED (error 1665): then REPEATABLE READ, which costs some gap locks but
/// keeps the same guarantees (see `report`). Also warns about a `max_allowed_packet` too small
/// for the largest reports.
pub(crate) async fn check_server(conn: &mut Conn) -> Result<&'static str> {
    let (log_bin, format, packet): (i64, String, u64) = conn
        .query_first("SELECT @@log_bin, @@binlog_format, @@max_allowed_packet")
        .await
        .map_err(sql::doing("reading the server's settings"))?
        .unwrap_or((0, String::new(), MIN_PACKET));
    if packet < MIN_PACKET {
        tracing::warn!(
            "max_allowed_packet is {packet} bytes: reports near the {} byte body limit need \
             {MIN_PACKET}",
            masif_proto::MAX_BODY_BYTES
        );
    }
    if log_bin != 0 && format.eq_ignore_ascii_case("STATEMENT") {
        tracing::warn!(
            "binlog_format is STATEMENT: reports run under REPEATABLE READ (ROW or MIXED \
             allows READ COMMITTED, which avoids gap locks)"
        );
        Ok("REPEATABLE READ")
    } else {
        Ok("READ COMMITTED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_and_errors_redact_the_password() {
        let err = MysqlStore::connect("mysql://u:hunter2@127.0.0.1:1/")
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("names no database"), "{err}");
        let err = MysqlStore::connect("mysql://u:hunter2@127.0.0.1:1/db?bogus=1")
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}

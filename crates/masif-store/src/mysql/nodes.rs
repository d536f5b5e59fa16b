//! The database addresses of a MySQL store (`db.urls`): one connection pool per address, the
//! node in use, and the move to the next working address when it fails.
//!
//! The store sticks to one node. Choosing a node probes it with a fresh connection (connect
//! time bounded): its settings (see `check_server`), whether it is a Galera node
//! (`wsrep_on`), and on Galera whether it is in the primary component (`wsrep_ready`). A
//! node's pool is made at its first good probe, with the session setup that node needs: on
//! Galera every session sets `wsrep_sync_wait = 1`, so a read waits until the node has
//! applied what the cluster committed before it started (an approval written through another
//! node is seen at once).
//!
//! Nothing is checked while things work: no extra round trip on the hot path. When a
//! connection cannot be had, or a caller met a node failure (see [`is_node_failure`]: out of
//! reach, or 1047 of a node outside the primary component), the node in use is probed again,
//! and if it fails the next addresses are probed in turn (round robin) and the first good one
//! is used, with one warning naming both. One check runs at a time; a failure seen before a
//! check started is covered by it, so a batch of reports failing together causes one move.
//! With a single address nothing is probed after connect and nothing moves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::shared::DbResult;
use super::sql::{self, is_node_failure};
use crate::{redact_url, Result, StoreError};

/// How long getting a connection may take before the node counts as out of reach, unless the
/// URL says `?connect_timeout=N` (seconds).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The nodes of one store; clones share them.
#[derive(Clone)]
pub(crate) struct Nodes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.inner.nodes.iter().map(|n| n.name.as_str()).collect();
        f.debug_struct("Nodes")
            .field("addresses", &names)
            .field("current", &self.current())
            .finish()
    }
}

struct Inner {
    nodes: Vec<Node>,
    /// Index of the node in use; always one with a pool.
    current: AtomicUsize,
    /// Held while the node in use is checked or changed; when the last check started.
    checking: Mutex<Option<Instant>>,
    connect_timeout: Duration,
}

/// One address.
pub(crate) struct Node {
    /// The URL with its password redacted, for logs and errors.
    name: String,
    /// Driver options with the session setup every server gets (see `session_setup`).
    opts: Opts,
    /// Made at the node's first good probe.
    ready: OnceLock<Ready>,
}

struct Ready {
    pool: Pool,
    galera: bool,
}

impl Node {
    /// The node at `url`, whose driver options `opts` hold the common session setup.
    pub(crate) fn new(url: &str, opts: OptsBuilder) -> Self {
        Self {
            name: redact_url(url),
            opts: opts.into(),
            ready: OnceLock::new(),
        }
    }
}

/// What a probe found wrong, or the connection it made.
type Probe = Result<Conn>;

impl Nodes {
    /// Chooses the first address that works (in the order given), and hands back the probe's
    /// connection for the migrations. If none works: with one address its error as it is,
    /// otherwise [`StoreError::NoNodeWorks`] naming every address and why.
    pub(crate) async fn connect(
        nodes: Vec<Node>,
        connect_timeout: Duration,
    ) -> Result<(Self, Conn)> {
        let nodes = Self {
            inner: Arc::new(Inner {
                nodes,
                current: AtomicUsize::new(0),
                checking: Mutex::new(None),
                connect_timeout,
            }),
        };
        let mut failures = Vec::new();
        for (i, node) in nodes.inner.nodes.iter().enumerate() {
            match nodes.probe(i).await {
                Ok(conn) => {
                    nodes.inner.current.store(i, Ordering::SeqCst);
                    if !failures.is_empty() {
                        tracing::warn!(
                            "database {} not usable, using {}",
                            failures.join("; "),
                            node.name
                        );
                    }
                    return Ok((nodes, conn));
                }
                Err(e) if nodes.inner.nodes.len() == 1 => return Err(e),
                Err(e) => failures.push(format!("{}: {e}", node.name)),
            }
        }
        Err(StoreError::NoNodeWorks(failures.join("; ")))
    }

    fn current(&self) -> usize {
        self.inner.current.load(Ordering::SeqCst)
    }

    /// A connection of the node in use. If it cannot be had because the node is out of reach,
    /// the store moves to the next working address and takes one there.
    pub(crate) async fn get_conn(&self) -> DbResult<Conn> {
        let count = self.inner.nodes.len();
        let mut moves = 0;
        loop {
            let i = self.current();
            let Some(ready) = self.inner.nodes[i].ready.get() else {
                return Err(not_ready());
            };
            let err = if count == 1 {
                // One address: as without failover, no deadline of ours.
                return ready.pool.get_conn().await;
            } else {
                match tokio::time::timeout(self.inner.connect_timeout, ready.pool.get_conn()).await
                {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err(e)) if !is_node_failure(&e) => return Err(e),
                    Ok(Err(e)) => e,
                    Err(_) => timed_out(self.inner.connect_timeout),
                }
            };
            moves += 1;
            self.check(Instant::now(), &err).await;
            if moves >= count || self.current() == i {
                return Err(err);
            }
        }
    }

    /// After a node failure (`err`, seen at `seen`): checks the node in use and moves to the
    /// next working one if it fails, unless a check that started after `seen` did so already.
    pub(crate) async fn check(&self, seen: Instant, err: &(dyn std::fmt::Display + Sync)) {
        if self.inner.nodes.len() == 1 {
            return;
        }
        let mut last = self.inner.checking.lock().await;
        if last.is_some_and(|started| started >= seen) {
            return;
        }
        *last = Some(Instant::now());
        let from = self.current();
        let why = match self.probe(from).await {
            Ok(conn) => {
                close(conn);
                tracing::debug!(
                    "database {} still works after: {err}",
                    self.inner.nodes[from].name
                );
                return;
            }
            Err(why) => why,
        };
        let count = self.inner.nodes.len();
        let mut others = Vec::new();
        for step in 1..count {
            let to = (from + step) % count;
            match self.probe(to).await {
                Ok(conn) => {
                    close(conn);
                    self.inner.current.store(to, Ordering::SeqCst);
                    tracing::warn!(
                        "database {} failed ({why}); moved to {}",
                        self.inner.nodes[from].name,
                        self.inner.nodes[to].name
                    );
                    return;
                }
                Err(e) => others.push(format!("{}: {e}", self.inner.nodes[to].name)),
            }
        }
        tracing::warn!(
            "database {} failed ({why}) and no other address works ({})",
            self.inner.nodes[from].name,
            others.join("; ")
        );
    }

    /// [`Nodes::check`] in the background, for callers that do not retry (the UI's reads).
    pub(crate) fn check_later(&self, err: &StoreError) {
        if self.inner.nodes.len() > 1 {
            let (nodes, seen, err) = (self.clone(), Instant::now(), err.to_string());
            tokio::spawn(async move { nodes.check(seen, &err).await });
        }
    }

    /// A fresh connection to node `i` (connect time bounded) that is fit to use: on its first
    /// good probe the node's pool is made with the session setup it needs.
    async fn probe(&self, i: usize) -> Probe {
        let node = &self.inner.nodes[i];
        let connecting = format!("connecting to {}", node.name);
        let mut conn =
            match tokio::time::timeout(self.inner.connect_timeout, Conn::new(node.opts.clone()))
                .await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return Err(sql::db_error(connecting, e)),
                Err(_) => {
                    return Err(sql::db_error(
                        connecting,
                        timed_out(self.inner.connect_timeout),
                    ))
                }
            };
        let checked = async {
            let galera = match node.ready.get() {
                Some(ready) => ready.galera,
                None => {
                    let isolation = super::check_server(&mut conn).await?;
                    let galera = variable(&mut conn, "SHOW VARIABLES LIKE 'wsrep_on'").await?;
                    let mut setup = node.opts.setup().to_vec();
                    setup.push(format!(
                        "SET SESSION TRANSACTION ISOLATION LEVEL {isolation}"
                    ));
                    if galera {
                        setup.push("SET SESSION wsrep_sync_wait = 1".to_owned());
                    }
                    let opts = OptsBuilder::from_opts(node.opts.clone()).setup(setup);
                    let _ = node.ready.set(Ready {
                        pool: Pool::new(opts),
                        galera,
                    });
                    galera
                }
            };
            if galera && !variable(&mut conn, "SHOW STATUS LIKE 'wsrep_ready'").await? {
                return Err(StoreError::NodeNotReady);
            }
            Ok(())
        }
        .await;
        match checked {
            Ok(()) => Ok(conn),
            Err(e) => {
                close(conn);
                Err(e)
            }
        }
    }

    /// Closes every pool (waits for connections in use to come back).
    pub(crate) async fn disconnect(self) -> Result<()> {
        let mut outcome = Ok(());
        for node in &self.inner.nodes {
            if let Some(ready) = node.ready.get() {
                let closed = ready.pool.clone().disconnect().await;
                if outcome.is_ok() {
                    outcome = closed.map_err(sql::doing("closing the connection pool"));
                }
            }
        }
        outcome
    }
}

/// Whether the `SHOW VARIABLES`/`SHOW STATUS` line `show` asks for says `ON` (no line: no).
async fn variable(conn: &mut Conn, show: &'static str) -> Result<bool> {
    let row: Option<(String, String)> = conn
        .query_first(show)
        .await
        .map_err(sql::doing("reading the Galera state"))?;
    Ok(row.is_some_and(|(_, value)| value.eq_ignore_ascii_case("ON")))
}

/// Closes a probe's connection without waiting.
fn close(conn: Conn) {
    tokio::spawn(async move {
        if let Err(e) = conn.disconnect().await {
            tracing::debug!("closing a probe connection: {e}");
        }
    });
}

/// The error of a connection attempt that took longer than `limit`: out of reach.
fn timed_out(limit: Duration) -> mysql_async::Error {
    mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no connection within {} s", limit.as_secs_f32()),
    )))
}

/// A node in use without a pool: cannot happen (a node is used only after a good probe).
fn not_ready() -> mysql_async::Error {
    mysql_async::Error::Other("the database node in use has no connection pool".into())
}

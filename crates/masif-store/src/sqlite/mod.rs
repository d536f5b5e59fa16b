//! The embedded SQLite back end: one file, WAL mode so master and UI may be separate processes
//! on one host, one writer connection and a few readers per process, every call run on tokio's
//! blocking pool, and bounded retries when another process holds the write lock.

mod admin;
mod agent_loop;
mod agents;
mod conn;
mod host_facts;
mod last_seen;
mod migrate;
mod orphans;
mod overview;
mod pending_counts;
mod report;
mod rollouts;
mod rows;
mod runs;
mod summary;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::backoff::{Backoff, Failure};
use crate::clock::LAST_SEEN_INTERVAL;
use crate::{Result, StoreError};

/// Most idle reader connections kept open per process.
const MAX_IDLE_READERS: usize = 4;

/// A Masif Upgrader database in one SQLite file. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Every write of this process goes through this one connection, so writers of one process
    /// queue here instead of contending for SQLite's lock.
    writer: Mutex<Connection>,
    /// Idle read connections (WAL readers never block the writer, nor it them).
    readers: Mutex<Vec<Connection>>,
    /// How old `last_seen` may get before an unchanged report marks it due again.
    last_seen_interval: std::sync::atomic::AtomicU64,
    /// Agents whose `last_seen` is due, written behind the reports.
    last_seen_due: last_seen::Due,
    /// The bound on reports waiting for the database (`db.max_queued_reports`).
    queue: crate::queue::ReportQueue,
    /// Transaction attempts that found the database busy (see `Reports::retries`).
    conflicts: AtomicU64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, switches it to WAL mode and
    /// applies the pending migrations of `schema/sqlite/`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let store = tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|source| StoreError::Task {
                doing: "opening the sqlite database",
                source,
            })??;
        tokio::spawn(last_seen::flush_every(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    /// Opens the database of a `sqlite:///absolute/path` URL (see [`SqliteStore::open`]).
    pub async fn open_url(url: &str) -> Result<Self> {
        Self::open(path_from_url(url)?).await
    }

    fn open_blocking(path: PathBuf) -> Result<Self> {
        let mut writer = conn::open_connection(&path)?;
        conn::enable_wal(&writer, &path)?;
        migrate::migrate(&mut writer, &path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                last_seen_interval: LAST_SEEN_INTERVAL.as_secs().into(),
                last_seen_due: last_seen::Due::default(),
                queue: crate::queue::ReportQueue::new(crate::DEFAULT_MAX_QUEUED_REPORTS),
                conflicts: AtomicU64::new(0),
            }),
        })
    }

    /// Sets how old an agent's `last_seen` may get before an unchanged report writes it again
    /// (default 60 s; the MySQL back end's `last_seen_interval` URL parameter). The UI's
    /// offline mark is only as sharp as this.
    pub fn set_last_seen_interval(&self, interval: std::time::Duration) {
        self.inner
            .last_seen_interval
            .store(interval.as_secs(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Transaction attempts that found the database busy since it was opened.
    pub(crate) fn conflicts(&self) -> u64 {
        self.inner.conflicts.load(Ordering::Relaxed)
    }

    /// Sets how many reports may wait for the database at once (default
    /// [`crate::DEFAULT_MAX_QUEUED_REPORTS`]); one more fails at once with
    /// [`StoreError::Overloaded`]. Reports already waiting stay.
    pub fn set_max_queued_reports(&self, limit: usize) {
        self.inner.queue.set_limit(limit);
    }

    fn last_seen_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.inner
                .last_seen_interval
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`, so the write lock is taken up front
    /// and a busy database shows at the start, never halfway) on the blocking pool, retrying
    /// the whole transaction while another process holds the lock.
    async fn write<T, F>(&self, doing: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            // A panic in another writer cannot leave a transaction open: rusqlite's
            // `Transaction` rolls back when dropped, also while unwinding.
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            with_retries(
                &mut conn,
                TransactionBehavior::Immediate,
                doing,
                &inner.conflicts,
                f,
            )
        })
        .await
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on a reader connection.
    async fn read<T, F>(&self, doing: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let idle = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let mut conn = match idle {
                Some(conn) => conn,
                None => conn::open_connection(&inner.path)?,
            };
            let result = with_retries(
                &mut conn,
                TransactionBehavior::Deferred,
                doing,
                &inner.conflicts,
                f,
            );
            if let Ok(mut idle) = inner.readers.lock() {
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(conn);
                }
            }
            result
        })
        .await
    }
}

/// The file of a `sqlite:///absolute/path` URL. Relative paths are refused: a daemon's working
/// directory is no place to guess a database from.
pub(crate) fn path_from_url(url: &str) -> Result<PathBuf> {
    let bad = |why: &str| StoreError::Url(url.to_owned(), why.to_owned());
    let path = url
        .strip_prefix("sqlite://")
        .ok_or_else(|| bad("expected sqlite:///absolute/path"))?;
    if !path.starts_with('/') {
        return Err(bad("expected sqlite:///absolute/path (three slashes)"));
    }
    if path.ends_with('/') {
        return Err(bad("names a directory, not a database file"));
    }
    if path.contains(['?', '#']) {
        return Err(bad("takes no parameters"));
    }
    Ok(PathBuf::from(path))
}

async fn run_blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| StoreError::Task {
            doing: "running a sqlite transaction",
            source,
        })?
}

/// One transaction of `behavior` around `f`, tried again (see [`conn::RETRY`]) while SQLite
/// reports the database busy or locked, counting each such attempt in `conflicts`. `doing` says
/// what the transaction is for.
fn with_retries<T, F>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    doing: &'static str,
    conflicts: &AtomicU64,
    mut f: F,
) -> Result<T>
where
    F: FnMut(&Transaction<'_>) -> Result<T, Failure>,
{
    let mut backoff = Backoff::new(conn::RETRY);
    loop {
        let outcome = conn
            .transaction_with_behavior(behavior)
            .map_err(Failure::from)
            .and_then(|tx| {
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            });
        match outcome {
            Ok(value) => return Ok(value),
            Err(failure) => {
                if let Failure::Conflict(_) = &failure {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(backoff.after(failure.while_doing(doing), doing)?)
            }
        }
    }
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

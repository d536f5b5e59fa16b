//! Opening SQLite connections with the settings every connection needs, and telling a busy
//! database (retry) from every other failure.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::StoreError;

/// How long one statement waits for another process's lock before SQLite reports it busy.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a transaction failed: `Busy` is worth another attempt, `Other` is not.
#[derive(Debug)]
pub(super) enum Failure {
    Busy(rusqlite::Error),
    Other(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        if is_busy(&e) {
            Failure::Busy(e)
        } else {
            Failure::Other(db_error(e))
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Other(e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

pub(super) fn db_error(e: rusqlite::Error) -> StoreError {
    StoreError::Database(format!("sqlite: {e}"))
}

/// Opens one connection to `path` (creating the file) with the busy timeout set.
pub(super) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let opening =
        |e: rusqlite::Error| StoreError::Database(format!("sqlite {}: {e}", path.display()));
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(opening)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(opening)?;
    // WAL makes NORMAL durable against application crashes; only a power loss may lose the
    // last transactions, never corrupt the file.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(opening)?;
    Ok(conn)
}

/// Switches the file to write-ahead logging (persistent), so readers in one process never
/// block the writer in another. Fails if the file system cannot do it.
pub(super) fn enable_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    // The switch needs an exclusive lock, and SQLite answers "database is locked" at once
    // instead of waiting through the busy handler when several processes open a new file at
    // the same moment: retry busy answers for up to `BUSY_TIMEOUT`.
    let started = std::time::Instant::now();
    let mut attempt = 0;
    let mode: String = loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Ok(mode) => break mode,
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                attempt += 1;
                std::thread::sleep(retry_pause(attempt));
            }
            Err(e) => {
                return Err(StoreError::Database(format!(
                    "sqlite {}: {e}",
                    path.display()
                )))
            }
        }
    };
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "sqlite {}: cannot switch to WAL mode (journal mode is {mode})",
            path.display()
        )))
    }
}

/// Pause before attempt `attempt + 1`: short and growing, with jitter so two processes that
/// collided do not collide again in step.
pub(super) fn retry_pause(attempt: u32) -> Duration {
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % 20)
        .unwrap_or(0);
    Duration::from_millis(25 * u64::from(attempt) + jitter)
}

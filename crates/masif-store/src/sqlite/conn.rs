//! Opening SQLite connections with the settings every connection needs, and telling a busy
//! database (retry) from every other failure.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::backoff::{Backoff, Failure, Policy};
use crate::StoreError;

/// How long one statement waits for another process's lock before SQLite reports it busy.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(3);

/// How a transaction is retried while another process holds the lock (each attempt already
/// waits up to [`BUSY_TIMEOUT`] for it): five attempts, pauses from 25 ms doubling.
pub(super) const RETRY: Policy = Policy {
    max_attempts: 5,
    base: Duration::from_millis(25),
};

/// SQLite errors met inside a transaction attempt: a busy or locked database is worth another
/// one. What was being done is said where the transaction ends (`Failure::while_doing`).
impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        if is_busy(&e) {
            Failure::Conflict(StoreError::sqlite("", e))
        } else {
            Failure::Fatal(StoreError::sqlite("", e))
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Opens one connection to `path` (creating the file) with the busy timeout set.
pub(super) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let opening = |e: rusqlite::Error| StoreError::sqlite(format!("opening {}", path.display()), e);
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
    // the same moment: retry busy answers (pauses adding up to about `BUSY_TIMEOUT`).
    let doing = || format!("switching {} to WAL mode", path.display());
    let mut backoff = Backoff::new(Policy {
        max_attempts: 8,
        base: Duration::from_millis(25),
    });
    let mode: String = loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Ok(mode) => break mode,
            Err(e) => {
                let failure = Failure::from(e).while_doing(doing());
                std::thread::sleep(backoff.after(failure, "switching to WAL mode")?);
            }
        }
    };
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::Schema(format!(
            "{}: cannot switch to WAL mode (journal mode is {mode})",
            path.display()
        )))
    }
}

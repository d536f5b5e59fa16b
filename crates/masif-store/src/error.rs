//! The store's one error type: what was being done, with the driver's error kept as the source.

use std::borrow::Cow;
use std::sync::Arc;

/// Errors of the store. `Display` is safe to log: it never contains a password. It says what
/// was being done and ends with the driver's message (master and UI log `Display` only);
/// `source()` and the variants' fields give the driver's error itself (its code, its kind).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A database URL this store cannot use: the URL (password redacted) and why.
    #[error("database url {0}: {1}")]
    Url(String, String),
    /// The MySQL/MariaDB server or driver failed. The error is shared when one query answered
    /// several reports.
    #[error("mysql: {doing}: {source}")]
    Mysql {
        doing: Cow<'static, str>,
        #[source]
        source: Arc<mysql_async::Error>,
    },
    /// None of a store's database addresses (`db.urls`) works: each (password redacted) and
    /// why.
    #[error("no database address works: {0}")]
    NoNodeWorks(String),
    /// A Galera node outside the primary component (`wsrep_ready` is OFF).
    #[error("wsrep_ready is OFF: the Galera node is not in the primary component")]
    NodeNotReady,
    /// SQLite failed.
    #[error("sqlite: {doing}: {source}")]
    Sqlite {
        doing: Cow<'static, str>,
        #[source]
        source: rusqlite::Error,
    },
    /// A numbered schema migration failed.
    #[error("schema migration {version}: {source}")]
    Migration {
        version: u32,
        #[source]
        source: Box<StoreError>,
    },
    /// The schema cannot be brought up to date (newer than this program, migrations out of
    /// order, another process migrating for too long).
    #[error("schema: {0}")]
    Schema(String),
    /// Other transactions kept getting in the way; `last` is the last conflict.
    #[error("transaction still conflicting after {attempts} attempts: {last}")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<StoreError>,
    },
    /// Input the store refuses (the caller's fault): the reason, fit to show to the caller.
    #[error("{0}")]
    Invalid(String),
    /// A stored row no valid value can be read from (another tool wrote it).
    #[error("unreadable stored {0}")]
    Unreadable(String),
    /// Rows the transaction relied on were deleted by another one meanwhile (a reset).
    #[error("{0} deleted meanwhile")]
    Vanished(String),
    /// A background task of the store ended abnormally.
    #[error("{doing}: {source}")]
    Task {
        doing: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The store was closed; nothing more is done.
    #[error("the store was closed")]
    Closed,
    /// As many reports as the store may hold (`limit`, `db.max_queued_reports`) were already
    /// waiting for the database; this one was refused at once, nothing was written.
    #[error("{limit} reports already wait for the database")]
    Overloaded { limit: usize },
}

impl StoreError {
    /// Whether the same call may well succeed later: the database is busy (conflicts kept
    /// coming, too many reports wait) or out of reach (connection refused or lost, server
    /// shutting down). The master answers these with 503 and `Retry-After`. A report that
    /// failed so may or may not have been written; sending it again is harmless.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RetriesExhausted { .. }
            | Self::Overloaded { .. }
            | Self::NoNodeWorks(_)
            | Self::NodeNotReady => true,
            Self::Mysql { source, .. } => crate::mysql::is_node_failure(source),
            Self::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    /// A SQLite error met while doing `doing`.
    pub(crate) fn sqlite(doing: impl Into<Cow<'static, str>>, source: rusqlite::Error) -> Self {
        Self::Sqlite {
            doing: doing.into(),
            source,
        }
    }

    /// This error, saying it happened while doing `doing` if it does not say what yet (driver
    /// errors converted by `?` deep inside a transaction get their context at its boundary).
    pub(crate) fn while_doing(self, doing: impl Into<Cow<'static, str>>) -> Self {
        let doing = doing.into();
        match self {
            Self::Mysql { doing: d, source } if d.is_empty() => Self::Mysql { doing, source },
            Self::Sqlite { doing: d, source } if d.is_empty() => Self::Sqlite { doing, source },
            Self::RetriesExhausted { attempts, last } => Self::RetriesExhausted {
                attempts,
                last: Box::new(last.while_doing(doing)),
            },
            other => other,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn driver_errors_are_kept_as_the_source() {
        let driver = rusqlite::Error::InvalidQuery;
        let err = StoreError::sqlite("", driver).while_doing("listing agents");
        assert!(
            err.to_string().starts_with("sqlite: listing agents: "),
            "{err}"
        );
        let source = err.source().expect("a source");
        assert!(source.downcast_ref::<rusqlite::Error>().is_some());
        // A context already given is kept.
        let err = StoreError::sqlite("approving", rusqlite::Error::InvalidQuery)
            .while_doing("something else");
        assert!(err.to_string().starts_with("sqlite: approving: "), "{err}");
    }
}

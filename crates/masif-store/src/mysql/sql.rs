//! Small helpers of the MySQL back end: SQL literals for batched text queries and the mapping
//! of driver errors to `StoreError` and to a failed attempt of a transaction.

use std::borrow::Cow;
use std::sync::Arc;

use mysql_async::{Error, Value};

use crate::backoff::Failure;
use crate::StoreError;

/// Deadlock: the whole transaction was rolled back (Galera reports a conflicting commit so).
pub(crate) const ER_LOCK_DEADLOCK: u16 = 1213;
/// Lock wait timeout: only the statement was rolled back.
pub(crate) const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// On a Galera node outside the primary component (`wsrep_ready` OFF): "WSREP has not yet
/// prepared node for application use". Nothing was done; another node may do it.
pub(crate) const ER_WSREP_NOT_READY: u16 = 1047;

/// Errors the server raises for values a column cannot hold (strict mode): data too long,
/// incorrect string value (a character the column's charset lacks), out of range, truncated.
const VALUE_ERRORS: [u16; 4] = [1406, 1366, 1264, 1265];

/// `value` as an SQL literal. Safe because every session runs without
/// `NO_BACKSLASH_ESCAPES` and in utf8mb4 (see `session_setup`), the combination the escaping
/// is written for; batching values into one text query saves a round trip per row.
pub(crate) fn lit(value: impl Into<Value>) -> String {
    value.into().as_sql(false)
}

/// `(a, b, c)` of literals, for `IN` lists and `VALUES` rows.
pub(crate) fn tuple<I, V>(values: I) -> String
where
    I: IntoIterator<Item = V>,
    V: Into<Value>,
{
    let items: Vec<String> = values.into_iter().map(lit).collect();
    format!("({})", items.join(", "))
}

/// The server error code, if `err` is one.
pub(crate) fn server_code(err: &Error) -> Option<u16> {
    match err {
        Error::Server(e) => Some(e.code),
        _ => None,
    }
}

/// Server errors of a server that cannot serve this connection now: too many connections,
/// shutdown in progress, connection killed (MariaDB 1927), idle connection closed (4031).
const UNREACHABLE_CODES: [u16; 4] = [1040, 1053, 1927, 4031];

/// Whether `err` says the server is out of reach (refused or lost connection, a server going
/// down) rather than that the request was wrong: worth trying again later.
pub(crate) fn is_unreachable(err: &Error) -> bool {
    use mysql_async::{DriverError, IoError};
    match err {
        Error::Io(IoError::Io(_)) | Error::Driver(DriverError::ConnectionClosed) => true,
        Error::Server(e) => UNREACHABLE_CODES.contains(&e.code),
        _ => false,
    }
}

/// Whether `err` says the node cannot serve: out of reach, or a Galera node that left the
/// primary component (1047). The store then checks the node in use and moves to another
/// address if it fails (see `nodes`), and the work is worth trying again there.
pub(crate) fn is_node_failure(err: &Error) -> bool {
    is_unreachable(err) || server_code(err) == Some(ER_WSREP_NOT_READY)
}

/// Whether the transaction should be retried from the start.
pub(crate) fn is_conflict(err: &Error) -> bool {
    matches!(
        server_code(err),
        Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT)
    )
}

/// Whether `err` is a driver error that [`is_node_failure`].
pub(crate) fn store_error_is_node_failure(err: &StoreError) -> bool {
    matches!(err, StoreError::Mysql { source, .. } if is_node_failure(source))
}

/// Whether a failed attempt failed on a node failure (see [`is_node_failure`]).
pub(crate) fn node_failed(failure: &Failure) -> bool {
    matches!(failure, Failure::Conflict(e) if store_error_is_node_failure(e))
}

/// The store's error for a driver error met while doing `doing`: values the columns cannot
/// hold are the caller's fault (`Invalid`, which the master answers with a 400), everything
/// else is a database failure.
pub(crate) fn db_error(doing: impl Into<Cow<'static, str>>, err: Error) -> StoreError {
    shared_error(doing, Arc::new(err))
}

/// [`db_error`] for an error one query's reports share.
pub(crate) fn shared_error(doing: impl Into<Cow<'static, str>>, err: Arc<Error>) -> StoreError {
    match &*err {
        Error::Server(e) if VALUE_ERRORS.contains(&e.code) => {
            StoreError::Invalid(format!("value not storable: {}", e.message))
        }
        _ => StoreError::Mysql {
            doing: doing.into(),
            source: err,
        },
    }
}

/// [`db_error`] as a closure, for `map_err`.
pub(crate) fn doing(doing: &'static str) -> impl FnOnce(Error) -> StoreError {
    move |e| db_error(doing, e)
}

/// A failed attempt of a transaction: a deadlock or lock wait timeout (Galera: a certification
/// conflict) is worth another one, and so is a node failure (on the node the store moves to).
pub(crate) fn attempt_failed(err: StoreError) -> Failure {
    let conflict = matches!(
        &err,
        StoreError::Mysql { source, .. } if is_conflict(source) || is_node_failure(source)
    );
    if conflict {
        Failure::Conflict(err)
    } else {
        Failure::Fatal(err)
    }
}

/// Driver errors met inside a transaction attempt; what was being done is said where the
/// transaction ends (`Failure::while_doing`).
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        attempt_failed(db_error("", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(lit("a'b"), r"'a\'b'");
        assert_eq!(
            lit(r"a\'; DROP TABLE task; --"),
            r"'a\\\'; DROP TABLE task; --'"
        );
        assert_eq!(lit(Option::<String>::None), "NULL");
        assert_eq!(lit(7u64), "7");
        assert_eq!(tuple(["x", "y"]), "('x', 'y')");
    }
}

//! Small helpers of the MySQL back end: SQL literals for batched text queries and the mapping
//! of driver errors to `StoreError`.

use mysql_async::{Error, Value};

use crate::StoreError;

/// Deadlock: the whole transaction was rolled back (Galera reports a conflicting commit so).
pub(crate) const ER_LOCK_DEADLOCK: u16 = 1213;
/// Lock wait timeout: only the statement was rolled back.
pub(crate) const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

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

/// Whether the transaction should be retried from the start.
pub(crate) fn is_conflict(err: &Error) -> bool {
    matches!(
        server_code(err),
        Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT)
    )
}

/// Maps a driver error: values the columns cannot hold are the caller's fault (`Invalid`,
/// which the master answers with a 400), everything else is a database failure.
pub(crate) fn db_error(err: impl std::borrow::Borrow<Error>) -> StoreError {
    let err = err.borrow();
    match err {
        Error::Server(e) if VALUE_ERRORS.contains(&e.code) => {
            StoreError::Invalid(format!("value not storable: {}", e.message))
        }
        _ => StoreError::Database(err.to_string()),
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

//! The store's clock: every time column holds unix seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now in unix seconds, the unit of every time column.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

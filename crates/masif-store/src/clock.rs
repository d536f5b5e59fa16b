//! The store's clock: every time column holds unix seconds. Also the one rule, shared by both
//! back ends, of when an unchanged report writes the agent's `last_seen` again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a stored `last_seen` may get before an unchanged report writes it again (the MySQL
/// back end takes another value from its URL's `last_seen_interval`).
pub(crate) const LAST_SEEN_INTERVAL: Duration = Duration::from_secs(60);

/// Now in unix seconds, the unit of every time column.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether an unchanged report at `now` writes `last_seen`: when none is stored, or the stored
/// one is at least `interval` old. One ahead of this clock (another master's) is fresh.
pub(crate) fn last_seen_due(last_seen: Option<i64>, now: i64, interval: Duration) -> bool {
    let interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
    last_seen.is_none_or(|seen| now.saturating_sub(seen) >= interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_is_due_after_the_interval() {
        let i = Duration::from_secs(60);
        assert!(last_seen_due(None, 1000, i));
        assert!(!last_seen_due(Some(1000), 1000, i));
        assert!(!last_seen_due(Some(941), 1000, i));
        assert!(last_seen_due(Some(940), 1000, i));
        assert!(!last_seen_due(Some(2000), 1000, i), "ahead of this clock");
    }
}

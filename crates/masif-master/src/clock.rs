//! The master's clock for the roll-out controls: "now" in unix seconds for maintenance
//! windows, leases and roll-out soak times. The system clock in production; a manual clock
//! that tests set and advance, so windows open and leases expire when a test says so.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Where the master reads "now" (unix seconds). Cheap to clone; clones share the time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's clock.
    #[default]
    System,
    /// A time that only moves when told to (tests).
    Manual(ManualClock),
}

/// A clock that stands still until [`ManualClock::set`] or [`ManualClock::advance`] moves it;
/// waiters wake as soon as it does. Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<watch::Sender<i64>>);

impl ManualClock {
    /// A clock standing at `now` (unix seconds).
    pub fn new(now: i64) -> Self {
        Self(Arc::new(watch::Sender::new(now)))
    }

    pub fn now(&self) -> i64 {
        *self.0.borrow()
    }

    /// Moves the clock to `now` (backwards too).
    pub fn set(&self, now: i64) {
        self.0.send_replace(now);
    }

    /// Moves the clock `secs` seconds on.
    pub fn advance(&self, secs: i64) {
        self.0.send_modify(|now| *now = now.saturating_add(secs));
    }
}

/// Longest single sleep of [`Clock::sleep_until`] on the system clock, so that a clock set
/// forwards is noticed within this time.
const SYSTEM_NAP: Duration = Duration::from_secs(30);

impl Clock {
    /// A manual clock standing at `now`, and the handle that moves it.
    pub fn manual(now: i64) -> (Self, ManualClock) {
        let manual = ManualClock::new(now);
        (Clock::Manual(manual.clone()), manual)
    }

    /// Now in unix seconds.
    pub fn now(&self) -> i64 {
        match self {
            Clock::System => system_now().as_secs() as i64,
            Clock::Manual(manual) => manual.now(),
        }
    }

    /// Returns once [`Clock::now`] is at least `at`.
    pub async fn sleep_until(&self, at: i64) {
        match self {
            Clock::System => loop {
                let now = system_now();
                let Some(left) = Duration::from_secs(at.max(0) as u64).checked_sub(now) else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(SYSTEM_NAP)).await;
            },
            Clock::Manual(manual) => {
                let mut time = manual.0.subscribe();
                // The sender lives as long as `manual`, which this borrow keeps.
                let _ = time.wait_for(|now| *now >= at).await;
            }
        }
    }
}

fn system_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_its_sleepers_when_moved() {
        let (clock, hand) = Clock::manual(1_000);
        assert_eq!(clock.now(), 1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(1_060).await }
        });
        hand.advance(30);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        hand.set(1_060);
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now(), 1_060);
        clock.sleep_until(900).await;
    }

    #[tokio::test]
    async fn the_system_clock_returns_at_once_for_the_past() {
        let clock = Clock::System;
        let now = clock.now();
        assert!(now > 1_700_000_000);
        tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(now - 10))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(now + 1))
            .await
            .unwrap();
    }
}

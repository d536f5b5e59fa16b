//! The masters a [`MasterClient`](super::MasterClient) may talk to (`master.host` or
//! `master.hosts`): the one in use, chosen at random at start (a fleet spreads across the list)
//! and kept until a request to it fails; the next one to try when it does; the random pause
//! before that (a fleet whose master died does not stampede the next); and what each master
//! speaks (the fall-back to v1 is decided per master).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use masif_proto::PENDING_TASKS_PATH;
use rand::Rng;

/// Longest pause before a request goes to the next master.
pub(crate) const MAX_SWITCH_PAUSE: Duration = Duration::from_secs(3);
/// How long a master that answered 404 on v2 is spoken to with v1 before v2 is tried again.
pub(super) const V1_RECHECK: Duration = Duration::from_secs(3600);

/// One master of the list and the protocol it speaks.
#[derive(Debug)]
pub(super) struct Master {
    /// `name:port`.
    pub(super) host: String,
    /// Until when it is spoken to with v1 (it answered 404 on v2 before that).
    pub(super) v1_until: Mutex<Option<Instant>>,
    /// The fall-back to v1 was logged at info (later ones go to debug).
    fallback_logged: AtomicBool,
}

impl Master {
    fn new(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            v1_until: Mutex::new(None),
            fallback_logged: AtomicBool::new(false),
        }
    }

    /// Whether the next request uses protocol v2: always, unless this master answered 404 on
    /// v2 within the last hour.
    pub(super) fn speaks_v2(&self) -> bool {
        let until = self.v1_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_none_or(|t| Instant::now() >= t)
    }

    /// It answered 404 on `path`: speak v1 to it for an hour, saying so once at info.
    pub(super) fn fall_back(&self, path: &str) {
        *self.v1_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + V1_RECHECK);
        if self.fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(host = %self.host, path, "the master still speaks protocol v1 only");
        } else {
            tracing::info!(
                host = %self.host,
                path,
                "the master answered 404: it speaks protocol v1 only; reporting to {PENDING_TASKS_PATH} \
                 without waiting for approvals or sending run results, trying v2 again in an hour"
            );
        }
    }

    /// A v2 report was answered: if it spoke v1 before, say that it speaks v2 now.
    pub(super) fn v2_answered(&self) {
        let before = self
            .v1_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if before.is_some() {
            tracing::info!(host = %self.host, "the master speaks protocol v2 now");
            self.fallback_logged.store(false, Ordering::Relaxed);
        }
    }
}

/// The list and the one in use.
#[derive(Debug)]
pub(super) struct Masters {
    list: Vec<Master>,
    in_use: AtomicUsize,
}

impl Masters {
    /// `hosts` (at least one), the one in use drawn with `rng`.
    pub(super) fn new(hosts: &[&str], rng: &mut impl Rng) -> Self {
        assert!(!hosts.is_empty(), "checked by the caller");
        Self {
            list: hosts.iter().map(|h| Master::new(h)).collect(),
            in_use: AtomicUsize::new(rng.random_range(0..hosts.len())),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// The index of the master in use.
    pub(super) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    pub(super) fn get(&self, index: usize) -> &Master {
        &self.list[index]
    }

    pub(super) fn hosts(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|m| m.host.as_str())
    }

    /// Master `failed` did not answer a request that has tried the masters marked in
    /// `tried`: the one to try next, now the one in use (the one in use, if a concurrent
    /// request already moved on to one this request has not tried, else the first untried
    /// after `failed` in list order); `None` when every master was tried.
    pub(super) fn next(&self, failed: usize, tried: &[bool]) -> Option<usize> {
        let in_use = self.in_use();
        if in_use != failed && !tried[in_use] {
            return Some(in_use);
        }
        let n = self.list.len();
        let next = (1..n).map(|k| (failed + k) % n).find(|&i| !tried[i])?;
        self.in_use.store(next, Ordering::Relaxed);
        Some(next)
    }
}

/// The pause before a request goes to the next master: uniform in `0..=max`.
pub(super) fn switch_pause(max: Duration, rng: &mut impl Rng) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(rng.random_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const HOSTS: [&str; 3] = ["m1:8150", "m2:8150", "m3:8150"];

    #[test]
    fn the_first_master_is_drawn_at_random_from_the_whole_list() {
        let mut rng = StdRng::seed_from_u64(17);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            let m = Masters::new(&HOSTS, &mut rng);
            seen[m.in_use()] += 1;
        }
        // Each of the three is chosen about a third of the time.
        assert!(seen.iter().all(|&n| (60..=140).contains(&n)), "{seen:?}");
        let one = Masters::new(&HOSTS[..1], &mut rng);
        assert_eq!((one.in_use(), one.len()), (0, 1));
    }

    #[test]
    fn a_failed_request_moves_on_in_list_order_trying_each_master_once() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = Masters::new(&HOSTS, &mut rng);
        m.in_use.store(1, Ordering::Relaxed);
        let mut tried = [false, true, false];
        assert_eq!(m.next(1, &tried), Some(2));
        assert_eq!(m.in_use(), 2);
        tried[2] = true;
        assert_eq!(m.next(2, &tried), Some(0), "wraps around");
        tried[0] = true;
        assert_eq!(m.next(0, &tried), None, "all tried");
        assert_eq!(m.in_use(), 0, "sticks to the last one tried");
    }

    #[test]
    fn a_request_follows_a_switch_another_request_made() {
        let mut rng = StdRng::seed_from_u64(2);
        let m = Masters::new(&HOSTS, &mut rng);
        m.in_use.store(2, Ordering::Relaxed);
        // This request failed on master 0 while another one had moved on to 2.
        assert_eq!(m.next(0, &[true, false, false]), Some(2));
        assert_eq!(m.in_use(), 2);
        // Had this request tried 2 already, it goes on after 0.
        assert_eq!(m.next(0, &[true, false, true]), Some(1));
        assert_eq!(m.in_use(), 1);
    }

    #[test]
    fn the_pause_before_a_switch_is_random_and_bounded() {
        let mut rng = StdRng::seed_from_u64(42);
        let pauses: Vec<Duration> = (0..1000)
            .map(|_| switch_pause(MAX_SWITCH_PAUSE, &mut rng))
            .collect();
        assert!(pauses.iter().all(|p| *p <= MAX_SWITCH_PAUSE));
        // Spread over the whole range, not bunched: a fleet does not arrive at once.
        for tenth in 0..10 {
            let low = MAX_SWITCH_PAUSE.mul_f64(tenth as f64 / 10.0);
            let high = MAX_SWITCH_PAUSE.mul_f64((tenth + 1) as f64 / 10.0);
            let n = pauses.iter().filter(|p| **p >= low && **p < high).count();
            assert!((50..=150).contains(&n), "{n} pauses in [{low:?}, {high:?})");
        }
        assert_eq!(switch_pause(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn a_v1_master_is_asked_for_v2_again_after_an_hour() {
        let m = Master::new("m1:8150");
        assert!(m.speaks_v2(), "v2 first");
        m.fall_back("/v2/report");
        assert!(!m.speaks_v2());
        let until = m.v1_until.lock().unwrap().unwrap();
        assert!(until > Instant::now() + V1_RECHECK - Duration::from_secs(60));
        // An hour later:
        *m.v1_until.lock().unwrap() = Some(Instant::now());
        assert!(m.speaks_v2());
        m.v2_answered();
        assert!(m.v1_until.lock().unwrap().is_none());
    }
}

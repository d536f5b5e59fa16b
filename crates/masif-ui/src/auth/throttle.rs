//! Login throttling: failed logins counted per source network and per submitted user name,
//! with an exponential lock after a few free failures, in two tables of bounded size.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failed logins lock a source or a user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBackoff {
    /// Failures in a row allowed before the first lock.
    pub free_failures: u32,
    /// The first lock; each further failure doubles it.
    pub first_lock: Duration,
    /// The longest lock. Failures are forgotten twice this long after the last one.
    pub max_lock: Duration,
}

impl Default for LoginBackoff {
    /// 5 free failures, then 1 s, 2 s, 4 s … up to 15 min.
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_lock: Duration::from_secs(1),
            max_lock: Duration::from_secs(15 * 60),
        }
    }
}

impl LoginBackoff {
    /// The lock after the `count`th failure in a row: none for the free ones, then
    /// `first_lock` doubling up to `max_lock`.
    fn lock_after(&self, count: u32) -> Option<Duration> {
        let beyond = count.checked_sub(self.free_failures.saturating_add(1))?;
        let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
        Some(self.first_lock.saturating_mul(factor).min(self.max_lock))
    }

    /// Whether failures are old enough to forget: no lock running, and the last one longer
    /// ago than twice the longest lock.
    fn forgotten(&self, f: &Failures, now: Instant) -> bool {
        f.locked_until.is_none_or(|u| u <= now)
            && now.duration_since(f.last) >= self.max_lock.saturating_mul(2)
    }
}

/// Most sources (or user names) remembered; past it the one with the oldest failure goes.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// A source of logins: an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(prefix.into()))
            }
            v4 => Self(v4),
        }
    }
}

struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failures by key, at most [`MAX_ENTRIES`].
struct Table<K> {
    backoff: LoginBackoff,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(backoff: LoginBackoff) -> Self {
        Self {
            backoff,
            map: HashMap::new(),
        }
    }

    fn locked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let until = self.map.get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&mut self, key: K, now: Instant) {
        if !self.map.contains_key(&key) && self.map.len() >= MAX_ENTRIES {
            let backoff = self.backoff;
            self.map.retain(|_, f| !backoff.forgotten(f, now));
            if self.map.len() >= MAX_ENTRIES {
                if let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&oldest);
                }
            }
        }
        let backoff = self.backoff;
        let f = self.map.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if backoff.forgotten(f, now) {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        f.locked_until = backoff.lock_after(f.count).map(|lock| now + lock);
    }

    fn forget(&mut self, key: &K) {
        self.map.remove(key);
    }
}

/// Failed logins by source and by user name.
pub(crate) struct Throttle {
    tables: Mutex<(Table<Source>, Table<String>)>,
}

impl Throttle {
    pub(crate) fn new(backoff: LoginBackoff) -> Self {
        Self {
            tables: Mutex::new((Table::new(backoff), Table::new(backoff))),
        }
    }

    /// How long a login of `user` from `source` must still wait, if its source or its user
    /// name is locked.
    pub(crate) fn locked_for(&self, source: Source, user: &str) -> Option<Duration> {
        let now = Instant::now();
        let t = self.tables.lock().expect("throttle poisoned");
        let by_source = t.0.locked_for(&source, now);
        let by_user = t.1.locked_for(&user.to_owned(), now);
        by_source.max(by_user)
    }

    /// Counts a failed login against the source and the user name.
    pub(crate) fn failed(&self, source: Source, user: &str) {
        let now = Instant::now();
        let mut t = self.tables.lock().expect("throttle poisoned");
        t.0.fail(source, now);
        t.1.fail(user.to_owned(), now);
    }

    /// How long requests from `source` must still wait, whatever the user name (a failed
    /// bearer token names no user).
    pub(crate) fn source_locked_for(&self, source: Source) -> Option<Duration> {
        let now = Instant::now();
        let t = self.tables.lock().expect("throttle poisoned");
        t.0.locked_for(&source, now)
    }

    /// Counts a failed check against the source only (a bearer token that matched no line).
    pub(crate) fn source_failed(&self, source: Source) {
        let now = Instant::now();
        let mut t = self.tables.lock().expect("throttle poisoned");
        t.0.fail(source, now);
    }

    /// A successful login clears the failures of its user name and its source.
    pub(crate) fn succeeded(&self, source: Source, user: &str) {
        let mut t = self.tables.lock().expect("throttle poisoned");
        t.0.forget(&source);
        t.1.forget(&user.to_owned());
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let t = self.tables.lock().unwrap();
        (t.0.map.len(), t.1.map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_after_the_free_failures_up_to_the_cap() {
        let b = LoginBackoff::default();
        let locks: Vec<_> = (1..=18).map(|n| b.lock_after(n)).collect();
        assert_eq!(locks[..5], [None; 5]);
        let secs: Vec<u64> = locks[5..].iter().map(|l| l.unwrap().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]);
        assert_eq!(b.lock_after(u32::MAX), Some(b.max_lock));
        let none_free = LoginBackoff {
            free_failures: 0,
            ..b
        };
        assert_eq!(none_free.lock_after(1), Some(b.first_lock));
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(Source::from(mapped), Source::from(v4));
        assert_ne!(
            Source::from(v4),
            Source::from("192.0.2.8".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn unknown_names_and_sources_lock_and_success_clears_them() {
        let t = Throttle::new(LoginBackoff::default());
        let src = Source::from("192.0.2.1".parse::<IpAddr>().unwrap());
        for _ in 0..LoginBackoff::default().free_failures {
            t.failed(src, "nobody");
            assert_eq!(t.locked_for(src, "nobody"), None);
        }
        t.failed(src, "nobody");
        assert!(t.locked_for(src, "nobody").is_some());
        // The source is locked for every name; the name from every source.
        assert!(t.locked_for(src, "alice").is_some());
        let other = Source::from("192.0.2.2".parse::<IpAddr>().unwrap());
        assert!(t.locked_for(other, "nobody").is_some());
        assert_eq!(t.locked_for(other, "alice"), None);
        t.succeeded(src, "nobody");
        assert_eq!(t.locked_for(src, "nobody"), None);
    }

    #[test]
    fn a_spray_of_sources_and_names_stays_bounded() {
        let t = Throttle::new(LoginBackoff::default());
        for i in 0..MAX_ENTRIES as u32 + 100 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) << 64));
            t.failed(Source::from(ip), &format!("user{i}"));
        }
        assert_eq!(t.sizes(), (MAX_ENTRIES, MAX_ENTRIES));
    }
}

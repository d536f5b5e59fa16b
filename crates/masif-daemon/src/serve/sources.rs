//! Counts of something in progress per source address (TLS handshakes), with a cap: IPv4
//! addresses count alone, IPv6 addresses by their /64, the block one host usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The counts; entries disappear when they drop to zero, so the table holds only sources
/// with something in progress.
#[derive(Clone)]
pub(crate) struct Sources {
    cap: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One unit in progress for a source; counted down when dropped.
pub(crate) struct Entered {
    key: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Sources {
    /// At most `cap` at once per source (0 counts as 1).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            counts: Arc::default(),
        }
    }

    /// Counts one more for `source`, or `None` when it has `cap` in progress already.
    pub(crate) fn enter(&self, source: IpAddr) -> Option<Entered> {
        let key = block_of(source);
        let mut counts = self.counts.lock().expect("sources lock poisoned");
        let count = counts.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Entered {
            key,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("sources lock poisoned");
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The key a source is counted under: an IPv4 address itself (also when mapped into IPv6),
/// an IPv6 address's /64.
fn block_of(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_up_to_its_cap_and_a_slot_back_when_one_ends() {
        let sources = Sources::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = sources.enter(a).unwrap();
        let _second = sources.enter(a).unwrap();
        assert!(sources.enter(a).is_none());
        assert!(sources.enter("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(sources.enter(a).is_some());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let sources = Sources::new(1);
        let _held = sources.enter("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(sources
            .enter("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        assert!(sources.enter("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = sources.enter("198.51.100.7".parse().unwrap()).unwrap();
        assert!(sources
            .enter("::ffff:198.51.100.7".parse().unwrap())
            .is_none());
    }

    #[test]
    fn the_table_forgets_sources_with_nothing_in_progress() {
        let sources = Sources::new(3);
        for i in 0..100u8 {
            drop(sources.enter(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert!(sources.counts.lock().unwrap().is_empty());
    }
}

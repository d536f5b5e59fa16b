//! The bound on reports inside the store (`db.max_queued_reports`), alike for both back ends: a
//! report that finds as many others already waiting for the database (queued for a batch, in
//! one, or retrying) fails at once with [`StoreError::Overloaded`] instead of queueing without
//! end; the master answers it with 503 and `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Result, StoreError};

/// The default of `db.max_queued_reports`: with a snapshot answering up to 128 reports per
/// round trip this is a few seconds of the busiest steady state measured (see
/// docs/performance.md), and at most this many report bodies are held.
pub const DEFAULT_MAX_QUEUED_REPORTS: usize = 4096;

/// How many reports are inside the store, and how many may be.
#[derive(Debug)]
pub(crate) struct ReportQueue {
    limit: AtomicUsize,
    inside: AtomicUsize,
}

/// A report's place in the queue, given back when dropped (the report ended or was dropped).
#[derive(Debug)]
pub(crate) struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ReportQueue {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit.max(1)),
            inside: AtomicUsize::new(0),
        }
    }

    /// Changes the bound; reports already inside stay.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    /// A place for one more report, or [`StoreError::Overloaded`] when the queue is full.
    pub(crate) fn enter(&self) -> Result<Place<'_>> {
        let limit = self.limit.load(Ordering::Relaxed);
        let before = self.inside.fetch_add(1, Ordering::AcqRel);
        let place = Place(&self.inside);
        if before >= limit {
            // Dropping the place takes the count back.
            return Err(StoreError::Overloaded { limit });
        }
        Ok(place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_until_a_place_is_given_back() {
        let queue = ReportQueue::new(2);
        let first = queue.enter().unwrap();
        let _second = queue.enter().unwrap();
        let err = queue.enter().unwrap_err();
        assert!(
            matches!(err, StoreError::Overloaded { limit: 2 }),
            "{err:?}"
        );
        assert!(err.is_transient());
        drop(first);
        let _third = queue.enter().expect("a place was given back");
        assert!(queue.enter().is_err());
        queue.set_limit(3);
        let _fourth = queue.enter().expect("the bound was raised");
    }
}

//! What the report path's modules (`report`, `snapshot`, `write`, `last_seen`) share, in a leaf
//! module so none of them imports another for it: the counters, the reported lists, the row
//! decoding of result sets.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use mysql_async::prelude::FromRow;
use mysql_async::Row;

/// Counters of the report path since the store was opened (for benchmarks and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportStats {
    /// Reports handled (successfully or not).
    pub reports: u64,
    /// Queries sent to the server by reports (a multi-statement batch counts once).
    pub round_trips: u64,
    /// Changed reports written (several share a transaction when they arrive together).
    pub write_transactions: u64,
    /// Attempts that hit 1213/1205 or a failed node (out of reach, 1047) and were rolled back:
    /// of reports, and of the other transactions retried so (approvals, runs, orphan
    /// packages, leases and roll-outs).
    pub conflicts: u64,
}

/// The live counters behind [`ReportStats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    reports: AtomicU64,
    round_trips: AtomicU64,
    write_transactions: AtomicU64,
    conflicts: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> ReportStats {
        ReportStats {
            reports: self.reports.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            write_transactions: self.write_transactions.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_report(&self) {
        self.reports.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_written(&self, reports: usize) {
        self.write_transactions
            .fetch_add(reports as u64, Ordering::Relaxed);
    }
}

pub(crate) type DbResult<T> = std::result::Result<T, mysql_async::Error>;

/// Rows of a result set as `T`; a row of another shape is an error, not a panic.
pub(crate) fn decode<T: FromRow>(rows: Vec<Row>) -> DbResult<Vec<T>> {
    rows.into_iter()
        .map(|row| {
            T::from_row_opt(row)
                .map_err(|e| mysql_async::Error::Other(format!("unexpected row shape: {e}").into()))
        })
        .collect()
}

/// The reported package names and target versions of one report, built once per report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lists {
    /// The reported package names, sorted and distinct.
    pub names: Vec<String>,
    /// The reported target versions.
    pub to_versions: BTreeSet<String>,
}

impl Lists {
    /// Roughly the bytes these lists add to a statement.
    pub(crate) fn weight(&self) -> usize {
        let names: usize = self.names.iter().map(|n| n.len() + 4).sum();
        let versions: usize = self.to_versions.iter().map(|v| v.len() + 4).sum();
        names + versions
    }

    pub(crate) fn of(tasks: &masif_proto::TaskSet) -> Self {
        let mut names: Vec<String> = tasks
            .iter()
            .map(|t| t.package().as_str().to_owned())
            .collect();
        names.dedup(); // a TaskSet is sorted by package first
        let to_versions = tasks
            .iter()
            .filter_map(|t| t.to_version().map(|v| v.as_str().to_owned()))
            .collect();
        Self { names, to_versions }
    }
}

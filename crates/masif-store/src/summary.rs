//! The pending summary's back-end independent part: how a change of one agent's pending rows
//! changes the maintained counts (`pending_summary`, `pending_package_summary`, migrations
//! mysql 0013 and sqlite 0008). Both count distinct agents, so an agent counts once for a key
//! however many of its rows have it; a transaction that changes an agent's pending rows holds
//! that agent's rows (MySQL: their locks) and adds the difference of its key sets.

use std::collections::{BTreeMap, BTreeSet};

/// The action of a package-level count over every action.
pub(crate) const ANY_ACTION: &str = "";

/// A row-level key: package id, action, target version (`""` for none).
pub(crate) type RowKey = (u64, String, String);
/// A package-level key: package id, action ([`ANY_ACTION`] for every action).
pub(crate) type PackageKey = (u64, String);

/// A pending row as the summary sees it: package id, action, target version.
pub(crate) type Pending<'a> = (u64, &'a str, Option<&'a str>);

/// Changes to the counts, by key, in key order (the order MySQL locks the rows in).
#[derive(Debug, Default)]
pub(crate) struct Deltas {
    rows: BTreeMap<RowKey, i64>,
    packages: BTreeMap<PackageKey, i64>,
}

#[derive(Default)]
struct Keys {
    rows: BTreeSet<RowKey>,
    packages: BTreeSet<PackageKey>,
}

impl Keys {
    fn of<'a>(pending: impl IntoIterator<Item = Pending<'a>>) -> Self {
        let mut keys = Self::default();
        for (package, action, to) in pending {
            keys.rows
                .insert((package, action.to_owned(), to.unwrap_or("").to_owned()));
            keys.packages.insert((package, action.to_owned()));
            keys.packages.insert((package, ANY_ACTION.to_owned()));
        }
        keys
    }
}

impl Deltas {
    /// Adds the change of one agent's pending rows from `before` to `after`.
    pub(crate) fn agent<'a, 'b>(
        &mut self,
        before: impl IntoIterator<Item = Pending<'a>>,
        after: impl IntoIterator<Item = Pending<'b>>,
    ) {
        let (before, after) = (Keys::of(before), Keys::of(after));
        for key in before.rows.difference(&after.rows) {
            *self.rows.entry(key.clone()).or_default() -= 1;
        }
        for key in after.rows.difference(&before.rows) {
            *self.rows.entry(key.clone()).or_default() += 1;
        }
        for key in before.packages.difference(&after.packages) {
            *self.packages.entry(key.clone()).or_default() -= 1;
        }
        for key in after.packages.difference(&before.packages) {
            *self.packages.entry(key.clone()).or_default() += 1;
        }
    }

    /// The changes that turn the counts `have` into `want`, rows and packages (a key missing
    /// from one side counts 0): what the summary check corrects.
    pub(crate) fn between(
        have_rows: impl IntoIterator<Item = (RowKey, i64)>,
        want_rows: impl IntoIterator<Item = (RowKey, i64)>,
        have_packages: impl IntoIterator<Item = (PackageKey, i64)>,
        want_packages: impl IntoIterator<Item = (PackageKey, i64)>,
    ) -> Self {
        let mut deltas = Self::default();
        for (key, n) in have_rows {
            *deltas.rows.entry(key).or_default() -= n;
        }
        for (key, n) in want_rows {
            *deltas.rows.entry(key).or_default() += n;
        }
        for (key, n) in have_packages {
            *deltas.packages.entry(key).or_default() -= n;
        }
        for (key, n) in want_packages {
            *deltas.packages.entry(key).or_default() += n;
        }
        deltas
    }

    /// How many keys change.
    pub(crate) fn keys(&self) -> u64 {
        (self.rows().count() + self.packages().count()) as u64
    }

    /// Row-level changes other than 0, in key order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&RowKey, i64)> {
        self.rows
            .iter()
            .map(|(k, d)| (k, *d))
            .filter(|(_, d)| *d != 0)
    }

    /// Package-level changes other than 0, in key order.
    pub(crate) fn packages(&self) -> impl Iterator<Item = (&PackageKey, i64)> {
        self.packages
            .iter()
            .map(|(k, d)| (k, *d))
            .filter(|(_, d)| *d != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(d: &Deltas) -> Vec<(u64, &str, &str, i64)> {
        d.rows()
            .map(|((p, a, t), n)| (*p, a.as_str(), t.as_str(), n))
            .collect()
    }

    fn packages(d: &Deltas) -> Vec<(u64, &str, i64)> {
        d.packages()
            .map(|((p, a), n)| (*p, a.as_str(), n))
            .collect()
    }

    #[test]
    fn an_agent_counts_once_per_key() {
        let mut d = Deltas::default();
        // Two rows of one key (different from-versions) and a configure row of the same package.
        d.agent(
            [],
            [
                (1, "update", Some("2")),
                (1, "update", Some("2")),
                (1, "configure", Some("2")),
            ],
        );
        assert_eq!(
            rows(&d),
            vec![(1, "configure", "2", 1), (1, "update", "2", 1)]
        );
        assert_eq!(
            packages(&d),
            vec![(1, "", 1), (1, "configure", 1), (1, "update", 1)]
        );
    }

    #[test]
    fn between_corrects_wrong_missing_and_stale_keys() {
        let row = |p: u64, a: &str, t: &str| (p, a.to_owned(), t.to_owned());
        let package = |p: u64, a: &str| (p, a.to_owned());
        let d = Deltas::between(
            [(row(1, "update", "2"), 5), (row(2, "remove", ""), 1)],
            [(row(1, "update", "2"), 3), (row(3, "install", "1"), 2)],
            [(package(1, ""), 5)],
            [(package(1, ""), 5)],
        );
        assert_eq!(
            rows(&d),
            vec![
                (1, "update", "2", -2),
                (2, "remove", "", -1),
                (3, "install", "1", 2)
            ]
        );
        assert!(packages(&d).is_empty());
        assert_eq!(d.keys(), 3);
    }

    #[test]
    fn unchanged_keys_change_nothing_and_removals_count_down() {
        let mut d = Deltas::default();
        d.agent(
            [(1, "update", Some("2")), (2, "remove", None)],
            [(1, "update", Some("2")), (1, "install", Some("3"))],
        );
        assert_eq!(
            rows(&d),
            vec![(1, "install", "3", 1), (2, "remove", "", -1)]
        );
        assert_eq!(
            packages(&d),
            vec![(1, "install", 1), (2, "", -1), (2, "remove", -1)]
        );
        // Another agent's opposite change cancels out.
        d.agent(
            [(1, "update", Some("2")), (1, "install", Some("3"))],
            [(1, "update", Some("2")), (2, "remove", None)],
        );
        assert!(rows(&d).is_empty() && packages(&d).is_empty());
    }
}

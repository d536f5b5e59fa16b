//! The back-end independent core of a report: approval rows as patterns, the split of a report
//! into approved and pending tasks, the digest of a pending set, and the diff of stored pending
//! rows against the wanted ones. Both back ends use it, so both answer alike.

use std::collections::HashMap;
use std::hash::Hash;

use masif_proto::{Task, TaskSet};
use sha2::{Digest, Sha256};

/// An approval row read as a pattern: `None` columns match anything. The values are the
/// stored text, unchecked: a value no task can have simply matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pattern {
    pub package: Option<String>,
    pub action: Option<String>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
}

impl Pattern {
    pub(crate) fn matches(&self, task: &Task) -> bool {
        fn fits(pattern: &Option<String>, value: Option<&str>) -> bool {
            pattern.as_deref().is_none_or(|p| Some(p) == value)
        }
        fits(&self.package, Some(task.package().as_str()))
            && fits(&self.action, Some(task.action().as_str()))
            && fits(&self.from_version, task.from_version().map(|v| v.as_str()))
            && fits(&self.to_version, task.to_version().map(|v| v.as_str()))
    }
}

/// Splits a report into (approved, pending) by the patterns in force for the agent.
pub(crate) fn split<'a>(reported: &'a TaskSet, patterns: &[Pattern]) -> (TaskSet, Vec<&'a Task>) {
    let mut approved = TaskSet::new();
    let mut pending = Vec::new();
    for task in reported {
        if patterns.iter().any(|p| p.matches(task)) {
            approved.insert(task.clone());
        } else {
            pending.push(task);
        }
    }
    (approved, pending)
}

/// The approvals in force, indexed by agent and package, for matching many parked agents'
/// reports in memory when approvals change (the same [`Pattern::matches`] as a report). Each
/// list is sorted, so that two reads of the same rows compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalPatterns {
    /// Patterns for every agent (agent NULL), by package; `None` = any package.
    every_agent: HashMap<Option<String>, Vec<Pattern>>,
    /// Patterns for one agent, by agent name.
    per_agent: HashMap<String, Vec<Pattern>>,
}

impl ApprovalPatterns {
    /// From (agent name or NULL, pattern) rows.
    pub(crate) fn new(rows: impl IntoIterator<Item = (Option<String>, Pattern)>) -> Self {
        let mut patterns = Self::default();
        for (agent, pattern) in rows {
            match agent {
                None => patterns
                    .every_agent
                    .entry(pattern.package.clone())
                    .or_default()
                    .push(pattern),
                Some(agent) => patterns.per_agent.entry(agent).or_default().push(pattern),
            }
        }
        for list in patterns.every_agent.values_mut() {
            list.sort_unstable();
        }
        for list in patterns.per_agent.values_mut() {
            list.sort_unstable();
        }
        patterns
    }

    /// The agents whose approvals differ between `self` and `newer`: those with approvals of
    /// their own added, changed or gone. `None` when approvals for every agent differ, which
    /// may concern any agent.
    pub fn agents_changed(&self, newer: &Self) -> Option<Vec<String>> {
        if self.every_agent != newer.every_agent {
            return None;
        }
        let mut changed: Vec<String> = newer
            .per_agent
            .iter()
            .filter(|(agent, list)| self.per_agent.get(*agent) != Some(list))
            .map(|(agent, _)| agent.clone())
            .collect();
        changed.extend(
            self.per_agent
                .keys()
                .filter(|agent| !newer.per_agent.contains_key(*agent))
                .cloned(),
        );
        Some(changed)
    }

    /// The subset of `tasks` approved for `agent`.
    pub fn approved(&self, agent: &masif_proto::AgentName, tasks: &TaskSet) -> TaskSet {
        let own = self
            .per_agent
            .get(agent.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let any_package = self
            .every_agent
            .get(&None)
            .map(Vec::as_slice)
            .unwrap_or_default();
        tasks
            .iter()
            .filter(|task| {
                let same_package = self
                    .every_agent
                    .get(&Some(task.package().as_str().to_owned()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                own.iter()
                    .chain(any_package)
                    .chain(same_package)
                    .any(|p| p.matches(task))
            })
            .cloned()
            .collect()
    }
}

/// SHA-256 of pending tasks in set order (callers pass them sorted, as [`split`] yields them);
/// separators are control characters, which names and versions cannot contain, and `\0` marks
/// an absent version.
pub(crate) fn pending_digest(pending: &[&Task]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for task in pending {
        hash.update(task.package().as_str());
        hash.update([0x1f]);
        hash.update(task.action().as_str());
        for version in [task.from_version(), task.to_version()] {
            hash.update([0x1f]);
            hash.update(version.map_or("\0", |v| v.as_str()));
        }
        hash.update([0x1e]);
    }
    hash.finalize().into()
}

/// What to change so the stored pending rows become the wanted set: ids of rows to delete
/// (rows no longer wanted, and duplicates of a wanted one) and wanted tasks to insert. `K` is
/// how a back end identifies a row's content (e.g. package id, action, versions).
pub(crate) fn diff<'t, Id, K>(
    stored: impl IntoIterator<Item = (Id, K)>,
    wanted: impl IntoIterator<Item = (K, &'t Task)>,
) -> (Vec<Id>, Vec<&'t Task>)
where
    K: Hash + Eq,
{
    let mut missing: HashMap<K, &'t Task> = wanted.into_iter().collect();
    let mut stale = Vec::new();
    for (id, key) in stored {
        // A row is kept if it is the first one with a wanted content; rows no longer wanted
        // and duplicates of a kept row go.
        if missing.remove(&key).is_none() {
            stale.push(id);
        }
    }
    let mut inserts: Vec<&Task> = missing.into_values().collect();
    inserts.sort();
    (stale, inserts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_proto::{Action, PackageName, Version};

    fn task(p: &str, a: Action, from: Option<&str>, to: Option<&str>) -> Task {
        Task::new(
            PackageName::new(p).unwrap(),
            a,
            from.map(|v| Version::new(v).unwrap()),
            to.map(|v| Version::new(v).unwrap()),
        )
        .unwrap()
    }

    fn pattern(p: Option<&str>, a: Option<&str>, f: Option<&str>, t: Option<&str>) -> Pattern {
        let s = |v: Option<&str>| v.map(str::to_owned);
        Pattern {
            package: s(p),
            action: s(a),
            from_version: s(f),
            to_version: s(t),
        }
    }

    #[test]
    fn null_columns_are_wildcards() {
        let t = task("perl", Action::Update, Some("1"), Some("2"));
        let yes = [
            pattern(None, None, None, None),
            pattern(Some("perl"), None, None, None),
            pattern(Some("perl"), Some("update"), None, Some("2")),
            pattern(Some("perl"), Some("update"), Some("1"), Some("2")),
            pattern(None, Some("update"), None, None),
        ];
        let no = [
            pattern(Some("Perl"), None, None, None),
            pattern(Some("perl"), Some("install"), None, None),
            pattern(Some("perl"), None, None, Some("3")),
            pattern(Some("perl"), None, Some("0"), None),
            pattern(None, Some("bogus"), None, None),
        ];
        for p in &yes {
            assert!(p.matches(&t), "{p:?}");
        }
        for p in &no {
            assert!(!p.matches(&t), "{p:?}");
        }
        // A pattern with a version never matches a task without that version.
        let install = task("perl", Action::Install, None, Some("2"));
        assert!(!pattern(None, None, Some("1"), None).matches(&install));
    }

    #[test]
    fn changed_agents_are_named_unless_every_agent_is_concerned() {
        let perl = || pattern(Some("perl"), None, None, None);
        let zsh = || pattern(Some("zsh"), Some("install"), None, Some("5"));
        let own = |agent: &str, p: Pattern| (Some(agent.to_owned()), p);
        let before = ApprovalPatterns::new([own("a", perl()), own("a", zsh()), own("b", perl())]);
        // The same rows in another order are no change.
        let reordered =
            ApprovalPatterns::new([own("b", perl()), own("a", zsh()), own("a", perl())]);
        assert_eq!(before, reordered);
        assert_eq!(before.agents_changed(&reordered), Some(Vec::new()));
        // One agent's approval gone, another's added, a third untouched.
        let after = ApprovalPatterns::new([own("a", perl()), own("b", perl()), own("c", zsh())]);
        let mut changed = before.agents_changed(&after).unwrap();
        changed.sort();
        assert_eq!(changed, ["a", "c"]);
        let mut gone = after.agents_changed(&ApprovalPatterns::default()).unwrap();
        gone.sort();
        assert_eq!(gone, ["a", "b", "c"]);
        // Approvals for every agent, of one package or of any, may concern anyone.
        for every in [perl(), pattern(None, None, None, None)] {
            let widened = ApprovalPatterns::new([own("a", perl()), (None, every)]);
            assert_eq!(before.agents_changed(&widened), None);
            assert_eq!(widened.agents_changed(&before), None);
        }
    }

    #[test]
    fn split_and_digest() {
        let a = task("a", Action::Install, None, Some("1"));
        let b = task("b", Action::Remove, Some("1"), None);
        let set: TaskSet = [a.clone(), b.clone()].into();
        let (approved, pending) = split(&set, &[pattern(Some("a"), None, None, None)]);
        assert_eq!(approved, [a.clone()].into());
        assert_eq!(pending, vec![&b]);
        assert_ne!(pending_digest(&[&a]), pending_digest(&[&b]));
        assert_ne!(pending_digest(&[]), pending_digest(&[&a]));
        // Field boundaries count: "ab"+"c" is not "a"+"bc".
        let x = task("ab", Action::Install, None, Some("1"));
        let y = task("a", Action::Install, None, Some("b1"));
        assert_ne!(pending_digest(&[&x]), pending_digest(&[&y]));
    }

    #[test]
    fn diff_deletes_stale_and_duplicate_rows_and_inserts_missing() {
        let a = task("a", Action::Install, None, Some("1"));
        let b = task("b", Action::Install, None, Some("1"));
        let c = task("c", Action::Install, None, Some("1"));
        let stored = [(1, "a"), (2, "a"), (3, "x"), (4, "b")];
        let wanted = [("a", &a), ("b", &b), ("c", &c)];
        let (stale, inserts) = diff(stored, wanted);
        assert_eq!(stale, vec![2, 3]);
        assert_eq!(inserts, vec![&c]);
    }
}

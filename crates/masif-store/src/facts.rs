//! Host facts, back-end independent: the report digest that folds them in, the rows a report's
//! facts become (only those of its pending tasks), and stored text read back into the model.

use std::collections::BTreeSet;

use masif_proto::facts::{Facts, Origin, TaskFacts};
use masif_proto::{parse_task_list, render_task_list, PackageName, Task, TaskSet};
use sha2::{Digest, Sha256};

use crate::pending::pending_digest;
use crate::{HostFacts, PendingRow, TaskKey};

/// SHA-256 of a report's facts (their canonical rendering), computed once per report.
pub(crate) fn facts_digest(facts: &Facts) -> [u8; 32] {
    Sha256::digest(facts.canonical().as_bytes()).into()
}

/// What `agent_report.pending_hash` holds: the pending digest alone for a report without facts
/// (v1, as before facts existed), else sha256(pending digest ‖ facts digest). Changed facts with
/// an unchanged pending set thus take the write path; unchanged ones keep the read-only one.
pub(crate) fn report_digest(pending: &[&Task], facts: Option<&[u8; 32]>) -> [u8; 32] {
    let digest = pending_digest(pending);
    match facts {
        None => digest,
        Some(facts) => {
            let mut hash = Sha256::new();
            hash.update(digest);
            hash.update(facts);
            hash.finalize().into()
        }
    }
}

/// A report's facts as rows: the host row, the held packages, the tags and the facts of its
/// pending tasks (facts of approved tasks are not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FactRows<'a> {
    pub os: Option<&'a str>,
    pub kernel: Option<&'a str>,
    pub agent_version: Option<&'a str>,
    pub reboot_required: bool,
    /// JSON array of the package names that asked for the reboot.
    pub reboot_packages: String,
    pub held: Vec<&'a str>,
    /// The agent's tags, by name.
    pub tags: Vec<&'a str>,
    pub tasks: Vec<TaskFactRow<'a>>,
}

/// The stored facts of one pending task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskFactRow<'a> {
    pub task: &'a Task,
    pub origin: Option<&'a str>,
    pub security: bool,
    /// A v1 JSON task list; `None` when the task needs nothing else.
    pub needs: Option<String>,
}

impl<'a> FactRows<'a> {
    pub(crate) fn of(facts: &'a Facts, pending: &[&'a Task]) -> Self {
        let text = |t: &'a Option<masif_proto::facts::FactText>| t.as_ref().map(|t| t.as_str());
        let names: Vec<&str> = facts.reboot_packages.iter().map(|p| p.as_str()).collect();
        let tasks = pending
            .iter()
            .filter_map(|task| {
                let f = facts.tasks.get(*task)?;
                Some(TaskFactRow {
                    task,
                    origin: f.origin.as_ref().map(Origin::as_str),
                    security: f.is_security(),
                    needs: (!f.needs.is_empty()).then(|| render_task_list(&f.needs)),
                })
            })
            .collect();
        Self {
            os: text(&facts.os),
            kernel: text(&facts.kernel),
            agent_version: text(&facts.agent_version),
            reboot_required: facts.reboot_required,
            reboot_packages: serde_json::to_string(&names).expect("a list of strings serialises"),
            held: facts.held.iter().map(|p| p.as_str()).collect(),
            tags: facts.tags.iter().map(|t| t.as_str()).collect(),
            tasks,
        }
    }
}

/// Roughly the bytes `facts` add to a write's statements.
pub(crate) fn weight(facts: &Facts) -> usize {
    let texts = [&facts.os, &facts.kernel, &facts.agent_version]
        .iter()
        .flat_map(|t| t.as_ref())
        .map(|t| t.as_str().len())
        .sum::<usize>();
    let names = facts
        .reboot_packages
        .iter()
        .chain(&facts.held)
        .map(|p| p.as_str().len() + 30)
        .sum::<usize>()
        + facts
            .tags
            .iter()
            .map(|t| t.as_str().len() + 30)
            .sum::<usize>();
    let tasks = facts
        .tasks
        .values()
        .map(|f| 120 + f.origin.as_ref().map_or(0, |o| o.as_str().len()) + 80 * f.needs.len())
        .sum::<usize>();
    100 + texts + names + tasks
}

/// Stored package names as sorted, checked names; an unusable one is skipped with a warning.
pub(crate) fn package_names<I: IntoIterator<Item = String>>(names: I) -> Vec<PackageName> {
    let names: BTreeSet<PackageName> = names
        .into_iter()
        .filter_map(|n| match PackageName::new(n.clone()) {
            Ok(name) => Some(name),
            Err(e) => {
                tracing::warn!(package = %n, error = %e, "skipping unusable stored package name");
                None
            }
        })
        .collect();
    names.into_iter().collect()
}

/// An `agent_facts` row as read: os, kernel, agent version, reboot flag, reboot packages
/// (JSON), time.
pub(crate) type HostRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    String,
    i64,
);

/// The model's host facts from a stored row and the held package names.
pub(crate) fn host_facts(row: HostRow, held: Vec<String>) -> HostFacts {
    let (os, kernel, agent_version, reboot_required, reboot_packages, reported_at) = row;
    let reboot: Vec<String> = serde_json::from_str(&reboot_packages).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "unreadable stored reboot packages");
        Vec::new()
    });
    HostFacts {
        os,
        kernel,
        agent_version,
        reboot_required,
        reboot_packages: package_names(reboot),
        held: package_names(held),
        reported_at,
    }
}

/// Stored `needs` as tasks; unreadable text is none (with a warning).
pub(crate) fn needs_from_text(needs: Option<&str>) -> TaskSet {
    needs
        .map(|text| {
            parse_task_list(text.as_bytes()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "skipping unreadable stored needs");
                TaskSet::new()
            })
        })
        .unwrap_or_default()
}

/// A task's stored facts read back.
pub(crate) fn task_facts(origin: Option<String>, needs: Option<&str>) -> TaskFacts {
    TaskFacts {
        origin: origin.and_then(|o| Origin::new(o).ok()),
        needs: needs_from_text(needs),
    }
}

/// The union of stored `needs` texts as task keys (package, action, target version).
pub(crate) fn needs_keys<'t>(
    needs: impl IntoIterator<Item = Option<&'t str>>,
) -> BTreeSet<TaskKey> {
    needs
        .into_iter()
        .flat_map(needs_from_text)
        .map(|t| TaskKey::from(&t))
        .collect()
}

/// A pending page row's identity within its package: action and target version as stored.
pub(crate) type RowId = (String, Option<String>);

/// The [`RowId`] of `row`.
pub(crate) fn row_id(row: &PendingRow) -> RowId {
    (
        row.action.as_str().to_owned(),
        row.to_version.as_ref().map(|v| v.as_str().to_owned()),
    )
}

/// What the task facts say of one pending page row: whether it is a security update (some
/// agent awaiting it reported a security origin, whatever the page's filter, as the
/// `security_only` filter and the summary count it) and the union of the needs the agents
/// the filter selects reported for it.
#[derive(Debug, Default)]
pub(crate) struct RowFacts {
    security: bool,
    needs: BTreeSet<TaskKey>,
}

impl RowFacts {
    /// Adds the needs one awaiting agent reported for the row.
    pub(crate) fn add_needs(&mut self, needs: Option<&str>) {
        self.needs.extend(needs_keys([needs]));
    }

    /// Marks the row a security update.
    pub(crate) fn mark_security(&mut self) {
        self.security = true;
    }

    /// Sets the row's security flag and needs (sorted).
    pub(crate) fn apply(&self, row: &mut PendingRow) {
        row.security = self.security;
        row.needs = self.needs.iter().cloned().collect();
    }
}

/// [`Admin::needs_of`](crate::Admin::needs_of)'s answer: the union minus the keys asked about.
pub(crate) fn needs_without(union: BTreeSet<TaskKey>, keys: &[TaskKey]) -> Vec<TaskKey> {
    union.into_iter().filter(|k| !keys.contains(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use masif_proto::facts::FactText;
    use masif_proto::{Action, Version};

    fn task(p: &str, to: &str) -> Task {
        Task::new(
            PackageName::new(p).unwrap(),
            Action::Install,
            None,
            Some(Version::new(to).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn digest_without_facts_is_the_pending_digest() {
        let a = task("a", "1");
        let facts = Facts::default();
        let with = report_digest(&[&a], Some(&facts_digest(&facts)));
        assert_eq!(report_digest(&[&a], None), pending_digest(&[&a]));
        assert_ne!(with, pending_digest(&[&a]));
        let other = Facts {
            reboot_required: true,
            ..Facts::default()
        };
        assert_ne!(with, report_digest(&[&a], Some(&facts_digest(&other))));
    }

    #[test]
    fn only_pending_tasks_facts_become_rows() {
        let (a, b) = (task("a", "1"), task("b", "1"));
        let facts = Facts {
            os: Some(FactText::new("Debian").unwrap()),
            reboot_packages: [PackageName::new("linux").unwrap()].into(),
            tasks: [
                (
                    a.clone(),
                    TaskFacts {
                        origin: Some(Origin::new("Debian-Security:12/stable-security").unwrap()),
                        needs: [b.clone()].into(),
                    },
                ),
                (b.clone(), TaskFacts::default()),
            ]
            .into(),
            ..Facts::default()
        };
        let rows = FactRows::of(&facts, &[&a]);
        assert_eq!(rows.reboot_packages, r#"["linux"]"#);
        assert_eq!(rows.tasks.len(), 1);
        assert!(rows.tasks[0].security);
        let needs = needs_keys([rows.tasks[0].needs.as_deref()]);
        assert_eq!(
            needs.into_iter().collect::<Vec<_>>(),
            vec![TaskKey::from(&b)]
        );
        let host = host_facts(
            (None, None, None, true, rows.reboot_packages.clone(), 5),
            vec!["z".into(), "a".into()],
        );
        assert_eq!(host.held, package_names(["a".to_owned(), "z".to_owned()]));
        assert_eq!(host.reboot_packages, package_names(["linux".to_owned()]));
    }
}

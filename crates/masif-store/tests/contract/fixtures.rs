//! Helpers the contract tests share: task sets, SQL quoting, approval rows written the way the
//! original UI writes them, and views of the tables for assertions.

use std::time::{SystemTime, UNIX_EPOCH};

use masif_proto::{Task, TaskSet};

use crate::TestStore;

pub use masif_testkit::tasks::{agent, install, task, update};

pub fn set<const N: usize>(tasks: [Task; N]) -> TaskSet {
    tasks.into()
}

/// `'text'` with quotes doubled: standard SQL, valid for both back ends.
pub fn q(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn q_opt(text: Option<&str>) -> String {
    text.map_or_else(|| "NULL".to_owned(), q)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes an approval row the way the original UI does (NULL columns are wildcards; agent
/// NULL means every agent), creating the agent and package rows it names.
pub async fn approve_raw(
    db: &TestStore,
    agent: Option<&str>,
    package: Option<&str>,
    action: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) {
    if let Some(a) = agent {
        db.exec(&format!(
            "INSERT INTO agent (name, ctime, mtime) SELECT {0}, 1, 1 \
             WHERE NOT EXISTS (SELECT 1 FROM agent WHERE name = {0})",
            q(a)
        ))
        .await;
    }
    if let Some(p) = package {
        db.exec(&format!(
            "INSERT INTO package (name) SELECT {0} \
             WHERE NOT EXISTS (SELECT 1 FROM package WHERE name = {0})",
            q(p)
        ))
        .await;
    }
    let agent_id = agent.map_or("NULL".to_owned(), |a| {
        format!("(SELECT id FROM agent WHERE name = {})", q(a))
    });
    let package_id = package.map_or("NULL".to_owned(), |p| {
        format!("(SELECT id FROM package WHERE name = {})", q(p))
    });
    db.exec(&format!(
        "INSERT INTO task (agent, package, from_version, to_version, action, approved) \
         VALUES ({agent_id}, {package_id}, {}, {}, {}, 1)",
        q_opt(from),
        q_opt(to),
        q_opt(action)
    ))
    .await;
}

/// The agent's pending rows as (package, action, from, to), sorted.
pub async fn pending(db: &TestStore, agent: &str) -> Vec<Vec<Option<String>>> {
    db.rows(&format!(
        "SELECT p.name, t.action, t.from_version, t.to_version \
         FROM task t JOIN package p ON p.id = t.package JOIN agent a ON a.id = t.agent \
         WHERE a.name = {} AND t.approved = 0 ORDER BY 1, 2, 3, 4",
        q(agent)
    ))
    .await
}

/// The pending rows a task set should leave, in the shape of [`pending`].
pub fn rows_of(tasks: &[&Task]) -> Vec<Vec<Option<String>>> {
    let mut rows: Vec<Vec<Option<String>>> = tasks
        .iter()
        .map(|t| {
            vec![
                Some(t.package().to_string()),
                Some(t.action().to_string()),
                t.from_version().map(|v| v.to_string()),
                t.to_version().map(|v| v.to_string()),
            ]
        })
        .collect();
    rows.sort();
    rows
}

/// Every row of every table the report touches, for "nothing changed" checks.
pub async fn dump(db: &TestStore) -> Vec<Vec<Vec<Option<String>>>> {
    let mut tables = Vec::new();
    for sql in [
        "SELECT id, name, ctime, mtime FROM agent ORDER BY id",
        "SELECT id, name FROM package ORDER BY id",
        "SELECT id, agent, package, from_version, to_version, action, approved FROM task ORDER BY id",
        "SELECT agent, last_seen FROM agent_report ORDER BY agent",
    ] {
        tables.push(db.rows(sql).await);
    }
    tables
}

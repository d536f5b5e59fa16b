//! The host facts of a write transaction's reports as multi-row statements of its second round
//! trip: upsert `agent_facts`, replace `agent_held`, `agent_tag` and `task_fact` of the agents
//! that sent facts. Every value is an escaped literal (`sql::lit`), ids are numbers.

use std::collections::HashMap;

use super::sql::{lit, tuple};
use crate::facts::FactRows;

/// Rows of the facts of several agents, collected while a transaction decides its writes.
#[derive(Debug, Default)]
pub(crate) struct FactStatements {
    agents: Vec<u64>,
    hosts: Vec<String>,
    held: Vec<String>,
    tags: Vec<String>,
    tasks: Vec<String>,
}

impl FactStatements {
    /// Adds the facts of agent `agent_id`; `package_ids` holds every pending task's package.
    pub(crate) fn add(
        &mut self,
        agent_id: u64,
        rows: &FactRows<'_>,
        package_ids: &HashMap<String, u64>,
        now: i64,
    ) {
        self.agents.push(agent_id);
        self.hosts.push(format!(
            "({agent_id}, {}, {}, {}, {}, {}, {now})",
            lit(rows.os),
            lit(rows.kernel),
            lit(rows.agent_version),
            u8::from(rows.reboot_required),
            lit(rows.reboot_packages.as_str()),
        ));
        self.held.extend(
            rows.held
                .iter()
                .map(|name| format!("({agent_id}, {})", lit(*name))),
        );
        self.tags.extend(
            rows.tags
                .iter()
                .map(|tag| format!("({agent_id}, {})", lit(*tag))),
        );
        for row in &rows.tasks {
            let Some(package) = package_ids.get(row.task.package().as_str()) else {
                continue;
            };
            self.tasks.push(format!(
                "({agent_id}, {package}, {}, {}, {}, {}, {}, {})",
                lit(row.task.action().as_str()),
                lit(row.task.from_version().map(|v| v.as_str())),
                lit(row.task.to_version().map(|v| v.as_str())),
                lit(row.origin),
                u8::from(row.security),
                lit(row.needs.as_deref()),
            ));
        }
    }

    /// The statements, none when no report carried facts.
    pub(crate) fn statements(self) -> Vec<String> {
        if self.agents.is_empty() {
            return Vec::new();
        }
        let agents = tuple(self.agents);
        let mut sql = vec![
            format!(
                "INSERT INTO agent_facts \
                 (agent, os, kernel, agent_version, reboot_required, reboot_packages, reported_at) \
                 VALUES {} ON DUPLICATE KEY UPDATE os = VALUES(os), kernel = VALUES(kernel), \
                 agent_version = VALUES(agent_version), \
                 reboot_required = VALUES(reboot_required), \
                 reboot_packages = VALUES(reboot_packages), reported_at = VALUES(reported_at)",
                self.hosts.join(", ")
            ),
            format!("DELETE FROM agent_held WHERE agent IN {agents}"),
            format!("DELETE FROM task_fact WHERE agent IN {agents}"),
            format!("DELETE FROM agent_tag WHERE agent IN {agents}"),
        ];
        if !self.held.is_empty() {
            sql.push(format!(
                "INSERT INTO agent_held (agent, package) VALUES {}",
                self.held.join(", ")
            ));
        }
        if !self.tags.is_empty() {
            sql.push(format!(
                "INSERT INTO agent_tag (agent, tag) VALUES {}",
                self.tags.join(", ")
            ));
        }
        if !self.tasks.is_empty() {
            sql.push(format!(
                "INSERT INTO task_fact \
                 (agent, package, action, from_version, to_version, origin, security, needs) \
                 VALUES {}",
                self.tasks.join(", ")
            ));
        }
        sql
    }
}

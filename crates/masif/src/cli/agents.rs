//! `masif agents` and `masif agent NAME`: the fleet's state and one agent's facts, tasks and
//! runs.

use std::fmt::Write;

use super::client::{ApiClient, ApiError};
use super::model::{AgentDetail, AgentItem, Agents, TaskKey};
use super::text::{age, clean, or_dash, page_line, plural, unix_now, utc, when, Table};
use super::{get_page, Paging};

/// The filters of `GET /api/v1/agents`.
pub(crate) struct Filter {
    pub(crate) name: Option<String>,
    pub(crate) offline: bool,
    pub(crate) failing: bool,
    pub(crate) reboot_required: bool,
    pub(crate) tag: Option<masif_proto::Tag>,
}

impl Filter {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(n) = &self.name {
            pairs.push(("name", n.clone()));
        }
        for (on, key) in [
            (self.offline, "offline"),
            (self.failing, "failing"),
            (self.reboot_required, "reboot_required"),
        ] {
            if on {
                pairs.push((key, "true".to_owned()));
            }
        }
        if let Some(t) = &self.tag {
            pairs.push(("tag", t.to_string()));
        }
        pairs
    }
}

pub(crate) async fn list(
    client: &ApiClient,
    filter: &Filter,
    paging: &Paging,
    json: bool,
) -> Result<String, ApiError> {
    get_page(client, &["agents"], filter.pairs(), paging, json, |page| {
        render_list(page, unix_now())
    })
    .await
}

/// `success 2026-12-05 12:00`, or `-`.
fn last_run(agent: &AgentItem) -> String {
    agent.last_run.as_ref().map_or("-".into(), |r| {
        format!("{} {}", r.outcome, utc(r.started_at))
    })
}

fn render_list(answer: &Agents, now: i64) -> String {
    let mut table = Table::new(&[
        "NAME",
        "LAST SEEN",
        "STATE",
        "TASKS",
        "PACKAGES",
        "FAILING",
        "REBOOT",
        "LAST RUN",
        "TAGS",
    ]);
    for agent in &answer.page.items {
        table.row([
            agent.name.clone(),
            agent
                .last_seen
                .map_or("never".into(), |t| format!("{} ago", age(now, t))),
            if agent.offline { "offline" } else { "online" }.to_owned(),
            agent.pending_tasks.to_string(),
            agent.pending_packages.to_string(),
            agent.failing_packages.to_string(),
            if agent.reboot_required { "yes" } else { "" }.to_owned(),
            last_run(agent),
            agent.tags.join(","),
        ]);
    }
    let mut out = match table.is_empty() {
        true => "no agents\n".to_owned(),
        false => table.render(),
    };
    out.push_str(&page_line(
        answer.page.total,
        answer.page.page,
        answer.page.per_page,
        "agent",
    ));
    let c = &answer.counts;
    let _ = writeln!(
        out,
        "fleet: {}, {} offline, {} failing, {} to reboot",
        plural(c.agents, "agent"),
        c.offline,
        c.failing,
        c.reboot_required
    );
    out
}

pub(crate) async fn show(
    client: &ApiClient,
    name: &str,
    paging: &Paging,
    json: bool,
) -> Result<String, ApiError> {
    get_page(
        client,
        &["agents", name],
        Vec::new(),
        paging,
        json,
        |detail| render_detail(detail, unix_now()),
    )
    .await
}

fn render_detail(detail: &AgentDetail, now: i64) -> String {
    let agent = &detail.agent;
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key:<16}{value}");
    };
    line("agent", clean(&agent.name));
    line(
        "state",
        if agent.offline { "offline" } else { "online" }.into(),
    );
    line("last seen", when(now, agent.last_seen));
    line("first seen", utc(agent.first_seen));
    line("last run", last_run(agent));
    if !agent.tags.is_empty() {
        line("tags", clean(&agent.tags.join(", ")));
    }
    if !agent.window_open {
        let next = agent.next_window.as_deref().unwrap_or("none opens again");
        line("next window", clean(next));
    }
    if let Some(f) = &detail.facts {
        line("os", or_dash(f.os.as_deref()));
        line("kernel", or_dash(f.kernel.as_deref()));
        line("agent version", or_dash(f.agent_version.as_deref()));
        let reboot = match (f.reboot_required, f.reboot_packages.is_empty()) {
            (false, _) => "no".to_owned(),
            (true, true) => "yes".to_owned(),
            (true, false) => format!("yes ({})", clean(&f.reboot_packages.join(", "))),
        };
        line("reboot required", reboot);
        if !f.held.is_empty() {
            line("held", clean(&f.held.join(", ")));
        }
        line("facts from", when(now, f.reported_at));
    }
    let mut tasks = Table::new(&["PACKAGE", "ACTION", "FROM", "TO", "SECURITY", "NEEDS"]);
    for t in &detail.tasks {
        let needs: Vec<String> = t.needs.iter().map(TaskKey::describe).collect();
        tasks.row([
            t.package.clone(),
            t.action.clone(),
            t.from_version.clone().unwrap_or_else(|| "-".into()),
            t.to_version.clone().unwrap_or_else(|| "-".into()),
            if t.security { "yes" } else { "" }.to_owned(),
            needs.join(", "),
        ]);
    }
    out.push('\n');
    match tasks.is_empty() {
        true => out.push_str("no pending tasks\n"),
        false => out.push_str(&tasks.render()),
    }
    let mut runs = Table::new(&["STARTED", "PACKAGE", "OUTCOME", "EXIT", "SECONDS", "OUTPUT"]);
    for r in &detail.runs.items {
        let last_line = r.output.lines().rev().find(|l| !l.trim().is_empty());
        runs.row([
            utc(r.started_at),
            r.package.clone(),
            r.outcome.clone(),
            r.exit_code.map_or("-".into(), |c| c.to_string()),
            r.duration_ms
                .map_or("-".into(), |ms| format!("{:.1}", ms as f64 / 1000.0)),
            last_line.unwrap_or_default().chars().take(60).collect(),
        ]);
    }
    out.push('\n');
    match runs.is_empty() {
        true => out.push_str("no runs\n"),
        false => out.push_str(&runs.render()),
    }
    let page = &detail.runs;
    out.push_str(&page_line(page.total, page.page, page.per_page, "run"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(name: &str, offline: bool) -> serde_json::Value {
        json!({"name": name, "first_seen": 0, "last_change": 0, "last_seen": 3600,
               "offline": offline, "pending_tasks": 3, "pending_packages": 2,
               "failing_packages": 1, "reboot_required": true,
               "last_run": {"outcome": "failure", "started_at": 60}, "tags": ["canary", "web"],
               "window_open": false, "next_window": "2030-01-01T00:00:00Z"})
    }

    #[test]
    fn agents_list_with_counts_and_an_escaped_hostile_name() {
        let answer: Agents = serde_json::from_value(json!({
            "total": 2, "page": 1, "per_page": 50,
            "counts": {"agents": 2, "offline": 1, "failing": 2, "reboot_required": 2},
            "items": [item("web-1", false), item("\u{1b}[2Jevil", true)]
        }))
        .unwrap();
        let out = render_list(&answer, 7200);
        assert!(!out.contains('\x1b'), "{out}");
        assert_eq!(
            out,
            "\
NAME           LAST SEEN  STATE    TASKS  PACKAGES  FAILING  REBOOT  LAST RUN                  TAGS
web-1          1h 0m ago  online   3      2         1        yes     failure 1970-01-01 00:01  canary,web
\\u{1b}[2Jevil  1h 0m ago  offline  3      2         1        yes     failure 1970-01-01 00:01  canary,web
page 1 of 1 (2 agents)
fleet: 2 agents, 1 offline, 2 failing, 2 to reboot
"
        );
    }

    #[test]
    fn one_agent_with_facts_tasks_and_runs() {
        let detail: AgentDetail = serde_json::from_value(json!({
            "agent": item("web-1", false),
            "facts": {"os": "Debian 12", "kernel": "6.1.0", "agent_version": "0.1.0",
                      "reboot_required": true, "reboot_packages": ["linux-image"],
                      "held": ["mariadb-server"], "reported_at": 3000},
            "tasks": [{"package": "zeta", "action": "update", "from_version": "1.0",
                       "to_version": "2.0", "origin": null, "security": true,
                       "needs": [{"package": "libz", "action": "install", "to_version": "1"}]}],
            "runs": {"total": 1, "page": 1, "per_page": 50, "items": [
                {"id": 1, "package": "perl", "started_at": 60, "duration_ms": 1500,
                 "exit_code": 100, "outcome": "failure", "tasks": [],
                 "output": "Reading lists\nE: \u{1b}[31mbroken\n"}]}
        }))
        .unwrap();
        let out = render_detail(&detail, 3600);
        assert!(out.contains("agent           web-1\n"), "{out}");
        assert!(
            out.contains("last seen       1970-01-01 01:00 (0s ago)\n"),
            "{out}"
        );
        assert!(out.contains("reboot required yes (linux-image)\n"), "{out}");
        assert!(out.contains("tags            canary, web\n"), "{out}");
        assert!(
            out.contains("next window     2030-01-01T00:00:00Z\n"),
            "{out}"
        );
        assert!(out.contains("held            mariadb-server\n"), "{out}");
        assert!(
            out.contains("zeta     update  1.0   2.0  yes       install libz 1\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "1970-01-01 00:01  perl     failure  100   1.5      E: \\u{1b}[31mbroken\n"
            ),
            "{out}"
        );
        assert!(!out.contains('\x1b'));
    }
}

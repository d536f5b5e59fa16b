//! `masif rollouts`, `masif rollout start`, `show` and `promote`: staged roll-outs, ring by
//! ring, with the current ring's progress.

use std::fmt::Write;

use masif_proto::Tag;
use serde_json::{json, Value};

use super::client::{ApiClient, ApiError};
use super::model::{describe, Paged, Rollout};
use super::text::{clean, or_dash, page_line, plural, unix_now, utc, when, Table};
use super::{get_page, pretty, typed, Paging, TaskSpec};

pub(crate) async fn list(
    client: &ApiClient,
    paging: &Paging,
    json: bool,
) -> Result<String, ApiError> {
    get_page(client, &["rollouts"], Vec::new(), paging, json, render_list).await
}

/// What `masif rollout start` asks for.
pub(crate) struct Start {
    pub(crate) rings: Vec<Tag>,
    pub(crate) soak: Option<u64>,
    pub(crate) max_failure_percent: u8,
    pub(crate) tasks: Vec<TaskSpec>,
}

impl Start {
    /// The body of `POST /api/v1/rollouts`.
    fn body(&self) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .map(|t| json!({"package": t.package, "action": t.action.as_str(), "to_version": t.to_version}))
            .collect();
        json!({
            "tasks": tasks,
            "rings": self.rings,
            "soak_seconds": self.soak,
            "max_failure_percent": self.max_failure_percent,
        })
    }
}

pub(crate) async fn start(
    client: &ApiClient,
    start: &Start,
    json: bool,
) -> Result<String, ApiError> {
    let value = client
        .post(&client.url(&["rollouts"], &[]), &start.body())
        .await?;
    answer(client, value, json)
}

pub(crate) async fn show(client: &ApiClient, id: u64, json: bool) -> Result<String, ApiError> {
    let value = client
        .get(&client.url(&["rollouts", &id.to_string()], &[]))
        .await?;
    answer(client, value, json)
}

pub(crate) async fn promote(
    client: &ApiClient,
    id: u64,
    force: bool,
    json: bool,
) -> Result<String, ApiError> {
    let body = match force {
        true => json!({"force": true}),
        false => json!({}),
    };
    let url = client.url(&["rollouts", &id.to_string(), "promote"], &[]);
    let value = client.post(&url, &body).await?;
    answer(client, value, json)
}

/// One roll-out answered: its JSON with `--json`, else its description.
fn answer(client: &ApiClient, value: Value, json: bool) -> Result<String, ApiError> {
    if json {
        return Ok(pretty(&value));
    }
    Ok(render_one(&typed(client, value)?, unix_now()))
}

/// `canary (1 of 2)`.
fn ring(r: &Rollout) -> String {
    let name = r
        .rings
        .get(r.current_ring_index)
        .map_or("-", String::as_str);
    format!("{name} ({} of {})", r.current_ring_index + 1, r.rings.len())
}

/// `3 agents: 1 succeeded, 0 failed`.
fn progress(r: &Rollout) -> String {
    let p = &r.ring_progress;
    format!(
        "{}: {} succeeded, {} failed",
        plural(p.agents, "agent"),
        p.succeeded,
        p.failed
    )
}

/// `1h`, or `by hand`.
fn soak(r: &Rollout) -> String {
    r.soak_seconds.map_or("by hand".into(), |s| format!("{s}s"))
}

fn render_list(page: &Paged<Rollout>) -> String {
    let mut table = Table::new(&["ID", "STATE", "RING", "PROGRESS", "SOAK", "CREATED", "BY"]);
    for r in &page.items {
        table.row([
            r.id.to_string(),
            r.state.clone(),
            ring(r),
            progress(r),
            soak(r),
            utc(r.created_at),
            r.created_by.clone(),
        ]);
    }
    let mut out = match table.is_empty() {
        true => "no roll-outs\n".to_owned(),
        false => table.render(),
    };
    out.push_str(&page_line(page.total, page.page, page.per_page, "roll-out"));
    out
}

fn render_one(r: &Rollout, now: i64) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key:<16}{value}");
    };
    line("roll-out", r.id.to_string());
    line("state", clean(&r.state));
    line("rings", clean(&r.rings.join(", ")));
    line("current ring", clean(&ring(r)));
    line("ring started", when(now, Some(r.ring_started_at)));
    line("progress", progress(r));
    line("soak", soak(r));
    line("max failures", format!("{}%", r.max_failure_percent));
    if r.halted_reason.is_some() {
        line("halted", or_dash(r.halted_reason.as_deref()));
    }
    line(
        "created",
        format!("{} by {}", utc(r.created_at), clean(&r.created_by)),
    );
    let mut tasks = Table::new(&["TASK", "FROM"]);
    for t in &r.tasks {
        tasks.row([
            describe(&t.action, &t.package, t.to_version.as_deref()),
            t.from_version.clone().unwrap_or_else(|| "any".into()),
        ]);
    }
    out.push('\n');
    out.push_str(&tasks.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> Rollout {
        serde_json::from_value(json!({
            "id": 7, "state": "halted", "rings": ["canary", "web"], "current_ring": "canary",
            "current_ring_index": 0, "ring_started_at": 3600, "soak_seconds": 600,
            "max_failure_percent": 10,
            "halted_reason": "1 of 1 agents of ring \"canary\" failed (100% > 10%): \u{1b}[2Jweb-1",
            "tasks": [{"package": "perl", "action": "update", "to_version": "5.2"}],
            "ring_progress": {"agents": 1, "succeeded": 0, "failed": 1},
            "created_by": "token:ci", "created_at": 3000
        }))
        .unwrap()
    }

    #[test]
    fn a_rollout_shows_its_ring_progress_and_escaped_reason() {
        let out = render_one(&rollout(), 7200);
        assert!(!out.contains('\x1b'), "{out}");
        assert_eq!(
            out,
            "\
roll-out        7
state           halted
rings           canary, web
current ring    canary (1 of 2)
ring started    1970-01-01 01:00 (1h 0m ago)
progress        1 agent: 0 succeeded, 1 failed
soak            600s
max failures    10%
halted          1 of 1 agents of ring \"canary\" failed (100% > 10%): \\u{1b}[2Jweb-1
created         1970-01-01 00:50 by token:ci

TASK             FROM
update perl 5.2  any
"
        );
        let page = Paged {
            total: 1,
            page: 1,
            per_page: 50,
            items: vec![rollout()],
        };
        assert_eq!(
            render_list(&page),
            "\
ID  STATE   RING             PROGRESS                        SOAK  CREATED           BY
7   halted  canary (1 of 2)  1 agent: 0 succeeded, 1 failed  600s  1970-01-01 00:50  token:ci
page 1 of 1 (1 roll-out)
"
        );
    }

    #[test]
    fn the_start_body_carries_rings_soak_and_tasks() {
        let start = Start {
            rings: vec![Tag::new("canary").unwrap(), Tag::new("prod").unwrap()],
            soak: None,
            max_failure_percent: 5,
            tasks: vec!["remove:telnet".parse().unwrap()],
        };
        assert_eq!(
            start.body(),
            json!({"tasks": [{"package": "telnet", "action": "remove", "to_version": null}],
                   "rings": ["canary", "prod"], "soak_seconds": null, "max_failure_percent": 5})
        );
    }
}

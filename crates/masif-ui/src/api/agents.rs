//! `GET /api/v1/agents` (counts, filters by name, state and tag, last contact, offline per
//! `offline_after`, pending counts, newest run, tags and maintenance windows) and `GET /api/v1/agents/{name}` (its host
//! facts, pending tasks with origin, security and needs, and its run history, paged).

use std::collections::HashMap;
use std::sync::Arc;

use masif_proto::facts::TaskFacts;
use masif_proto::v2::Outcome;
use masif_proto::{Action, AgentName, PackageName, Tag, Version};
use masif_store::schedule::rfc3339;
use masif_store::{
    AgentCounts, AgentFilter, AgentSummary, AgentWindow, HostFacts, RunRecord, TaskKey,
};
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use super::auth::Caller;
use super::error::{json, store_failed, ApiError};
use super::query::Params;
use super::Paged;
use crate::pages::status::{last_contact, Now};
use crate::App;

pub(crate) const LIST_PARAMS: &[&str] = &[
    "name",
    "offline",
    "failing",
    "reboot_required",
    "tag",
    "page",
    "per_page",
];
pub(crate) const DETAIL_PARAMS: &[&str] = &["page", "per_page"];

/// How a run ended, in the API's words.
fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "success",
        Outcome::Failed => "failure",
        Outcome::PlanChanged => "plan-changed",
    }
}

#[derive(Serialize)]
struct LastRun {
    outcome: &'static str,
    started_at: i64,
}

#[derive(Serialize)]
struct AgentItem {
    name: AgentName,
    first_seen: i64,
    last_change: i64,
    last_seen: Option<i64>,
    offline: bool,
    pending_tasks: u64,
    pending_packages: u64,
    failing_packages: u64,
    reboot_required: bool,
    last_run: Option<LastRun>,
    tags: Vec<Tag>,
    /// No windowed tag, or one of its windows is open now.
    window_open: bool,
    /// When a window opens next (now when one is open; null when not windowed or none opens
    /// again), RFC 3339.
    next_window: Option<String>,
}

impl AgentItem {
    fn new(a: AgentSummary, now: Now, window: AgentWindow) -> Self {
        Self {
            window_open: !window.windowed || window.open,
            next_window: window.next_open.map(rfc3339),
            offline: last_contact(&a) < now.offline_before,
            tags: a.tags,
            name: a.name,
            first_seen: a.ctime,
            last_change: a.mtime,
            last_seen: a.last_seen,
            pending_tasks: a.pending_tasks,
            pending_packages: a.pending_packages,
            failing_packages: a.failing_packages,
            reboot_required: a.reboot_required,
            last_run: a.last_run.map(|(o, started_at)| LastRun {
                outcome: outcome(o),
                started_at,
            }),
        }
    }
}

#[derive(Serialize)]
struct AgentsAnswer {
    #[serde(flatten)]
    paged: Paged<AgentItem>,
    counts: AgentCounts,
}

pub(crate) async fn list(_: Caller, p: Params, app: Arc<App>) -> Result<Response, Rejection> {
    let now = Now::with_offline_after(app.offline_after);
    let filter = AgentFilter {
        name: p.name_filter("name")?,
        not_seen_since: p.flag("offline")?.then_some(now.offline_before),
        failing: p.flag("failing")?,
        reboot_required: p.flag("reboot_required")?,
        tag: p.tag("tag")?,
    };
    let paging = p.paging()?;
    let (listing, counts) = tokio::try_join!(
        app.store.agents(&filter, paging.window),
        app.store.agent_counts(now.offline_before),
    )
    .map_err(store_failed)?;
    let names: Vec<AgentName> = listing.rows.iter().map(|a| a.name.clone()).collect();
    let mut windows = windows_of(&app, &names, now.now).await?;
    let items = listing
        .rows
        .into_iter()
        .map(|a| {
            let window = windows.remove(&a.name).unwrap_or_default();
            AgentItem::new(a, now, window)
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &AgentsAnswer {
            paged: Paged::new(paging, listing.total, items),
            counts,
        },
    ))
}

/// The maintenance windows of `agents` at `now`, by agent.
async fn windows_of(
    app: &App,
    agents: &[AgentName],
    now: i64,
) -> Result<HashMap<AgentName, AgentWindow>, Rejection> {
    if agents.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(app
        .store
        .agent_windows(agents, now)
        .await
        .map_err(store_failed)?
        .into_iter()
        .collect())
}

#[derive(Serialize)]
struct TaskItem {
    package: PackageName,
    action: Action,
    from_version: Option<Version>,
    to_version: Option<Version>,
    origin: Option<String>,
    security: bool,
    needs: Vec<TaskKey>,
}

#[derive(Serialize)]
struct RunTask {
    package: PackageName,
    action: Action,
    from_version: Option<Version>,
    to_version: Option<Version>,
}

#[derive(Serialize)]
struct RunItem {
    id: String,
    package: PackageName,
    started_at: i64,
    duration_ms: u64,
    exit_code: Option<i32>,
    outcome: &'static str,
    tasks: Vec<RunTask>,
    output: String,
}

impl From<RunRecord> for RunItem {
    fn from(r: RunRecord) -> Self {
        Self {
            id: r.run_id.as_str().to_owned(),
            package: r.package,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            exit_code: r.exit_code,
            outcome: outcome(r.outcome),
            tasks: r
                .tasks
                .iter()
                .map(|t| RunTask {
                    package: t.package().clone(),
                    action: t.action(),
                    from_version: t.from_version().cloned(),
                    to_version: t.to_version().cloned(),
                })
                .collect(),
            output: r.output.as_str().to_owned(),
        }
    }
}

#[derive(Serialize)]
struct AgentAnswer {
    agent: AgentItem,
    facts: Option<HostFacts>,
    tasks: Vec<TaskItem>,
    runs: Paged<RunItem>,
}

pub(crate) async fn detail(
    name: String,
    _: Caller,
    p: Params,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let shown: String = name.chars().take(60).collect();
    let name = AgentName::new(name)
        .map_err(|_| ApiError::not_found(format!("there is no agent named {shown:?}")))?;
    let paging = p.paging()?;
    let now = Now::with_offline_after(app.offline_after);
    let (detail, runs) = tokio::try_join!(
        app.store.agent_detail(&name),
        app.store.agent_runs(&name, paging.window),
    )
    .map_err(store_failed)?;
    let Some(detail) = detail else {
        return Err(ApiError::not_found(format!(
            "there is no agent named {:?}",
            name.as_str()
        )));
    };
    let window = windows_of(&app, std::slice::from_ref(&name), now.now)
        .await?
        .remove(&name)
        .unwrap_or_default();
    let tasks = detail
        .pending
        .iter()
        .map(|t| {
            let facts = detail.task_facts.get(t);
            TaskItem {
                package: t.package().clone(),
                action: t.action(),
                from_version: t.from_version().cloned(),
                to_version: t.to_version().cloned(),
                origin: facts
                    .and_then(|f| f.origin.as_ref())
                    .map(|o| o.as_str().to_owned()),
                security: facts.is_some_and(TaskFacts::is_security),
                needs: facts
                    .map(|f| f.needs.iter().map(TaskKey::from).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &AgentAnswer {
            agent: AgentItem::new(detail.agent, now, window),
            facts: detail.facts,
            tasks,
            runs: Paged::new(
                paging,
                runs.total,
                runs.rows.into_iter().map(RunItem::from).collect(),
            ),
        },
    ))
}

//! The agents list (last contact, pending counts) and the per-agent page with its pending tasks
//! and approve-for-this-agent.

use std::sync::Arc;

use masif_proto::AgentName;
use masif_store::{AgentSummary, TaskKey};
use serde::{Deserialize, Serialize};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::pending::RowView;
use super::reject::{store_failed, BadRequest, NotFound};
use super::{name_filter, window, with_app, Chrome, Pager};
use crate::auth::{user, User};
use crate::App;

/// Agents per page.
pub(crate) const PAGE_SIZE: u64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    name: Option<String>,
    page: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentQuery {
    name: String,
    approved: Option<u64>,
    written: Option<u64>,
}

#[derive(Serialize)]
struct AgentsView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    name: String,
    agents: Vec<AgentSummary>,
    pager: Pager,
}

#[derive(Serialize)]
struct TaskView {
    row: RowView,
    from_version: Option<String>,
}

#[derive(Serialize)]
struct AgentView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    agent: AgentSummary,
    tasks: Vec<TaskView>,
    notice: Option<String>,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("agents")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<ListQuery>())
        .and(with_app(app.clone()))
        .and_then(agents_page);
    let one = warp::path!("agent")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<AgentQuery>())
        .and(with_app(app))
        .and_then(agent_page);
    list.or(one).unify()
}

async fn agents_page(user: User, q: ListQuery, app: Arc<App>) -> Result<Response, Rejection> {
    let name = name_filter(q.name, "agent")?;
    let (number, page) = window(q.page, PAGE_SIZE)?;
    let listing = app
        .store
        .agents(&masif_store::AgentFilter { name: name.clone(), ..Default::default() }, page)
        .await
        .map_err(store_failed)?;
    Ok(app.templates.render(
        "agents",
        &AgentsView {
            chrome: Chrome::new(&user, "agents", "Agents"),
            name: name.clone().unwrap_or_default(),
            agents: listing.rows,
            pager: Pager::new(
                "/agents",
                &[("name", name.as_deref())],
                number,
                PAGE_SIZE,
                listing.total,
            ),
        },
    ))
}

async fn agent_page(user: User, q: AgentQuery, app: Arc<App>) -> Result<Response, Rejection> {
    let name = AgentName::new(q.name).map_err(|e| BadRequest::reject(e.to_string()))?;
    let Some(detail) = app.store.agent_detail(&name).await.map_err(store_failed)? else {
        return Err(warp::reject::custom(NotFound(format!(
            "There is no agent named {name}."
        ))));
    };
    let tasks = detail
        .pending
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = TaskKey {
                package: t.package().clone(),
                action: t.action(),
                to_version: t.to_version().cloned(),
            };
            TaskView {
                row: RowView::new(format!("t{i}"), &key, 1),
                from_version: t.from_version().map(|v| v.to_string()),
            }
        })
        .collect();
    let notice = q.approved.map(|n| {
        format!(
            "Approved {n} pending task(s) for this agent; {} approval row(s) written.",
            q.written.unwrap_or(0)
        )
    });
    Ok(app.templates.render(
        "agent",
        &AgentView {
            chrome: Chrome::new(&user, "agents", format!("Agent {name}")),
            agent: detail.agent,
            tasks,
            notice,
        },
    ))
}

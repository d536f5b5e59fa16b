//! `GET /api/v1/pending`: pending tasks grouped by package like the front page, with the
//! security count and the approved packages whose latest run failed; filters include a tag.

use std::sync::Arc;

use masif_proto::Action;
use masif_store::{PendingFilter, SecuritySummary, TaskKey};
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use super::auth::Caller;
use super::error::{json, store_failed, ApiError};
use super::query::Params;
use super::Paged;
use crate::App;

pub(crate) const PARAMS: &[&str] = &[
    "package", "agent", "action", "security", "tag", "page", "per_page",
];

#[derive(Serialize)]
struct Failing {
    package: String,
    agents: u64,
    last_failed_at: i64,
}

#[derive(Serialize)]
struct Row {
    action: Action,
    to_version: Option<String>,
    agents: u64,
    security: bool,
    since: Option<i64>,
    needs: Vec<TaskKey>,
}

#[derive(Serialize)]
struct Group {
    package: String,
    agents: u64,
    held_on: u64,
    tasks: Vec<Row>,
}

#[derive(Serialize)]
struct Answer {
    #[serde(flatten)]
    paged: Paged<Group>,
    security: SecuritySummary,
    failing: Vec<Failing>,
}

/// The `action` filter: one of the five actions.
pub(crate) fn action_filter(value: Option<String>) -> Result<Option<Action>, Rejection> {
    value
        .map(|v| {
            v.parse::<Action>().map_err(|_| {
                ApiError::bad("action must be install, update, configure, remove or purge")
            })
        })
        .transpose()
}

pub(crate) async fn list(_: Caller, p: Params, app: Arc<App>) -> Result<Response, Rejection> {
    let action = action_filter(p.text("action"))?;
    let filter = PendingFilter {
        package: p.name_filter("package")?,
        agent: p.name_filter("agent")?,
        action,
        security_only: p.flag("security")?,
        tag: p.tag("tag")?,
    };
    let paging = p.paging()?;
    let (overview, failing) = tokio::try_join!(
        app.store.pending_overview(&filter, paging.window),
        app.store.failing_packages(),
    )
    .map_err(store_failed)?;
    let items = overview
        .groups
        .into_iter()
        .map(|g| Group {
            package: g.package.to_string(),
            agents: g.agents,
            held_on: g.held_on,
            tasks: g
                .rows
                .into_iter()
                .map(|r| Row {
                    action: r.action,
                    to_version: r.to_version.map(|v| v.to_string()),
                    agents: r.agents,
                    security: r.security,
                    since: r.since,
                    needs: r.needs,
                })
                .collect(),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &Answer {
            paged: Paged::new(paging, overview.total_packages, items),
            security: overview.security,
            failing: failing
                .into_iter()
                .map(|f| Failing {
                    package: f.package.to_string(),
                    agents: f.agents,
                    last_failed_at: f.last_failed_at,
                })
                .collect(),
        },
    ))
}

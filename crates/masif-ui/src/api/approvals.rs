//! `POST /api/v1/approvals` (approve tasks for every agent or named ones; unknown agents are
//! refused before anything is written), `GET /api/v1/approvals` (the approvals in force) and
//! `DELETE /api/v1/approvals/{id}` (revoke one). Writes are audited under the caller's name.

use std::sync::Arc;

use masif_proto::{Action, AgentName, PackageName, Version};
use masif_store::{Approval, ApprovalScope, ApprovalTask, StoreError, TaskKey};
use serde::Serialize;
use serde_json::Value;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use super::auth::Caller;
use super::body::Field;
use super::error::{json, store_failed, ApiError};
use super::query::Params;
use super::Paged;
use crate::App;

pub(crate) const LIST_PARAMS: &[&str] = &["page", "per_page"];

/// Most tasks in one approval request.
pub(crate) const MAX_TASKS: usize = 1000;

/// Most agents in one approval request.
pub(crate) const MAX_AGENTS: usize = 1000;

/// One task of an approval, as given.
#[derive(Debug, Clone, Serialize)]
struct TaskIn {
    package: PackageName,
    action: Action,
    to_version: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_version: Option<Version>,
}

#[derive(Serialize)]
struct Approved {
    approvals_written: u64,
    pending_rows_approved: u64,
    tasks: Vec<TaskIn>,
    agents: Option<Vec<AgentName>>,
}

/// A valid value of a field, or a 400 naming the field.
fn valid<T, E: std::fmt::Display>(path: &str, r: Result<T, E>) -> Result<T, Rejection> {
    r.map_err(|e| ApiError::bad(format!("{path}: {e}")))
}

fn task(value: &Value, path: &str) -> Result<TaskIn, Rejection> {
    let map = Field::object(
        value,
        path,
        &["package", "action", "to_version", "from_version"],
    )?;
    let field = |name| Field::of(map, path, name);
    let f = field("package");
    let package = valid(&f.path, PackageName::new(f.string()?))?;
    let f = field("action");
    let action: Action = f.string()?.parse().map_err(|_| {
        ApiError::bad(format!(
            "{}: must be install, update, configure, remove or purge",
            f.path
        ))
    })?;
    let version = |name, required| -> Result<Option<Version>, Rejection> {
        let f: Field<'_> = field(name);
        f.nullable_string(required)?
            .map(|v| valid(&f.path, Version::new(v)))
            .transpose()
    };
    let to_version = version("to_version", true)?;
    let from_version = version("from_version", false)?;
    match (action, &to_version) {
        (Action::Install | Action::Update | Action::Configure, None) => {
            return Err(ApiError::bad(format!(
                "{path}.to_version: {action} needs a target version"
            )))
        }
        (Action::Remove | Action::Purge, Some(_)) => {
            return Err(ApiError::bad(format!(
                "{path}.to_version: must be null for {action}"
            )))
        }
        _ => {}
    }
    if from_version.is_some() && action == Action::Install {
        return Err(ApiError::bad(format!(
            "{path}.from_version: an install has no from_version"
        )));
    }
    Ok(TaskIn {
        package,
        action,
        to_version,
        from_version,
    })
}

/// The request body, validated.
fn approval_request(body: &Value) -> Result<(Vec<TaskIn>, Option<Vec<AgentName>>), Rejection> {
    let map = Field::object(body, "", &["tasks", "agents"])?;
    let tasks_field = Field::of(map, "", "tasks");
    let tasks = tasks_field
        .array(MAX_TASKS)?
        .ok_or_else(|| ApiError::bad("tasks is missing"))?;
    if tasks.is_empty() {
        return Err(ApiError::bad("tasks is empty: name at least one task"));
    }
    let tasks = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| task(t, &format!("tasks[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let agents = match Field::of(map, "", "agents").array(MAX_AGENTS)? {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ApiError::bad(
                "agents is empty: leave it out to approve for every agent",
            ))
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, a)| {
                    let path = format!("agents[{i}]");
                    let name = a
                        .as_str()
                        .ok_or_else(|| ApiError::bad(format!("{path} must be a string")))?;
                    valid(&path, AgentName::new(name))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok((tasks, agents))
}

pub(crate) async fn approve(
    caller: Caller,
    body: Value,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let (tasks, agents) = approval_request(&body)?;
    let scope = match &agents {
        None => ApprovalScope::AllAgents,
        Some(list) => ApprovalScope::Agents(list.clone()),
    };
    let approval_tasks: Vec<ApprovalTask> = tasks
        .iter()
        .map(|t| ApprovalTask {
            key: TaskKey {
                package: t.package.clone(),
                action: t.action,
                to_version: t.to_version.clone(),
            },
            from_version: t.from_version.clone(),
        })
        .collect();
    let by = caller.audit_name();
    // The store refuses an unknown agent (`Invalid`) before it writes anything.
    let outcome = app
        .store
        .approve_tasks(&approval_tasks, &scope, &by)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(msg) => ApiError::bad(format!("{msg}; nothing was approved")),
            e => store_failed(e),
        })?;
    tracing::info!(
        user = %by,
        tasks = approval_tasks.len(),
        scope = ?scope,
        approved = outcome.pending_rows_approved,
        written = outcome.approvals_written,
        "approved through the API"
    );
    Ok(json(
        StatusCode::OK,
        &Approved {
            approvals_written: outcome.approvals_written,
            pending_rows_approved: outcome.pending_rows_approved,
            tasks,
            agents,
        },
    ))
}

pub(crate) async fn list(_: Caller, p: Params, app: Arc<App>) -> Result<Response, Rejection> {
    let paging = p.paging()?;
    let listing = app
        .store
        .approvals(paging.window)
        .await
        .map_err(store_failed)?;
    Ok(json(
        StatusCode::OK,
        &Paged::<Approval>::new(paging, listing.total, listing.rows),
    ))
}

#[derive(Serialize)]
struct Revoked {
    revoked: u64,
}

pub(crate) async fn revoke(
    id: String,
    caller: Caller,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad("id must be the whole number of an approval"))?;
    let by = caller.audit_name();
    // Ids are signed 64-bit in both back ends: a larger one names no approval.
    let done =
        i64::try_from(id).is_ok() && app.store.revoke(id, &by).await.map_err(store_failed)?;
    tracing::info!(user = %by, id, done, "revoke through the API");
    if !done {
        return Err(ApiError::not_found(format!("there is no approval {id}")));
    }
    Ok(json(StatusCode::OK, &Revoked { revoked: id }))
}

//! `POST /api/v1/approvals` (approve tasks for every agent, named ones or the agents carrying a
//! tag; unknown agents and tags no agent carries are refused before anything is written),
//! `GET /api/v1/approvals` (the approvals in force) and `DELETE /api/v1/approvals/{id}`
//! (revoke one). Writes are audited under the caller's name.

use std::sync::Arc;

use masif_proto::{Action, AgentName, PackageName, Tag, Version};
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
use crate::pages::approving::log_approved;
use crate::App;

pub(crate) const LIST_PARAMS: &[&str] = &["page", "per_page"];

/// Most tasks in one approval request.
pub(crate) const MAX_TASKS: usize = 1000;

/// Most agents in one approval request.
pub(crate) const MAX_AGENTS: usize = 1000;

/// One task of an approval or roll-out, as given and as answered.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TaskIn {
    package: PackageName,
    action: Action,
    to_version: Option<Version>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_version: Option<Version>,
}

impl TaskIn {
    pub(super) fn to_store(&self) -> ApprovalTask {
        ApprovalTask {
            key: TaskKey {
                package: self.package.clone(),
                action: self.action,
                to_version: self.to_version.clone(),
            },
            from_version: self.from_version.clone(),
        }
    }
}

impl From<&ApprovalTask> for TaskIn {
    fn from(t: &ApprovalTask) -> Self {
        Self {
            package: t.key.package.clone(),
            action: t.key.action,
            to_version: t.key.to_version.clone(),
            from_version: t.from_version.clone(),
        }
    }
}

#[derive(Serialize)]
struct Approved {
    approvals_written: u64,
    pending_rows_approved: u64,
    tasks: Vec<TaskIn>,
    agents: Option<Vec<AgentName>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<Tag>,
}

/// A valid value of a field, or a 400 naming the field.
pub(super) fn valid<T, E: std::fmt::Display>(path: &str, r: Result<T, E>) -> Result<T, Rejection> {
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

/// The `tasks` of a request body (approvals and roll-outs): 1 to `max` tasks.
pub(super) fn tasks_field(
    map: &serde_json::Map<String, Value>,
    max: usize,
) -> Result<Vec<TaskIn>, Rejection> {
    let tasks = Field::of(map, "", "tasks")
        .array(max)?
        .ok_or_else(|| ApiError::bad("tasks is missing"))?;
    if tasks.is_empty() {
        return Err(ApiError::bad("tasks is empty: name at least one task"));
    }
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| task(t, &format!("tasks[{i}]")))
        .collect()
}

/// A tag given as a JSON string at `path`.
pub(super) fn tag_value(value: &Value, path: &str) -> Result<Tag, Rejection> {
    let text = value
        .as_str()
        .ok_or_else(|| ApiError::bad(format!("{path} must be a string")))?;
    valid(path, Tag::new(text))
}

/// Whom the request approves for.
enum Whom {
    All,
    Agents(Vec<AgentName>),
    Tag(Tag),
}

/// The request body, validated.
fn approval_request(body: &Value) -> Result<(Vec<TaskIn>, Whom), Rejection> {
    let map = Field::object(body, "", &["tasks", "agents", "tag"])?;
    let tasks = tasks_field(map, MAX_TASKS)?;
    if map.contains_key("tag") && map.contains_key("agents") {
        return Err(ApiError::bad(
            "tag and agents exclude each other: give one (or neither for every agent)",
        ));
    }
    if let Some(tag) = map.get("tag") {
        return Ok((tasks, Whom::Tag(tag_value(tag, "tag")?)));
    }
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
    Ok((tasks, agents.map_or(Whom::All, Whom::Agents)))
}

pub(crate) async fn approve(
    caller: Caller,
    body: Value,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let (tasks, whom) = approval_request(&body)?;
    let (scope, agents, tag) = match whom {
        Whom::All => (ApprovalScope::AllAgents, None, None),
        Whom::Agents(list) => (ApprovalScope::Agents(list.clone()), Some(list), None),
        Whom::Tag(tag) => (ApprovalScope::Tag(tag.clone()), None, Some(tag)),
    };
    let approval_tasks: Vec<ApprovalTask> = tasks.iter().map(TaskIn::to_store).collect();
    let by = caller.audit_name();
    // The store refuses an unknown agent or a tag no agent carries (`Invalid`) before it
    // writes anything.
    let outcome = app
        .store
        .approve_tasks(&approval_tasks, &scope, &by)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(msg) => ApiError::bad(format!("{msg}; nothing was approved")),
            e => store_failed(e),
        })?;
    log_approved(&by, approval_tasks.len(), &scope, &outcome, "the API");
    Ok(json(
        StatusCode::OK,
        &Approved {
            approvals_written: outcome.approvals_written,
            pending_rows_approved: outcome.pending_rows_approved,
            tasks,
            agents,
            tag,
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

//! Staged roll-outs: `GET /api/v1/rollouts` (newest first, paged), `POST /api/v1/rollouts`
//! (create one; it approves its first ring), `GET /api/v1/rollouts/{id}` (one, with its current
//! ring's progress) and `POST /api/v1/rollouts/{id}/promote` (approve the next ring by hand; a
//! halted roll-out needs `force`, a completed one cannot). Writes are audited under the
//! caller's name.

use std::collections::BTreeSet;
use std::sync::Arc;

use masif_proto::Tag;
use masif_store::{
    RingProgress, Rollout, RolloutSpec, StoreError, MAX_RINGS, MAX_ROLLOUT_TASKS, MAX_SOAK_SECS,
};
use serde::Serialize;
use serde_json::Value;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use super::approvals::{tag_value, tasks_field, TaskIn};
use super::auth::Caller;
use super::body::Field;
use super::error::{json, store_failed, ApiError};
use super::query::Params;
use super::Paged;
use crate::App;

pub(crate) const LIST_PARAMS: &[&str] = &["page", "per_page"];

/// A roll-out as the API answers it.
#[derive(Serialize)]
struct RolloutOut {
    id: u64,
    state: &'static str,
    rings: Vec<Tag>,
    /// The tag of the ring approved last.
    current_ring: Option<Tag>,
    current_ring_index: usize,
    ring_started_at: i64,
    soak_seconds: Option<u64>,
    max_failure_percent: u8,
    halted_reason: Option<String>,
    tasks: Vec<TaskIn>,
    ring_progress: RingProgress,
    created_by: String,
    created_at: i64,
}

impl From<Rollout> for RolloutOut {
    fn from(r: Rollout) -> Self {
        Self {
            id: r.id,
            state: r.state.as_str(),
            current_ring: r.rings.get(r.current_ring).cloned(),
            rings: r.rings,
            current_ring_index: r.current_ring,
            ring_started_at: r.ring_started_at,
            soak_seconds: r.soak_secs,
            max_failure_percent: r.max_failure_percent,
            halted_reason: r.halted_reason,
            tasks: r.tasks.iter().map(TaskIn::from).collect(),
            ring_progress: r.ring,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

pub(crate) async fn list(_: Caller, p: Params, app: Arc<App>) -> Result<Response, Rejection> {
    let paging = p.paging()?;
    let listing = app
        .store
        .rollouts(paging.window)
        .await
        .map_err(store_failed)?;
    let items = listing.rows.into_iter().map(RolloutOut::from).collect();
    Ok(json(
        StatusCode::OK,
        &Paged::<RolloutOut>::new(paging, listing.total, items),
    ))
}

/// The body of `POST /api/v1/rollouts`, validated.
fn spec(body: &Value) -> Result<RolloutSpec, Rejection> {
    let map = Field::object(
        body,
        "",
        &["tasks", "rings", "soak_seconds", "max_failure_percent"],
    )?;
    let tasks = tasks_field(map, MAX_ROLLOUT_TASKS)?
        .iter()
        .map(TaskIn::to_store)
        .collect();
    let rings = Field::of(map, "", "rings")
        .array(MAX_RINGS)?
        .ok_or_else(|| ApiError::bad("rings is missing"))?;
    if rings.is_empty() {
        return Err(ApiError::bad("rings is empty: name at least one tag"));
    }
    let mut seen = BTreeSet::new();
    let rings = rings
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("rings[{i}]");
            let tag = tag_value(v, &path)?;
            if !seen.insert(tag.clone()) {
                return Err(ApiError::bad(format!("{path}: repeats the ring {tag}")));
            }
            Ok(tag)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let soak_secs = match map.get("soak_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|s| *s <= MAX_SOAK_SECS).ok_or_else(|| {
            ApiError::bad(format!(
                "soak_seconds must be null or a whole number from 0 to {MAX_SOAK_SECS}"
            ))
        })?),
    };
    let max_failure_percent = match map.get("max_failure_percent") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|p| u8::try_from(p).ok())
            .filter(|p| *p <= 100)
            .ok_or_else(|| {
                ApiError::bad("max_failure_percent must be a whole number from 0 to 100")
            })?,
    };
    Ok(RolloutSpec {
        tasks,
        rings,
        soak_secs,
        max_failure_percent,
    })
}

pub(crate) async fn create(
    caller: Caller,
    body: Value,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let spec = spec(&body)?;
    let by = caller.audit_name();
    let rollout = app
        .store
        .create_rollout(&spec, &by, super::now())
        .await
        .map_err(|e| match e {
            StoreError::Invalid(msg) => ApiError::bad(format!("{msg}; nothing was created")),
            e => store_failed(e),
        })?;
    tracing::info!(user = %by, id = rollout.id, rings = ?spec.rings, "roll-out created through the API");
    Ok(json(StatusCode::CREATED, &RolloutOut::from(rollout)))
}

/// The roll-out a path segment names: 400 when not a number, 404 when no roll-out has it.
async fn find(app: &App, id: &str) -> Result<Rollout, Rejection> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad("id must be the whole number of a roll-out"))?;
    // Ids are signed 64-bit in both back ends: a larger one names no roll-out.
    let found = match i64::try_from(id) {
        Ok(_) => app.store.rollout(id).await.map_err(store_failed)?,
        Err(_) => None,
    };
    found.ok_or_else(|| ApiError::not_found(format!("there is no roll-out {id}")))
}

pub(crate) async fn show(id: String, _: Caller, app: Arc<App>) -> Result<Response, Rejection> {
    let rollout = find(&app, &id).await?;
    Ok(json(StatusCode::OK, &RolloutOut::from(rollout)))
}

/// `force` of the promote body: `{}` or `{"force": true|false}`.
fn force(body: &Value) -> Result<bool, Rejection> {
    let map = Field::object(body, "", &["force"])?;
    match map.get("force") {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad("force must be true or false")),
    }
}

pub(crate) async fn promote(
    id: String,
    caller: Caller,
    body: Value,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let force = force(&body)?;
    let id = find(&app, &id).await?.id;
    let by = caller.audit_name();
    // The store refuses a halted roll-out without force and a completed one: a conflict with
    // the roll-out's state, not bad input.
    let rollout = app
        .store
        .promote_rollout(id, &by, super::now(), force)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(msg) => ApiError::reject(StatusCode::CONFLICT, msg),
            e => store_failed(e),
        })?;
    tracing::info!(user = %by, id, force, ring = rollout.current_ring, "roll-out promoted through the API");
    Ok(json(StatusCode::OK, &RolloutOut::from(rollout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task() -> Value {
        json!({"package": "perl", "action": "update", "to_version": "5.2"})
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        let ok = spec(&json!({"tasks": [task()], "rings": ["canary", "prod"],
                              "soak_seconds": 3600, "max_failure_percent": 10}))
        .unwrap();
        assert_eq!(ok.rings.len(), 2);
        assert_eq!((ok.soak_secs, ok.max_failure_percent), (Some(3600), 10));
        let minimal = spec(&json!({"tasks": [task()], "rings": ["canary"]})).unwrap();
        assert_eq!((minimal.soak_secs, minimal.max_failure_percent), (None, 0));
        let rings = |r: Value| json!({"tasks": [task()], "rings": r});
        for (body, want) in [
            (json!({"rings": ["a"]}), "tasks is missing"),
            (json!({"tasks": [task()]}), "rings is missing"),
            (rings(json!([])), "rings is empty"),
            (rings(json!(["a", "a"])), "rings[1]: repeats"),
            (rings(json!(["a", "-b"])), "rings[1]: must be"),
            (rings(json!(["a", 5])), "rings[1] must be a string"),
            (rings(json!(vec!["a"; 11])), "more than 10"),
            (rings(json!("a")), "rings must be an array"),
            (
                json!({"tasks": [task()], "rings": ["a"], "soak_seconds": 2_592_001}),
                "soak_seconds must be",
            ),
            (
                json!({"tasks": [task()], "rings": ["a"], "soak_seconds": -1}),
                "soak_seconds must be",
            ),
            (
                json!({"tasks": [task()], "rings": ["a"], "max_failure_percent": 101}),
                "max_failure_percent must be",
            ),
            (
                json!({"tasks": [task()], "rings": ["a"], "max_failure_percent": null}),
                "max_failure_percent must be",
            ),
            (
                json!({"tasks": [task()], "rings": ["a"], "ring": 1}),
                "unknown field",
            ),
        ] {
            let e = format!("{:?}", spec(&body).unwrap_err());
            assert!(e.contains(want), "{body}: {e}");
        }
        assert!(force(&json!({})).is_ok_and(|f| !f));
        assert!(force(&json!({"force": true})).is_ok_and(|f| f));
        assert!(format!("{:?}", force(&json!({"force": 1})).unwrap_err()).contains("force"));
        assert!(format!("{:?}", force(&json!({"forc": true})).unwrap_err()).contains("unknown"));
    }
}

//! `GET /api/v1/tags` (every tag with its agents, max in flight, maintenance windows and live
//! leases) and `PUT /api/v1/tags/{tag}` (replace a tag's max in flight and windows; audited
//! under the caller's name).

use std::sync::Arc;

use masif_proto::Tag;
use masif_store::schedule::Window;
use masif_store::{TagInfo, TagSettings};
use serde::Serialize;
use serde_json::Value;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use super::approvals::valid;
use super::auth::Caller;
use super::body::Field;
use super::error::{json, store_failed, ApiError};
use super::query::Params;
use crate::App;

pub(crate) const LIST_PARAMS: &[&str] = &[];

/// Largest max in flight of a tag (the store's bound).
const MAX_IN_FLIGHT: u64 = masif_store::MAX_IN_FLIGHT as u64;

#[derive(Serialize)]
struct Tags {
    tags: Vec<TagInfo>,
}

pub(crate) async fn list(_: Caller, _: Params, app: Arc<App>) -> Result<Response, Rejection> {
    let tags = app.store.tags(super::now()).await.map_err(store_failed)?;
    Ok(json(StatusCode::OK, &Tags { tags }))
}

/// The tag of a path segment.
pub(super) fn tag_segment(raw: &str) -> Result<Tag, Rejection> {
    valid("tag", Tag::new(raw))
}

/// The body of `PUT /api/v1/tags/{tag}`, validated: both fields required.
fn settings(body: &Value) -> Result<TagSettings, Rejection> {
    let map = Field::object(body, "", &["max_in_flight", "windows"])?;
    let max_in_flight = match map.get("max_in_flight") {
        None => {
            return Err(ApiError::bad(
                "max_in_flight is missing (null for no limit)",
            ))
        }
        Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|k| (1..=MAX_IN_FLIGHT).contains(k))
                .and_then(|k| u32::try_from(k).ok())
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "max_in_flight must be null or a whole number from 1 to {MAX_IN_FLIGHT}"
                    ))
                })?,
        ),
    };
    let windows = map
        .get("windows")
        .ok_or_else(|| ApiError::bad("windows is missing ([] for any time)"))?;
    let windows =
        Window::parse_list(windows, "windows").map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(TagSettings {
        max_in_flight,
        windows,
    })
}

pub(crate) async fn set(
    tag: String,
    caller: Caller,
    body: Value,
    app: Arc<App>,
) -> Result<Response, Rejection> {
    let tag = tag_segment(&tag)?;
    let settings = settings(&body)?;
    let by = caller.audit_name();
    app.store
        .set_tag(&tag, &settings, &by)
        .await
        .map_err(store_failed)?;
    tracing::info!(user = %by, tag = %tag, ?settings, "tag set through the API");
    let info = app
        .store
        .tags(super::now())
        .await
        .map_err(store_failed)?
        .into_iter()
        .find(|t| t.tag == tag)
        // A tag no agent carries and without settings is listed nowhere: nothing to count.
        .unwrap_or(TagInfo {
            tag,
            agents: 0,
            settings,
            leases: 0,
        });
    Ok(json(StatusCode::OK, &info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(body: Value) -> String {
        let r = settings(&body).unwrap_err();
        format!("{:?}", r)
    }

    #[test]
    fn settings_need_both_fields_and_name_the_bad_one() {
        let ok = settings(&json!({"max_in_flight": 3, "windows": [
            {"days": ["mon"], "start": "01:00", "end": "02:00", "time_zone": "UTC"}]}))
        .unwrap();
        assert_eq!(ok.max_in_flight, Some(3));
        assert_eq!(ok.windows.len(), 1);
        let none = settings(&json!({"max_in_flight": null, "windows": []})).unwrap();
        assert_eq!(none, TagSettings::default());
        for (body, want) in [
            (json!({"windows": []}), "max_in_flight is missing"),
            (json!({"max_in_flight": null}), "windows is missing"),
            (
                json!({"max_in_flight": 0, "windows": []}),
                "max_in_flight must be",
            ),
            (
                json!({"max_in_flight": 100_001, "windows": []}),
                "max_in_flight must be",
            ),
            (
                json!({"max_in_flight": -1, "windows": []}),
                "max_in_flight must be",
            ),
            (
                json!({"max_in_flight": 1.5, "windows": []}),
                "max_in_flight must be",
            ),
            (
                json!({"max_in_flight": "2", "windows": []}),
                "max_in_flight must be",
            ),
            (
                json!({"max_in_flight": null, "windows": {}}),
                "windows: not an array",
            ),
            (
                json!({"max_in_flight": null, "windows": [{"days": ["mon"], "start": "01:00",
                        "end": "02:00", "time_zone": "Mars/Base"}]}),
                "windows[0].time_zone: unknown time zone",
            ),
            (
                json!({"max_in_flight": null, "windows": [], "x": 1}),
                "unknown field",
            ),
        ] {
            let e = error(body.clone());
            assert!(e.contains(want), "{body}: {e}");
        }
    }
}

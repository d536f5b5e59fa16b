//! The Tags page: every tag an agent carries or that has settings, with its agents, max in
//! flight, live leases and maintenance windows (readable, and whether one is open), an edit
//! form per tag and one for a tag no agent carries yet. A refused form comes back with its
//! values and the reason; nothing is written.

use std::sync::Arc;

use masif_proto::Tag;
use masif_store::{schedule, TagInfo, TagSettings};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::reject::{store_failed, BadRequest};
use super::windows::{self, agent_window_text};
use super::{with_app, Chrome};
use crate::auth::{redirect, user, User};
use crate::form::{self, field, Form};
use crate::render::{query_string, unix_now};
use crate::App;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    /// The tag just saved.
    saved: Option<String>,
}

/// The values of one edit form, as shown or as submitted.
#[derive(Serialize, Default)]
struct TagForm {
    tag: String,
    max_in_flight: String,
    windows: String,
    error: Option<String>,
}

#[derive(Serialize)]
struct TagRow {
    /// Element id suffix.
    id: String,
    tag: String,
    agents: u64,
    max_in_flight: Option<u32>,
    leases: u64,
    windows: Vec<String>,
    /// `open now`, `next: …` for a tag with windows.
    window_state: Option<String>,
    form: TagForm,
}

#[derive(Serialize)]
struct TagsView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    tags: Vec<TagRow>,
    new_tag: TagForm,
    notice: Option<String>,
    error: Option<String>,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let show = warp::path!("tags")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<Query>())
        .and(with_app(app.clone()))
        .and_then(|user: User, q: Query, app: Arc<App>| async move {
            let notice = match q.saved {
                Some(t) => {
                    let tag = Tag::new(t).map_err(|e| BadRequest::reject(format!("saved: {e}")))?;
                    Some(format!("Saved the settings of tag {tag}."))
                }
                None => None,
            };
            page(&user, &app, notice, None).await
        });
    let save = warp::path!("tags")
        .and(warp::post())
        .and(user(app.clone()))
        .and(form::body())
        .and(with_app(app))
        .and_then(save);
    show.or(save).unify()
}

async fn page(
    user: &User,
    app: &App,
    notice: Option<String>,
    refused: Option<TagForm>,
) -> Result<Response, Rejection> {
    let now = unix_now();
    let tags = app.store.tags(now).await.map_err(store_failed)?;
    let error = refused.as_ref().and_then(|f| f.error.clone());
    let mut refused = refused;
    let tags: Vec<TagRow> = tags
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let form = match refused.take_if(|f| f.tag == t.tag.as_str()) {
                Some(f) => f,
                None => TagForm {
                    tag: t.tag.to_string(),
                    max_in_flight: t
                        .settings
                        .max_in_flight
                        .map(|k| k.to_string())
                        .unwrap_or_default(),
                    windows: windows::to_text(&t.settings.windows),
                    error: None,
                },
            };
            row(i, t, form, now)
        })
        .collect();
    let failed = error.is_some();
    let mut response = app.templates.render(
        "tags",
        &TagsView {
            chrome: Chrome::new(user, "tags", "Tags"),
            tags,
            new_tag: refused.unwrap_or_default(),
            notice,
            error,
        },
    );
    if failed && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

fn row(i: usize, t: TagInfo, form: TagForm, now: i64) -> TagRow {
    let windows = &t.settings.windows;
    let window_state = agent_window_text(&masif_store::AgentWindow {
        windowed: !windows.is_empty(),
        open: schedule::open_at(windows, now),
        next_open: schedule::next_open(windows, now),
    });
    TagRow {
        id: format!("t{i}"),
        tag: t.tag.to_string(),
        agents: t.agents,
        max_in_flight: t.settings.max_in_flight,
        leases: t.leases,
        windows: windows.iter().map(windows::readable).collect(),
        window_state,
        form,
    }
}

/// `POST /tags`: `tag`, `max_in_flight` (empty: no limit) and `windows` (one per line).
async fn save(user: User, form: Form, app: Arc<App>) -> Result<Response, Rejection> {
    app.auth.check_csrf(&user, &form)?;
    let submitted = TagForm {
        tag: field(&form, "tag").unwrap_or("").trim().to_owned(),
        max_in_flight: field(&form, "max_in_flight")
            .unwrap_or("")
            .trim()
            .to_owned(),
        windows: field(&form, "windows").unwrap_or("").to_owned(),
        error: None,
    };
    match read(&submitted) {
        Ok((tag, settings)) => {
            app.store
                .set_tag(&tag, &settings, &user.name)
                .await
                .map_err(store_failed)?;
            tracing::info!(user = %user.name, %tag, ?settings, "tag settings saved");
            Ok(redirect(&format!(
                "/tags{}",
                query_string(&[("saved", Some(tag.as_str()))])
            )))
        }
        Err(error) => {
            // Oversized values are not shown back.
            let mut refused = submitted;
            if refused.windows.len() > windows::MAX_WINDOWS_TEXT {
                refused.windows.clear();
            }
            if refused.tag.len() > 4 * masif_proto::MAX_TAG_CHARS {
                refused.tag.clear();
            }
            refused.max_in_flight.truncate(40);
            while !refused
                .max_in_flight
                .is_char_boundary(refused.max_in_flight.len())
            {
                refused.max_in_flight.pop();
            }
            refused.error = Some(error);
            page(&user, &app, None, Some(refused)).await
        }
    }
}

/// The tag and settings of a submitted form, or why not.
fn read(form: &TagForm) -> Result<(Tag, TagSettings), String> {
    if form.tag.is_empty() {
        return Err("tag: enter a tag name".into());
    }
    let tag = Tag::new(form.tag.as_str()).map_err(|e| format!("tag: {e}"))?;
    let max_in_flight = match form.max_in_flight.as_str() {
        "" | "none" => None,
        k => Some(
            k.parse::<u32>()
                .ok()
                .filter(|k| (1..=masif_store::MAX_IN_FLIGHT).contains(k))
                .ok_or_else(|| {
                    format!(
                        "max in flight: must be a whole number from 1 to {} (empty: no limit)",
                        masif_store::MAX_IN_FLIGHT
                    )
                })?,
        ),
    };
    let windows = windows::parse_text(&form.windows)?;
    Ok((
        tag,
        TagSettings {
            max_in_flight,
            windows,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(tag: &str, max: &str, windows: &str) -> TagForm {
        TagForm {
            tag: tag.into(),
            max_in_flight: max.into(),
            windows: windows.into(),
            error: None,
        }
    }

    #[test]
    fn forms_read_or_name_the_field() {
        let (tag, s) = read(&form("web", "2", "mon 22:00-24:00 UTC")).unwrap();
        assert_eq!(tag.as_str(), "web");
        assert_eq!(s.max_in_flight, Some(2));
        assert_eq!(s.windows.len(), 1);
        let (_, s) = read(&form("web", "", "")).unwrap();
        assert_eq!(s, TagSettings::default());
        for (f, error) in [
            (form("", "", ""), "tag: enter"),
            (form("<b>", "", ""), "tag: must be"),
            (form("web", "0", ""), "max in flight:"),
            (form("web", "100001", ""), "max in flight:"),
            (form("web", "-1", ""), "max in flight:"),
            (form("web", "", "mon 1-2 UTC"), "window 1: start"),
        ] {
            let e = read(&f).unwrap_err();
            assert!(e.starts_with(error), "{e}");
        }
    }
}

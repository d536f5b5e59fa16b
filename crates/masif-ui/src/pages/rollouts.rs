//! Staged roll-outs: the list (state, current ring, its progress, why one halted), one
//! roll-out with its rings, tasks and the promote button ("promote anyway" when halted), and
//! starting one from the pending page's selection (rings as a comma list of tags, soak time,
//! failure threshold). A refused start form comes back with its values and the reason.

use std::sync::Arc;

use masif_proto::Tag;
use masif_store::{
    ApprovalTask, Rollout, RolloutSpec, RolloutState, StoreError, TaskKey, MAX_RINGS,
    MAX_ROLLOUT_TASKS, MAX_SOAK_SECS,
};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::agents::offline_after_phrase;
use super::pending::RowView;
use super::reject::{store_failed, BadRequest, NotFound};
use super::{window, with_app, Chrome, Pager};
use crate::auth::{redirect, user, User};
use crate::form::{self, field, Form};
use crate::render::{format_time, unix_now};
use crate::App;

/// Roll-outs per page.
pub(crate) const PAGE_SIZE: u64 = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    page: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailQuery {
    /// `1`: just started; `2`: just promoted.
    done: Option<u8>,
}

/// A ring and where the roll-out stands with it.
#[derive(Serialize)]
struct RingView {
    tag: String,
    /// `approved`, `current` or `waiting`.
    status: &'static str,
}

#[derive(Serialize)]
struct RolloutView {
    id: u64,
    state: &'static str,
    rings: Vec<RingView>,
    current_ring: String,
    /// 1-based.
    ring_number: usize,
    ring_count: usize,
    ring_started: String,
    /// `1 h`, or `None`: promotion by hand only.
    soak: Option<String>,
    /// When the soak time of the current ring ends.
    promote_after: Option<String>,
    max_failure_percent: u8,
    halted_reason: Option<String>,
    agents: u64,
    succeeded: u64,
    failed: u64,
    /// Agents of the ring without a result yet.
    waiting: u64,
    tasks: Vec<String>,
    task_count: usize,
    created_by: String,
    created_at: String,
    /// Running or halted, with a ring left.
    can_promote: bool,
    halted: bool,
}

impl RolloutView {
    fn new(r: Rollout) -> Self {
        let current = r.current_ring;
        let more = current + 1 < r.rings.len();
        Self {
            id: r.id,
            state: r.state.as_str(),
            rings: r
                .rings
                .iter()
                .enumerate()
                .map(|(i, tag)| RingView {
                    tag: tag.to_string(),
                    status: match i.cmp(&current) {
                        _ if r.state == RolloutState::Completed => "approved",
                        std::cmp::Ordering::Less => "approved",
                        std::cmp::Ordering::Equal => "current",
                        std::cmp::Ordering::Greater => "waiting",
                    },
                })
                .collect(),
            current_ring: r
                .rings
                .get(current)
                .map(ToString::to_string)
                .unwrap_or_default(),
            ring_number: current + 1,
            ring_count: r.rings.len(),
            ring_started: format_time(r.ring_started_at),
            soak: r
                .soak_secs
                .map(|s| offline_after_phrase(i64::try_from(s).unwrap_or(i64::MAX))),
            promote_after: r
                .soak_secs
                .filter(|_| r.state == RolloutState::Running && more)
                .map(|s| format_time(r.ring_started_at.saturating_add_unsigned(s))),
            max_failure_percent: r.max_failure_percent,
            halted_reason: r.halted_reason,
            agents: r.ring.agents,
            succeeded: r.ring.succeeded,
            failed: r.ring.failed,
            waiting: r
                .ring
                .agents
                .saturating_sub(r.ring.succeeded + r.ring.failed),
            tasks: r.tasks.iter().map(task_text).collect(),
            task_count: r.tasks.len(),
            created_by: r.created_by,
            created_at: format_time(r.created_at),
            can_promote: more && r.state != RolloutState::Completed,
            halted: r.state == RolloutState::Halted,
        }
    }
}

/// `update perl → 5.2`.
fn task_text(t: &ApprovalTask) -> String {
    let k = &t.key;
    match &k.to_version {
        Some(v) => format!("{} {} → {v}", k.action.as_str(), k.package),
        None => format!("{} {}", k.action.as_str(), k.package),
    }
}

#[derive(Serialize)]
struct ListView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    rollouts: Vec<RolloutView>,
    pager: Pager,
}

#[derive(Serialize)]
struct DetailView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    rollout: RolloutView,
    notice: Option<String>,
    error: Option<String>,
}

/// The start form's values, as shown or as submitted.
#[derive(Serialize)]
struct StartView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    keys: Vec<RowView>,
    rings: String,
    soak_seconds: String,
    max_failure_percent: String,
    error: Option<String>,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("rollouts")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<ListQuery>())
        .and(with_app(app.clone()))
        .and_then(list_page);
    let detail = warp::path!("rollouts" / u64)
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<DetailQuery>())
        .and(with_app(app.clone()))
        .and_then(
            |id: u64, user: User, q: DetailQuery, app: Arc<App>| async move {
                let notice = match q.done {
                    None => None,
                    Some(1) => Some("Roll-out started: its first ring is approved.".to_owned()),
                    Some(2) => Some("Promoted: the next ring is approved.".to_owned()),
                    Some(_) => return Err(BadRequest::reject("done must be 1 or 2")),
                };
                detail_page(id, &user, &app, notice, None).await
            },
        );
    let start = warp::path!("rollouts")
        .and(warp::post())
        .and(user(app.clone()))
        .and(form::body())
        .and(with_app(app.clone()))
        .and_then(start);
    let promote = warp::path!("rollouts" / u64 / "promote")
        .and(warp::post())
        .and(user(app.clone()))
        .and(form::body())
        .and(with_app(app))
        .and_then(promote);
    list.or(detail)
        .unify()
        .or(start)
        .unify()
        .or(promote)
        .unify()
}

async fn list_page(user: User, q: ListQuery, app: Arc<App>) -> Result<Response, Rejection> {
    let (number, page) = window(q.page, PAGE_SIZE)?;
    let listing = app.store.rollouts(page).await.map_err(store_failed)?;
    Ok(app.templates.render(
        "rollouts",
        &ListView {
            chrome: Chrome::new(&user, "rollouts", "Roll-outs"),
            rollouts: listing.rows.into_iter().map(RolloutView::new).collect(),
            pager: Pager::new("/rollouts", &[], number, PAGE_SIZE, listing.total),
        },
    ))
}

async fn detail_page(
    id: u64,
    user: &User,
    app: &App,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Response, Rejection> {
    let Some(rollout) = app.store.rollout(id).await.map_err(store_failed)? else {
        return Err(warp::reject::custom(NotFound(format!(
            "There is no roll-out {id}."
        ))));
    };
    let failed = error.is_some();
    let mut response = app.templates.render(
        "rollout",
        &DetailView {
            chrome: Chrome::new(user, "rollouts", format!("Roll-out {id}")),
            rollout: RolloutView::new(rollout),
            notice,
            error,
        },
    );
    if failed && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::CONFLICT;
    }
    Ok(response)
}

/// `POST /rollouts/{id}/promote`, with `force=1` to promote a halted roll-out anyway.
async fn promote(id: u64, user: User, form: Form, app: Arc<App>) -> Result<Response, Rejection> {
    app.auth.check_csrf(&user, &form)?;
    let force = match field(&form, "force") {
        None | Some("") => false,
        Some("1") => true,
        Some(_) => return Err(BadRequest::reject("force must be 1 or absent")),
    };
    match app
        .store
        .promote_rollout(id, &user.name, unix_now(), force)
        .await
    {
        Ok(r) => {
            tracing::info!(user = %user.name, id, force, ring = r.current_ring, "roll-out promoted");
            Ok(redirect(&format!("/rollouts/{id}?done=2")))
        }
        // An unknown roll-out is a 404 from the detail page.
        Err(StoreError::Invalid(why)) => {
            detail_page(id, &user, &app, None, Some(format!("Not promoted: {why}"))).await
        }
        Err(e) => Err(store_failed(e)),
    }
}

/// The start form for the pending page's selection (`do=rollout` of `POST /approve`).
pub(crate) fn start_form(user: &User, app: &App, keys: &[TaskKey]) -> Response {
    let view = start_view(user, keys, "", "", "10", None);
    app.templates.render("rollout_new", &view)
}

fn start_view<'a>(
    user: &'a User,
    keys: &[TaskKey],
    rings: &str,
    soak_seconds: &str,
    max_failure_percent: &str,
    error: Option<String>,
) -> StartView<'a> {
    // Oversized values are not shown back.
    let short = |s: &str, max: usize| {
        if s.len() > max {
            String::new()
        } else {
            s.to_owned()
        }
    };
    StartView {
        chrome: Chrome::new(user, "rollouts", "Start a roll-out"),
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, k)| RowView::new(format!("s{i}"), k, 0))
            .collect(),
        rings: short(rings, MAX_RINGS * (masif_proto::MAX_TAG_CHARS + 2)),
        soak_seconds: short(soak_seconds, 20),
        max_failure_percent: short(max_failure_percent, 20),
        error,
    }
}

/// `POST /rollouts`: the ticked `key`s, `rings` (comma list of tags), `soak_seconds` (empty:
/// promote by hand only) and `max_failure_percent`.
async fn start(user: User, form: Form, app: Arc<App>) -> Result<Response, Rejection> {
    app.auth.check_csrf(&user, &form)?;
    let keys = form::keys(&form)?;
    let rings = field(&form, "rings").unwrap_or("").trim();
    let soak = field(&form, "soak_seconds").unwrap_or("").trim();
    let percent = field(&form, "max_failure_percent").unwrap_or("").trim();
    let refused = |error: String| {
        let view = start_view(&user, &keys, rings, soak, percent, Some(error));
        let mut r = app.templates.render("rollout_new", &view);
        if r.status() == StatusCode::OK {
            *r.status_mut() = StatusCode::BAD_REQUEST;
        }
        r
    };
    let spec = match read_spec(&keys, rings, soak, percent) {
        Ok(spec) => spec,
        Err(e) => return Ok(refused(e)),
    };
    match app
        .store
        .create_rollout(&spec, &user.name, unix_now())
        .await
    {
        Ok(r) => {
            tracing::info!(user = %user.name, id = r.id, rings = ?spec.rings, "roll-out started");
            Ok(redirect(&format!("/rollouts/{}?done=1", r.id)))
        }
        Err(StoreError::Invalid(why)) => Ok(refused(why)),
        Err(e) => Err(store_failed(e)),
    }
}

/// The roll-out a start form describes, or why not (naming the field).
fn read_spec(
    keys: &[TaskKey],
    rings: &str,
    soak: &str,
    percent: &str,
) -> Result<RolloutSpec, String> {
    if keys.len() > MAX_ROLLOUT_TASKS {
        return Err(format!(
            "tasks: at most {MAX_ROLLOUT_TASKS} in one roll-out"
        ));
    }
    let mut tags: Vec<Tag> = Vec::new();
    for part in rings.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let tag =
            Tag::new(part).map_err(|e| format!("rings: {}: {e}", masif_proto::quote(part, 40)))?;
        if tags.contains(&tag) {
            return Err(format!("rings: {tag} is listed twice"));
        }
        tags.push(tag);
    }
    if tags.is_empty() || tags.len() > MAX_RINGS {
        return Err(format!(
            "rings: enter 1 to {MAX_RINGS} tags, separated by commas (canary, prod)"
        ));
    }
    let soak_secs = match soak {
        "" => None,
        s => Some(
            s.parse::<u64>()
                .ok()
                .filter(|s| *s <= MAX_SOAK_SECS)
                .ok_or_else(|| {
                    format!(
                        "soak seconds: must be a whole number from 0 to {MAX_SOAK_SECS} \
                         (empty: promote by hand only)"
                    )
                })?,
        ),
    };
    let max_failure_percent = percent
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or("max failure percent: must be a whole number from 0 to 100")?;
    Ok(RolloutSpec {
        tasks: keys.iter().cloned().map(ApprovalTask::from).collect(),
        rings: tags,
        soak_secs,
        max_failure_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(name: &str, view: &impl Serialize) -> String {
        crate::render::Templates::new()
            .unwrap()
            .render_text(name, view)
    }

    #[test]
    fn a_halted_roll_out_says_why_as_text_and_offers_force() {
        let rollout = Rollout {
            id: 7,
            tasks: vec![],
            rings: vec![Tag::new("canary").unwrap(), Tag::new("prod").unwrap()],
            soak_secs: Some(3600),
            max_failure_percent: 20,
            state: RolloutState::Halted,
            current_ring: 0,
            ring_started_at: 0,
            halted_reason: Some("1 of 1 agents failed: <script>alert(1)</script>".into()),
            created_by: "<b>admin</b>".into(),
            created_at: 0,
            ring: masif_store::RingProgress {
                agents: 1,
                succeeded: 0,
                failed: 1,
            },
        };
        let chrome = || Chrome {
            title: "Roll-out 7".into(),
            user: Some("admin"),
            csrf: "t0k",
            active: "rollouts",
        };
        let html = render(
            "rollout",
            &DetailView {
                chrome: chrome(),
                rollout: RolloutView::new(rollout.clone()),
                notice: None,
                error: None,
            },
        );
        assert!(
            !html.contains("<script>alert") && !html.contains("<b>admin"),
            "{html}"
        );
        assert!(
            html.contains("failed: &lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("name=\"force\" value=\"1\""), "{html}");
        assert!(html.contains("name=\"csrf\" value=\"t0k\""), "{html}");
        assert!(html.contains("Promote anyway"), "{html}");
        assert!(
            !html.contains("this ring: from"),
            "a halted ring does not promote by itself"
        );
        let html = render(
            "rollouts",
            &ListView {
                chrome: chrome(),
                rollouts: vec![RolloutView::new(rollout)],
                pager: Pager::new("/rollouts", &[], 1, PAGE_SIZE, 1),
            },
        );
        assert!(html.contains("<strong>Halted:</strong> 1 of 1 agents failed: &lt;script&gt;"));
        assert!(
            html.contains("<strong class=\"failing\">1 failed</strong>"),
            "{html}"
        );
    }

    #[test]
    fn start_forms_read_or_name_the_field() {
        let keys = vec![TaskKey {
            package: masif_proto::PackageName::new("perl").unwrap(),
            action: masif_proto::Action::Update,
            to_version: Some(masif_proto::Version::new("5.2").unwrap()),
        }];
        let spec = read_spec(&keys, " canary, prod ,", "3600", "20").unwrap();
        assert_eq!(spec.rings.len(), 2);
        assert_eq!(spec.soak_secs, Some(3600));
        assert_eq!(spec.max_failure_percent, 20);
        assert_eq!(read_spec(&keys, "canary", "", "0").unwrap().soak_secs, None);
        for (rings, soak, percent, error) in [
            ("", "", "0", "rings: enter"),
            ("a,b,c,d,e,f,g,h,i,j,k", "", "0", "rings: enter"),
            ("canary,canary", "", "0", "rings: canary is listed twice"),
            ("<b>x</b>", "", "0", "rings: \"<b>x</b>\": must be"),
            ("canary", "-1", "0", "soak seconds:"),
            ("canary", "2592001", "0", "soak seconds:"),
            ("canary", "", "101", "max failure percent:"),
            ("canary", "", "", "max failure percent:"),
        ] {
            let e = read_spec(&keys, rings, soak, percent).unwrap_err();
            assert!(e.starts_with(error), "{rings} {soak} {percent}: {e}");
        }
    }
}

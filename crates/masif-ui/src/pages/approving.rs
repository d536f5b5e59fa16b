//! Large approvals in the background: `POST /approve` waits a second for the store; an
//! approval still being written then (the store writes it in chunks, see
//! `masif_store::Admin::approve_tasks_tracked`) goes on in a task, and the browser is sent to
//! `GET /approving?job=N`, which shows how far it got, refreshing itself every second, and
//! once it is done sends the browser where the approval's result is shown.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use masif_store::{
    ApprovalOutcome, ApprovalProgress, ApprovalScope, ApprovalTask, StoreError, TaskKey,
};
use serde::{Deserialize, Serialize};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::reject::{ApprovalStopped, BadRequest, NotFound};
use super::{with_app, Chrome};
use crate::auth::{redirect, user, User};
use crate::App;

/// How long `POST /approve` waits before it shows the progress page instead.
const WAIT: Duration = Duration::from_secs(1);

/// Approvals kept for their progress pages, the oldest dropped first.
const KEPT: usize = 64;

/// The approvals this UI process is writing or wrote last.
#[derive(Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    kept: Mutex<VecDeque<(u64, Arc<Job>)>>,
}

/// One approval in the background.
struct Job {
    /// What is approved, for whom, by whom: the page's heading.
    what: String,
    progress: ApprovalProgress,
    /// Where the result is shown, or the reason the store refused it (`None`: another
    /// failure, logged); `None` while it is written.
    ended: Mutex<Option<Result<String, Option<String>>>>,
}

impl Jobs {
    fn keep(&self, job: Arc<Job>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((id, job));
        id
    }

    fn get(&self, id: u64) -> Option<Arc<Job>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().find(|(i, _)| *i == id).map(|(_, j)| j.clone())
    }
}

/// Approves `keys` for `scope` as `user`; `shown_at` turns the outcome into the address
/// that shows it. Answers with a redirect there if the store is done within [`WAIT`], else
/// with a redirect to the approval's progress page.
pub(crate) async fn approve(
    app: &Arc<App>,
    user: &User,
    keys: Vec<TaskKey>,
    scope: ApprovalScope,
    shown_at: impl FnOnce(&ApprovalOutcome) -> String + Send + 'static,
) -> Result<Response, Rejection> {
    let job = Arc::new(Job {
        what: format!("{} task(s) for {}", keys.len(), describe_scope(&scope)),
        progress: ApprovalProgress::default(),
        ended: Mutex::new(None),
    });
    let mut task = {
        let (app, job, user) = (app.clone(), job.clone(), user.name.clone());
        tokio::spawn(async move {
            let tasks: Vec<ApprovalTask> = keys.iter().cloned().map(ApprovalTask::from).collect();
            let outcome = app
                .store
                .approve_tasks_tracked(&tasks, &scope, &user, &job.progress)
                .await
                .map(|outcome| {
                    log_approved(&user, keys.len(), &scope, &outcome, "a page");
                    shown_at(&outcome)
                });
            let ended = match &outcome {
                Ok(shown) => Ok(shown.clone()),
                Err(StoreError::Invalid(reason)) => Err(Some(reason.clone())),
                Err(e) => {
                    tracing::error!(error = %e, "approval stopped");
                    Err(None)
                }
            };
            *job.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
            outcome
        })
    };
    match tokio::time::timeout(WAIT, &mut task).await {
        Ok(Ok(Ok(shown))) => Ok(redirect(&shown)),
        Ok(Ok(Err(StoreError::Invalid(reason)))) => Err(BadRequest::reject(reason)),
        Ok(Ok(Err(_))) => Err(warp::reject::custom(ApprovalStopped)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the approval's task failed");
            Err(warp::reject::custom(ApprovalStopped))
        }
        Err(_) => {
            let id = app.approvals.keep(job);
            Ok(redirect(&format!("/approving?job={id}")))
        }
    }
}

fn describe_scope(scope: &ApprovalScope) -> String {
    match scope {
        ApprovalScope::AllAgents => "every agent".to_owned(),
        ApprovalScope::Agents(a) => format!("{} agent(s)", a.len()),
        ApprovalScope::Tag(t) => format!("the agents tagged {t}"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    job: u64,
}

#[derive(Serialize)]
struct ApprovingView<'a> {
    #[serde(flatten)]
    chrome: Chrome<'a>,
    refresh: u32,
    what: &'a str,
    agents_done: u64,
    agents: u64,
    pending_rows_approved: u64,
    approvals_written: u64,
}

pub(crate) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("approving")
        .and(warp::get())
        .and(user(app.clone()))
        .and(warp::query::<Query>())
        .and(with_app(app))
        .and_then(approving_page)
}

async fn approving_page(user: User, q: Query, app: Arc<App>) -> Result<Response, Rejection> {
    let Some(job) = app.approvals.get(q.job) else {
        return Err(warp::reject::custom(NotFound(
            "No such approval here: it ended long ago, or this UI was restarted. The \
             Approvals page shows what is in force."
                .into(),
        )));
    };
    let ended = job.ended.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match ended {
        Some(Ok(shown)) => Ok(redirect(&shown)),
        Some(Err(Some(reason))) => Err(BadRequest::reject(reason)),
        Some(Err(None)) => Err(warp::reject::custom(ApprovalStopped)),
        None => {
            let (agents_done, agents) = job.progress.agents();
            let written = job.progress.written();
            Ok(app.templates.render(
                "approving",
                &ApprovingView {
                    chrome: Chrome::new(&user, "pending", "Approving"),
                    refresh: 1,
                    what: &job.what,
                    agents_done,
                    agents,
                    pending_rows_approved: written.pending_rows_approved,
                    approvals_written: written.approvals_written,
                },
            ))
        }
    }
}

/// The log line of an approval written, through a page or the API (`through`).
pub(crate) fn log_approved(
    user: &str,
    tasks: usize,
    scope: &ApprovalScope,
    outcome: &ApprovalOutcome,
    through: &'static str,
) {
    tracing::info!(
        user = %user,
        tasks,
        scope = ?scope,
        approved = outcome.pending_rows_approved,
        written = outcome.approvals_written,
        through,
        "approved"
    );
}

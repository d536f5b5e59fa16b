//! Reports through a second store (as the master holds its own) while the UI's store writes an
//! approval for a third of the fleet: their errors and latency, unchanged reports apart from
//! those that change the agent's pending set (and so write).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use masif_proto::Action;
use masif_store::Store;
use masif_testkit::tasks::task;

use super::{
    agent_name, approve, base_key, every_agent_awaiting, tasks_of, ApprovalFigure, Config,
};

/// The master's default `api.report_timeout`: a report slower than this counts as an error.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Latency and errors of some reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    /// Failed, or slower than the master's report timeout.
    pub errors: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Reports sent while an approval was written.
#[derive(Debug)]
pub struct ReportLoad {
    /// Reports sent in all (before, during and after the approval), and how many failed.
    pub sent: usize,
    pub errors: usize,
    /// The first error seen, as the store gave it.
    pub first_error: Option<String>,
    /// Unchanged reports started while the approval was written.
    pub unchanged: Latency,
    /// Reports that changed the pending set, started while the approval was written.
    pub changed: Latency,
}

/// One report of the load: when it started (from the load's start), how long it took, whether
/// it changed the pending set, and its error.
struct Sent {
    start: Duration,
    took: Duration,
    changed: bool,
    error: Option<String>,
}

/// Reports of the whole fleet in turn, `report_concurrency` at a time through the report
/// store, while `base-00 -> 2.1` (a third of the fleet) is approved for the agents awaiting
/// it. Every `changed_every`-th report (0: none) adds a task of its own to the agent's set, so
/// it writes. The approval starts once every reporter has finished a report (the load is
/// running); the reporters stop once it is written and at least `reports` were sent.
pub(super) async fn approve_under_load(
    ui_store: &Arc<dyn Store>,
    report_store: &Arc<dyn Store>,
    config: &Config,
) -> (ApprovalFigure, ReportLoad) {
    let key = base_key(0, 1);
    let chosen = every_agent_awaiting(ui_store, &key).await;

    let origin = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(tokio::sync::Semaphore::new(0));
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let mut workers = Vec::new();
    for _ in 0..config.report_concurrency {
        let (store, next, done, warm, sent) = (
            report_store.clone(),
            next.clone(),
            done.clone(),
            warm.clone(),
            sent.clone(),
        );
        let config = config.clone();
        workers.push(tokio::spawn(async move {
            let mut first = true;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= config.reports && done.load(Ordering::Acquire) {
                    break;
                }
                let i = n % config.agents;
                let mut tasks = tasks_of(i, config.tasks);
                let changed = config.changed_every > 0 && n % config.changed_every == 0;
                if changed {
                    let p = format!("churn-{n}");
                    tasks.insert(task(&p, Action::Install, None, Some("1.0")));
                }
                let start = origin.elapsed();
                let name = agent_name(i);
                let report = store.report(&name, &tasks);
                let error = match tokio::time::timeout(REPORT_TIMEOUT, report).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {REPORT_TIMEOUT:?}")),
                };
                let took = origin.elapsed() - start;
                sent.lock().unwrap().push(Sent {
                    start,
                    took,
                    changed,
                    error,
                });
                if first {
                    warm.add_permits(1);
                    first = false;
                }
            }
        }));
    }
    let _ = warm
        .acquire_many(config.report_concurrency as u32)
        .await
        .expect("reporters running");
    let approval_start = origin.elapsed();
    let figure = approve(ui_store, vec![key], Some(chosen)).await;
    let approval_end = origin.elapsed();
    done.store(true, Ordering::Release);
    for w in workers {
        w.await.expect("reporter");
    }
    report_store.flush().await;

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let during = |changed: bool| {
        latency(
            sent.iter()
                .filter(|s| s.changed == changed)
                .filter(|s| s.start >= approval_start && s.start < approval_end),
        )
    };
    let load = ReportLoad {
        sent: sent.len(),
        errors: sent.iter().filter(|s| s.error.is_some()).count(),
        first_error: sent.iter().find_map(|s| s.error.clone()),
        unchanged: during(false),
        changed: during(true),
    };
    (figure, load)
}

fn latency<'a>(sent: impl Iterator<Item = &'a Sent>) -> Latency {
    let mut errors = 0;
    let mut took: Vec<Duration> = sent
        .inspect(|s| errors += usize::from(s.error.is_some()))
        .map(|s| s.took)
        .collect();
    if took.is_empty() {
        return Latency::default();
    }
    took.sort();
    let at = |q: f64| took[((q * took.len() as f64).ceil() as usize).saturating_sub(1)];
    Latency {
        count: took.len(),
        errors,
        p50: at(0.50),
        p99: at(0.99),
        max: took[took.len() - 1],
    }
}

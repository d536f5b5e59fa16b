//! `--approve-during N`: the fleet's unchanged reports over TLS while the store writes an
//! approval for N other agents, as the UI's `POST /approve` does (issue 18): N agents with the
//! fleet's tasks and two of their own are seeded through the store's report path, then one task
//! is approved for them by name, and another for every agent, while the fleet reports (every
//! 10th report changing the agent's pending set, so that it writes); the reports started while
//! each approval was written give two rows of the table (unchanged, writes), with the
//! approval's times.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use masif_proto::{Action, AgentName, PackageName, TaskSet, Version};
use masif_store::{ApprovalProgress, ApprovalScope, ApprovalTask, Store, TaskKey};
use masif_testkit::tasks::task;

use crate::fleet::{report_body, Fleet, PhaseResult};
use crate::measure::Cpu;

/// Reports at once while seeding the other agents (the store writes them in batches).
const SEED_CONCURRENCY: usize = 512;

/// The package of the approval by name; the other one is approved for every agent.
const BY_NAME: &str = "fleet-approval-by-name";
const FOR_EVERY_AGENT: &str = "fleet-approval-for-all";

/// Agent `i` of those the approvals are written for (not in the fleet).
fn awaiting_name(i: usize) -> AgentName {
    AgentName::new(format!("awaiting{i:06}.bench.test")).expect("agent name")
}

/// Their pending tasks: the two approved here and the fleet's other ones, `tasks` in all.
fn awaiting_tasks(tasks: usize) -> TaskSet {
    let mut set = TaskSet::new();
    for package in [BY_NAME, FOR_EVERY_AGENT] {
        set.insert(task(package, Action::Update, Some("1.0"), Some("2.0")));
    }
    for t in 0..tasks.saturating_sub(2) {
        set.insert(task(
            &format!("pkg{t}"),
            Action::Update,
            Some("1.0"),
            Some("2.0"),
        ));
    }
    set
}

fn key(package: &str) -> TaskKey {
    TaskKey {
        package: PackageName::new(package).expect("package name"),
        action: Action::Update,
        to_version: Some(Version::new("2.0").expect("version")),
    }
}

/// Seeds `count` agents awaiting both approvals through the store's report path, many at once.
pub async fn seed(store: &Arc<dyn Store>, count: usize, tasks: usize) {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..SEED_CONCURRENCY {
        let (store, next) = (store.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let set = awaiting_tasks(tasks);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                store
                    .report(&awaiting_name(i), &set)
                    .await
                    .unwrap_or_else(|e| panic!("seeding agent {i}: {e}"));
            }
        }));
    }
    for w in workers {
        w.await.expect("seeding worker");
    }
    store.flush().await;
    eprintln!(
        "{count} agents awaiting approval seeded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// How an approval went: when it was in force (its first approval row committed) and when it
/// was written out, from its start.
pub struct Approval {
    pub label: String,
    pub in_force: Duration,
    pub written: Duration,
}

/// Which approval to write under load.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    /// [`BY_NAME`] for the `count` seeded agents, by name.
    ByName(usize),
    /// [`FOR_EVERY_AGENT`] for every agent.
    ForEveryAgent,
}

/// Where each agent of the fleet stands: the generation of its last report (see
/// [`report_body`]), so that a report repeats it (unchanged) or moves it on (a write).
pub struct Generations(Vec<AtomicUsize>);

impl Generations {
    /// Every agent of a fleet of `size` at `generation`.
    pub fn new(size: usize, generation: usize) -> Self {
        Self((0..size).map(|_| AtomicUsize::new(generation)).collect())
    }
}

/// What reports started while an approval was written did: unchanged and changing the agent's
/// pending set (a write) apart.
pub struct During {
    pub unchanged: PhaseResult,
    pub changed: PhaseResult,
}

/// The fleet's reports, `concurrency` at a time round the fleet, every `changed_every`-th (0:
/// none) changing one task of the agent's set, while `which` is approved through `store`: the
/// approval starts once every sender has had an answer, and the senders stop once it is
/// written and the whole fleet has reported once. Returns the reports started while the
/// approval was written (`elapsed`: the approval's time), the CPU `cpu` says was used
/// meanwhile, and the approval.
pub async fn reports_during(
    fleet: &Arc<Fleet>,
    generations: &Arc<Generations>,
    store: &Arc<dyn Store>,
    which: Which,
    (concurrency, tasks, changed_every): (usize, usize, usize),
    cpu: impl Fn() -> Cpu,
) -> (During, Cpu, Approval) {
    let size = fleet.clients.len();
    let origin = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(tokio::sync::Semaphore::new(0));
    // (started, took, answered, changed) of every report, from `origin`.
    let sent = Arc::new(Mutex::new(Vec::<(Duration, Duration, bool, bool)>::new()));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (fleet, generations, next, done, warm, sent) = (
            fleet.clone(),
            generations.clone(),
            next.clone(),
            done.clone(),
            warm.clone(),
            sent.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut first = true;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= size && done.load(Ordering::Acquire) {
                    break;
                }
                let agent = n % size;
                let changed = changed_every > 0 && n % changed_every == 0;
                let generation = &generations.0[agent];
                let g = match changed {
                    true => generation.fetch_add(1, Ordering::Relaxed) + 1,
                    false => generation.load(Ordering::Relaxed),
                };
                let start = origin.elapsed();
                let answered = fleet
                    .post(agent, "/v1/pending-tasks", report_body(agent, tasks, g))
                    .await
                    .is_some();
                let took = origin.elapsed() - start;
                sent.lock().unwrap().push((start, took, answered, changed));
                if first {
                    warm.add_permits(1);
                    first = false;
                }
            }
        }));
    }
    let _warm = warm
        .acquire_many(concurrency as u32)
        .await
        .expect("senders running");

    let (keys, scope, label) = match which {
        Which::ByName(count) => (
            vec![key(BY_NAME)],
            ApprovalScope::Agents((0..count).map(awaiting_name).collect()),
            format!("one task for {count} agents by name"),
        ),
        Which::ForEveryAgent => (
            vec![key(FOR_EVERY_AGENT)],
            ApprovalScope::AllAgents,
            "one task for every agent".to_owned(),
        ),
    };
    let tasks: Vec<ApprovalTask> = keys.into_iter().map(ApprovalTask::from).collect();
    let progress = Arc::new(ApprovalProgress::default());
    let (started, cpu_before) = (origin.elapsed(), cpu());
    let in_force = {
        let progress = progress.clone();
        // Polls the progress for the first approval row written (a benchmark may poll).
        tokio::spawn(async move {
            while progress.written().approvals_written == 0 && !progress.finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            origin.elapsed()
        })
    };
    store
        .approve_tasks_tracked(&tasks, &scope, "load-bench", &progress)
        .await
        .expect("approve");
    let (ended, cpu_used) = (origin.elapsed(), cpu().since(cpu_before));
    done.store(true, Ordering::Release);
    for s in senders {
        s.await.expect("sender");
    }
    let approval = Approval {
        label,
        in_force: in_force.await.expect("progress watch") - started,
        written: ended - started,
    };

    let mut during = During {
        unchanged: PhaseResult::default(),
        changed: PhaseResult::default(),
    };
    for (start, took, answered, changed) in std::mem::take(&mut *sent.lock().unwrap()) {
        if start < started || start >= ended {
            continue;
        }
        let result = match changed {
            true => &mut during.changed,
            false => &mut during.unchanged,
        };
        match answered {
            true => result.latencies.push(took),
            false => result.errors += 1,
        }
    }
    during.unchanged.elapsed = ended - started;
    during.changed.elapsed = ended - started;
    (during, cpu_used, approval)
}

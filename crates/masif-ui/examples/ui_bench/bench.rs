//! The measurement behind `ui-bench` and its smoke test: a fleet seeded through the real report
//! path, the real UI over HTTP, the store calls the UI makes to approve, and a load of reports
//! through a second store (as the master holds one) while a third of the fleet is approved.

mod load;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_proto::{Action, AgentName, PackageName, TaskSet, Version};
use masif_store::{
    ApprovalOutcome, ApprovalProgress, ApprovalScope, ApprovalTask, Page, Store, TaskKey,
};
use masif_testkit::db::TestDatabase;
use masif_testkit::tasks::task;
use masif_ui::{TrustedHeader, UiSettings, Users};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agents in the fleet.
    pub agents: usize,
    /// Pending tasks of every agent (at least 2: half of them are the popular `base-NN`).
    pub tasks: usize,
    /// Requests per page and calls of `agents_awaiting` (median and max of these).
    pub runs: usize,
    /// Reports at the same time while seeding (the store batches them as the master's).
    pub seed_concurrency: usize,
    /// Least unchanged reports sent during the approval of a third of the fleet.
    pub reports: usize,
    /// Reports at the same time during that approval.
    pub report_concurrency: usize,
    /// Every this many reports of that load (0: none) changes the agent's pending set.
    pub changed_every: usize,
}

impl Config {
    /// The reduced form CI runs: a small fleet, a few seconds.
    pub fn smoke() -> Self {
        Self {
            agents: 1_000,
            tasks: 5,
            runs: 3,
            seed_concurrency: 256,
            reports: 1_000,
            report_concurrency: 64,
            changed_every: 10,
        }
    }
}

/// Median and worst of several samples.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub median: Duration,
    pub max: Duration,
}

impl Timing {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self {
            median: samples[samples.len() / 2],
            max: samples[samples.len() - 1],
        }
    }
}

/// One page as the browser gets it.
#[derive(Debug)]
pub struct PageFigure {
    pub path: String,
    pub timing: Timing,
    pub bytes: usize,
}

/// An approval through the store, as the UI's `POST /approve` makes it.
#[derive(Debug)]
pub struct ApprovalFigure {
    /// Agents in its scope (`None`: every agent).
    pub agents: Option<usize>,
    pub outcome: ApprovalOutcome,
    pub took: Duration,
    /// When its first approval row was committed: for every agent, when it is in force.
    pub in_force: Duration,
}

/// Everything one run measured.
#[derive(Debug)]
pub struct Figures {
    pub config: Config,
    pub seeded_in: Duration,
    pub pending_rows: u64,
    /// The task table's size with its indexes, and MariaDB's buffer pool, in MiB: approvals
    /// slow down when the pool does not hold the table (docs/database.md, "Sizing the server").
    pub task_table_mib: u64,
    pub buffer_pool_mib: u64,
    pub pages: Vec<PageFigure>,
    /// `agents_awaiting` for one popular task: agents found, and how long.
    pub awaiting: (usize, Timing),
    /// That task approved for the agents awaiting it, nothing else running.
    pub approve_awaiting: ApprovalFigure,
    /// Another task awaited by a third of the fleet, approved while reports arrive.
    pub approve_under_load: ApprovalFigure,
    pub load: load::ReportLoad,
    /// A third task awaited by a third of the fleet approved for every agent (the pending
    /// page's "Approve selection for every agent").
    pub approve_one_for_all: ApprovalFigure,
    /// 27 rows approved for every agent.
    pub approve_all: ApprovalFigure,
    /// Approval rows in force at the end, and how long the store call behind `GET /approvals`
    /// takes to list the first page of them.
    pub approvals: (u64, Timing),
}

/// Seeds a fresh database on `MASIF_TEST_MYSQL_URL` and measures; `keep` leaves it behind.
pub async fn run(config: Config, keep: bool) -> Figures {
    let db = TestDatabase::create("ui_bench").await;
    let url = db.url().parse().expect("database url");
    // The UI's store, and a second one for reports, as master and UI each hold their own.
    let ui_store = masif_store::open(&url).await.expect("open store");
    let report_store = masif_store::open(&url).await.expect("open report store");

    let started = Instant::now();
    seed(&report_store, &config).await;
    report_store.flush().await;
    let seeded_in = started.elapsed();
    let pending_rows = db.query_u64("SELECT COUNT(*) FROM task").await;
    let task_table_mib = db
        .query_u64(
            "SELECT (data_length + index_length) DIV 1048576 FROM information_schema.tables
              WHERE table_schema = DATABASE() AND table_name = 'task'",
        )
        .await;
    let buffer_pool_mib = db
        .query_u64("SELECT @@innodb_buffer_pool_size DIV 1048576")
        .await;

    let pages = pages(&ui_store, &config).await;

    let popular = base_key(0, 0);
    let mut samples = Vec::new();
    let mut found = 0;
    for _ in 0..config.runs {
        let t = Instant::now();
        // What the select-agents page reads.
        found = ui_store
            .agents_awaiting(std::slice::from_ref(&popular), SELECT_PAGE)
            .await
            .expect("agents_awaiting")
            .total;
        samples.push(t.elapsed());
    }
    let awaiting_figure = (found as usize, Timing::of(samples));
    let chosen = every_agent_awaiting(&ui_store, &popular).await;
    let approve_awaiting = approve(&ui_store, vec![popular], Some(chosen)).await;

    let (approve_under_load, load) =
        load::approve_under_load(&ui_store, &report_store, &config).await;

    let approve_one_for_all = approve(&ui_store, vec![base_key(0, 2)], None).await;

    let every_agent: Vec<TaskKey> = (1..10)
        .flat_map(|n| (0..3).map(move |v| base_key(n, v)))
        .collect();
    let approve_all = approve(&ui_store, every_agent, None).await;
    let mut samples = Vec::new();
    let mut approvals = 0;
    for _ in 0..config.runs {
        let t = Instant::now();
        approvals = ui_store
            .approvals(masif_store::Page::default())
            .await
            .expect("approvals")
            .total;
        samples.push(t.elapsed());
    }

    if keep {
        println!("kept database {} (drop it by hand)", db.name());
        std::mem::forget(db);
    }
    Figures {
        config,
        seeded_in,
        pending_rows,
        task_table_mib,
        buffer_pool_mib,
        pages,
        awaiting: awaiting_figure,
        approve_awaiting,
        approve_under_load,
        load,
        approve_one_for_all,
        approve_all,
        approvals: (approvals, Timing::of(samples)),
    }
}

/// `base-NN` updated from 1.0 to `2.V`: every agent has `base-00` … at one of three versions.
/// The first page of agents the select-agents page lists (as `pages::pending` does).
const SELECT_PAGE: Page = Page {
    offset: 0,
    limit: 500,
};

/// Every agent awaiting `key`, by name: whom an approval "for the agents awaiting it" names.
pub(super) async fn every_agent_awaiting(store: &Arc<dyn Store>, key: &TaskKey) -> Vec<AgentName> {
    let all = Page {
        offset: 0,
        limit: u64::MAX,
    };
    let awaiting = store
        .agents_awaiting(std::slice::from_ref(key), all)
        .await
        .expect("agents_awaiting");
    awaiting.rows.into_iter().map(|a| a.name).collect()
}

fn base_key(n: usize, v: usize) -> TaskKey {
    TaskKey {
        package: PackageName::new(format!("base-{n:02}")).unwrap(),
        action: Action::Update,
        to_version: Some(Version::new(format!("2.{v}")).unwrap()),
    }
}

fn agent_name(i: usize) -> AgentName {
    AgentName::new(format!("host-{i:05}")).unwrap()
}

/// Agent `i`'s report: the first half of its tasks update the 10 base packages, each to one of
/// three versions (so a popular row is awaited by a third of the fleet), the rest are drawn
/// from a long tail of 3,000 packages, with an install and a removal now and then.
fn tasks_of(i: usize, per_agent: usize) -> TaskSet {
    let mut set = TaskSet::new();
    let mut n = 0;
    while set.len() < per_agent {
        let t = if n < per_agent / 2 {
            let to = format!("2.{}", (i + n) % 3);
            task(
                &format!("base-{n:02}"),
                Action::Update,
                Some("1.0"),
                Some(&to),
            )
        } else {
            let p = format!("pkg-{:04}", (i * 7 + n * 131) % 3000);
            match (i + n) % 17 {
                0 => task(&p, Action::Install, None, Some("1.0")),
                1 => task(&p, Action::Remove, Some("0.9"), None),
                _ => task(&p, Action::Update, Some("1.0"), Some("1.1")),
            }
        };
        set.insert(t);
        n += 1;
    }
    set
}

/// Every agent's first report through the store's report path, many at once so that the
/// store writes them in batches, as the master's registrations.
pub async fn seed(store: &Arc<dyn Store>, config: &Config) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..config.seed_concurrency {
        let (store, next, config) = (store.clone(), next.clone(), config.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= config.agents {
                    break;
                }
                let tasks = tasks_of(i, config.tasks);
                store
                    .report(&agent_name(i), &tasks)
                    .await
                    .unwrap_or_else(|e| panic!("seeding report of agent {i}: {e}"));
            }
        }));
    }
    for w in workers {
        w.await.expect("seeding worker");
    }
}

/// Serves the UI on a free port and times full HTTP requests of its pages, before any
/// approval exists (so `/approvals` is the page with none).
async fn pages(store: &Arc<dyn Store>, config: &Config) -> Vec<PageFigure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = UiSettings {
        trusted_header: Some(TrustedHeader {
            name: "x-remote-user".into(),
            from: vec!["127.0.0.1".parse().unwrap()],
        }),
        ..UiSettings::with_users(Users::default())
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(masif_ui::serve_with_listener(
        settings,
        store.clone(),
        listener,
        async {
            stopped.await.ok();
        },
    ));
    let one_agent = format!("/agent?name={}", agent_name(config.agents / 2));
    let mut figures = Vec::new();
    for path in [
        "/",
        "/?page=20",
        "/approvals",
        "/?package=pkg-00",
        "/?agent=host-0042",
        "/agents",
        "/agents?page=50",
        "/agents?name=host-09",
        "/agents?state=offline",
        "/agents?state=failing",
        &one_agent,
        "/audit",
    ] {
        let mut samples = Vec::new();
        let mut bytes = 0;
        for _ in 0..config.runs {
            let t = Instant::now();
            bytes = get(addr, path).await;
            samples.push(t.elapsed());
        }
        figures.push(PageFigure {
            path: path.to_owned(),
            timing: Timing::of(samples),
            bytes,
        });
    }
    stop.send(()).ok();
    server.await.expect("ui server").expect("ui serve");
    figures
}

/// One request over a fresh connection; returns the body size. Panics unless 200.
async fn get(addr: std::net::SocketAddr, path: &str) -> usize {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: bench\r\nX-Remote-User: bench\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        &text[..text.len().min(300)]
    );
    text.find("\r\n\r\n").map_or(0, |i| buf.len() - i - 4)
}

/// `keys` approved for `agents` (`None`: every agent) through the store, as the UI does.
async fn approve(
    store: &Arc<dyn Store>,
    keys: Vec<TaskKey>,
    agents: Option<Vec<AgentName>>,
) -> ApprovalFigure {
    let count = agents.as_ref().map(Vec::len);
    let scope = agents.map_or(ApprovalScope::AllAgents, ApprovalScope::Agents);
    let tasks: Vec<ApprovalTask> = keys.into_iter().map(ApprovalTask::from).collect();
    let progress = Arc::new(ApprovalProgress::default());
    let t = Instant::now();
    // Watches the progress for the first approval row written (a bench may poll).
    let watch = {
        let progress = progress.clone();
        tokio::spawn(async move {
            while progress.written().approvals_written == 0 && !progress.finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            t.elapsed()
        })
    };
    let outcome = store
        .approve_tasks_tracked(&tasks, &scope, "bench", &progress)
        .await
        .expect("approve");
    let took = t.elapsed();
    ApprovalFigure {
        agents: count,
        outcome,
        took,
        in_force: watch.await.expect("progress watch"),
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

impl Figures {
    /// The table of issue 18 (Markdown, ready for docs/performance.md), then the other pages.
    pub fn print(&self) {
        let c = &self.config;
        println!(
            "seeded {} agents x {} pending tasks ({} task rows) through the report path in {:.1} s",
            c.agents,
            c.tasks,
            self.pending_rows,
            self.seeded_in.as_secs_f64()
        );
        println!(
            "the task table with its indexes: {} MiB; MariaDB's buffer pool: {} MiB",
            self.task_table_mib, self.buffer_pool_mib
        );
        println!();
        println!(
            "| page or action | {} agents × {} tasks |",
            c.agents, c.tasks
        );
        println!("|---|---|");
        for (path, label) in [
            ("/", "`GET /` (pending overview)"),
            ("/?page=20", "`GET /?page=20`"),
            ("/approvals", "`GET /approvals` with no approvals at all"),
        ] {
            let page = self.pages.iter().find(|p| p.path == path).unwrap();
            println!(
                "| {label} | {} median ({} max) |",
                ms(page.timing.median),
                ms(page.timing.max)
            );
        }
        let (found, timing) = self.awaiting;
        println!(
            "| `agents_awaiting` for one task, the select-agents page's first 500 of {found} agents | {} median ({} max) |",
            ms(timing.median),
            ms(timing.max)
        );
        let a = &self.approve_awaiting;
        println!(
            "| approve one task for the {} agents awaiting it | {} |",
            a.agents.unwrap_or(0),
            ms(a.took)
        );
        let a = &self.approve_one_for_all;
        println!(
            "| approve one task for every agent ({} pending rows): in force, all written | {}, {} |",
            a.outcome.pending_rows_approved,
            ms(a.in_force),
            ms(a.took)
        );
        let a = &self.approve_all;
        println!(
            "| approve 27 rows for every agent ({} pending rows) | {} |",
            a.outcome.pending_rows_approved,
            ms(a.took)
        );
        let (a, l) = (&self.approve_under_load, &self.load);
        println!(
            "| approve one task for {} agents while {} reports at a time arrive | {} |",
            a.agents.unwrap_or(0),
            c.report_concurrency,
            ms(a.took)
        );
        for (what, l) in [("unchanged", &l.unchanged), ("changed", &l.changed)] {
            if l.count > 0 {
                println!(
                    "| {what} reports started during that approval: count, errors, p50, p99, max | {}, {} errors, {}, {}, {} |",
                    l.count,
                    l.errors,
                    ms(l.p50),
                    ms(l.p99),
                    ms(l.max)
                );
            }
        }
        let (total, timing) = self.approvals;
        println!(
            "| `approvals` (the store call of `GET /approvals`) with the {total} approval rows above | {} median ({} max) |",
            ms(timing.median),
            ms(timing.max)
        );
        println!();
        println!(
            "reports in all: {} sent, {} errors{}",
            l.sent,
            l.errors,
            l.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        );
        println!(
            "approval rows written: {} + {} + {}",
            self.approve_awaiting.outcome.approvals_written,
            self.approve_under_load.outcome.approvals_written,
            self.approve_all.outcome.approvals_written,
        );
        println!();
        println!(
            "{:<36} {:>10} {:>10} {:>10}",
            "page (before any approval)", "median", "max", "bytes"
        );
        for p in &self.pages {
            println!(
                "{:<36} {:>10} {:>10} {:>10}",
                format!("GET {}", p.path),
                ms(p.timing.median),
                ms(p.timing.max),
                p.bytes
            );
        }
    }
}

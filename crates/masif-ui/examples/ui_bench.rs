//! Benchmark of the UI at fleet scale: seeds a fresh MariaDB database (`MASIF_TEST_MYSQL_URL`,
//! default `mysql://root@127.0.0.1:3306`) with 10,000 agents × 20 pending tasks through the
//! real report transaction, serves the real UI on a free port and prints how long the pending
//! page and the agents page take over HTTP (median and worst of several requests).
//!
//! `cargo run --release -p masif-ui --example ui-bench [-- AGENTS TASKS_PER_AGENT]`
//! (`MASIF_BENCH_KEEP=1` keeps the database for a look at the query plans).

use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_proto::{Action, AgentName, PackageName, TaskSet, Version};
use masif_store::Store;
use masif_testkit::db::TestDatabase;
use masif_testkit::tasks::task;
use masif_ui::{TrustedHeader, UiSettings, Users};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUNS: usize = 7;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let agents: usize = args.next().map_or(10_000, |a| a.parse().expect("AGENTS"));
    let per_agent: usize = args
        .next()
        .map_or(20, |a| a.parse().expect("TASKS_PER_AGENT"));

    let db = TestDatabase::create("ui_bench").await;
    let store = masif_store::open(&db.url().parse().unwrap())
        .await
        .expect("open store");
    let started = Instant::now();
    seed(&store, agents, per_agent).await;
    println!(
        "seeded {agents} agents x {per_agent} pending tasks through the report transaction in {:.1} s",
        started.elapsed().as_secs_f64()
    );

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

    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "page", "median ms", "max ms", "bytes"
    );
    let one_agent = format!("/agent?name=host-{:05}", agents / 2);
    for path in [
        "/",
        "/?page=20",
        "/?package=pkg-00",
        "/?agent=host-0042",
        "/agents",
        "/agents?page=50",
        "/agents?name=host-09",
        "/agents?state=offline",
        "/agents?state=failing",
        &one_agent,
        "/approvals",
        "/audit",
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            bytes = get(addr, path).await;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{:<44} {:>10.1} {:>10.1} {:>10}",
            format!("GET {path}"),
            ms(times[RUNS / 2]),
            ms(times[RUNS - 1]),
            bytes
        );
    }
    stop.send(()).ok();
    server.await.unwrap().unwrap();

    // The store calls behind "Select specific agents first" and the approvals, at fleet scale.
    let popular = masif_store::TaskKey {
        package: PackageName::new("base-00").unwrap(),
        action: Action::Update,
        to_version: Some(Version::new("2.0").unwrap()),
    };
    let t = Instant::now();
    let awaiting = store
        .agents_awaiting(std::slice::from_ref(&popular))
        .await
        .unwrap();
    println!(
        "agents_awaiting(base-00 -> 2.0): {} agents in {:.1} ms",
        awaiting.len(),
        ms(t.elapsed())
    );
    let chosen: Vec<AgentName> = awaiting.into_iter().map(|a| a.name).collect();
    let t = Instant::now();
    let outcome = store
        .approve(
            &[popular],
            &masif_store::ApprovalScope::Agents(chosen),
            "bench",
        )
        .await
        .unwrap();
    println!(
        "approve for those agents: {} approval rows, {} pending rows in {:.1} ms",
        outcome.approvals_written,
        outcome.pending_rows_approved,
        ms(t.elapsed())
    );
    let keys: Vec<masif_store::TaskKey> = (1..10)
        .flat_map(|n| {
            (0..3).map(move |v| masif_store::TaskKey {
                package: PackageName::new(format!("base-{n:02}")).unwrap(),
                action: Action::Update,
                to_version: Some(Version::new(format!("2.{v}")).unwrap()),
            })
        })
        .collect();
    let t = Instant::now();
    let outcome = store
        .approve(&keys, &masif_store::ApprovalScope::AllAgents, "bench")
        .await
        .unwrap();
    println!(
        "approve 27 rows for every agent: {} pending rows in {:.1} ms",
        outcome.pending_rows_approved,
        ms(t.elapsed())
    );
    let t = Instant::now();
    let approvals = store.approvals(masif_store::Page::default()).await.unwrap();
    println!(
        "approvals page after that: {} of {} rows in {:.1} ms",
        approvals.rows.len(),
        approvals.total,
        ms(t.elapsed())
    );
    if std::env::var_os("MASIF_BENCH_KEEP").is_some() {
        println!("kept database {} (drop it by hand)", db.name());
        std::mem::forget(db);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
        "{path}: {}",
        &text[..text.len().min(300)]
    );
    text.find("\r\n\r\n").map_or(0, |i| buf.len() - i - 4)
}

/// A fleet: every agent runs the same 10 base packages at one of three versions (so the
/// popular packages have a few target versions each), plus tasks drawn from a long tail of
/// 3,000 packages, with an install and a removal now and then.
async fn seed(store: &Arc<dyn Store>, agents: usize, per_agent: usize) {
    let tasks_of = move |i: usize| -> TaskSet {
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
    };
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (store, next) = (store.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= agents {
                    break;
                }
                let name = AgentName::new(format!("host-{i:05}")).unwrap();
                store.report(&name, &tasks_of(i)).await.expect("report");
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

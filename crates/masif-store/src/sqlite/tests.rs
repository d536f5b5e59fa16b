//! SQLite-specific tests: URLs and files, WAL, migrations, two stores on one file (as master and
//! UI in two processes), a lock held by another connection, and the steady state writing nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use masif_proto::{Action, PackageName, TaskSet, Version};
use rstest::rstest;
use rusqlite::Connection;

use super::*;
use crate::{Admin, ApprovalScope, Page, Reports, TaskKey};
use masif_testkit::tasks::{agent, update};

/// A store on a new file in a new directory, which lasts as long as the returned guard.
async fn fresh_store() -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("masif.db");
    let store = SqliteStore::open(&path).await.unwrap();
    (dir, path, store)
}

/// What the UI does while the master takes reports: approves alpha 2.0, reads the overview.
async fn ui_round(ui: &SqliteStore) {
    ui.approve(&[key("alpha", "2.0")], &ApprovalScope::AllAgents, "admin")
        .await
        .unwrap();
    ui.pending_overview(&Default::default(), Page::default())
        .await
        .unwrap();
}

fn key(package: &str, to: &str) -> TaskKey {
    TaskKey {
        package: PackageName::new(package).unwrap(),
        action: Action::Update,
        to_version: Some(Version::new(to).unwrap()),
    }
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// `PRAGMA data_version` of a connection changes when another connection commits.
fn data_version(conn: &Connection) -> i64 {
    count(conn, "PRAGMA data_version")
}

#[rstest]
#[case("sqlite:///var/lib/masif/masif.db", Some("/var/lib/masif/masif.db"))]
#[case("sqlite:///tmp/a b.db", Some("/tmp/a b.db"))]
#[case("sqlite://relative.db", None)]
#[case("sqlite://", None)]
#[case("sqlite:///var/lib/", None)]
#[case("sqlite:///x.db?mode=ro", None)]
#[case("mysql://root@localhost/db", None)]
#[case("/var/lib/masif.db", None)]
fn urls_name_absolute_files(#[case] url: &str, #[case] expected: Option<&str>) {
    match (path_from_url(url), expected) {
        (Ok(path), Some(want)) => assert_eq!(path, Path::new(want)),
        (Err(e), None) => assert!(e.to_string().contains(url), "{e}"),
        (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
    }
}

#[tokio::test]
async fn open_creates_a_wal_database_at_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("masif.db");
    let url = format!("sqlite://{}", path.display());
    let store = crate::open(&url.parse().unwrap()).await.unwrap();
    drop(store);
    let conn = raw(&path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        count(&conn, "SELECT MAX(version) FROM schema_version"),
        i64::from(migrate::latest_version())
    );
    for table in [
        "agent",
        "package",
        "task",
        "agent_report",
        "approval",
        "audit",
    ] {
        assert_eq!(count(&conn, &format!("SELECT COUNT(*) FROM {table}")), 0);
    }
    // Opening again applies nothing twice.
    SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM schema_version"),
        i64::from(migrate::latest_version())
    );
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/masif.db");
    let err = SqliteStore::open(&path).await.unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "not a database, just text that happens to be here\n".repeat(100);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err().to_string();
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("masif.db");
    SqliteStore::open(&path).await.unwrap();
    raw(&path)
        .execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (999, 0)",
            [],
        )
        .unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}

#[tokio::test]
async fn concurrent_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("masif.db");
    let opens: Vec<_> = (0..4)
        .map(|_| tokio::spawn(SqliteStore::open(path.clone())))
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    assert_eq!(
        count(&raw(&path), "SELECT COUNT(*) FROM schema_version"),
        i64::from(migrate::latest_version())
    );
}

#[tokio::test]
async fn an_unchanged_report_writes_nothing() {
    let (_dir, path, store) = fresh_store().await;
    let tasks: TaskSet = [update("alpha", "1.0", "2.0"), update("beta", "1.0", "2.0")].into();
    assert!(store.report(&agent("a"), &tasks).await.unwrap().is_empty());
    let watcher = raw(&path);
    let before = data_version(&watcher);
    for _ in 0..3 {
        assert!(store.report(&agent("a"), &tasks).await.unwrap().is_empty());
    }
    assert_eq!(data_version(&watcher), before, "steady state wrote");
    // A change is written.
    let fewer: TaskSet = [update("alpha", "1.0", "2.0")].into();
    store.report(&agent("a"), &fewer).await.unwrap();
    assert_ne!(data_version(&watcher), before);
    assert_eq!(
        count(&watcher, "SELECT COUNT(*) FROM task WHERE approved = 0"),
        1
    );
}

#[tokio::test]
async fn a_stale_last_seen_is_refreshed() {
    let (_dir, path, store) = fresh_store().await;
    let tasks: TaskSet = [update("alpha", "1.0", "2.0")].into();
    store.report(&agent("a"), &tasks).await.unwrap();
    let conn = raw(&path);
    conn.execute("UPDATE agent_report SET last_seen = 1000", [])
        .unwrap();
    store.report(&agent("a"), &tasks).await.unwrap();
    // The report only marks the agent: its contact is written behind, with others' (at once
    // by `flush`).
    store.flush().await;
    assert!(count(&conn, "SELECT last_seen FROM agent_report") > 1000);
}

/// Master and UI as two stores (two sets of connections) on one file, working at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_work_concurrently() {
    let (_dir, path, master) = fresh_store().await;
    let ui = SqliteStore::open(&path).await.unwrap();
    let mut jobs = Vec::new();
    for n in 0..8 {
        let master = master.clone();
        jobs.push(tokio::spawn(async move {
            let name = agent(&format!("host{n}"));
            for round in 0..10 {
                let tasks: TaskSet = [
                    update("alpha", "1.0", "2.0"),
                    update(&format!("pkg{round}"), "1", "2"),
                ]
                .into();
                master.report(&name, &tasks).await.unwrap();
            }
        }));
    }
    for _ in 0..5 {
        let ui = ui.clone();
        jobs.push(tokio::spawn(async move {
            ui_round(&ui).await;
        }));
    }
    for job in jobs {
        job.await.unwrap();
    }
    // Every agent's last report: alpha approved (one approval row, and one for its configure
    // step), pkg9 pending.
    let conn = raw(&path);
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM task WHERE approved = 1"),
        2
    );
    for n in 0..8 {
        let tasks: TaskSet = [update("alpha", "1.0", "2.0"), update("pkg9", "1", "2")].into();
        let approved = master
            .report(&agent(&format!("host{n}")), &tasks)
            .await
            .unwrap();
        assert_eq!(approved, [update("alpha", "1.0", "2.0")].into());
    }
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM task WHERE approved = 0"),
        8
    );
}

/// Another process holding the write lock for a moment delays a report; it does not fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_briefly_held_lock_is_waited_for() {
    let (_dir, path, store) = fresh_store().await;
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut conn = raw(&path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            tx.execute("INSERT INTO package (name) VALUES ('held')", [])
                .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            tx.commit().unwrap();
        })
    };
    locked_rx.recv().unwrap();
    let tasks: TaskSet = [update("alpha", "1.0", "2.0")].into();
    store.report(&agent("a"), &tasks).await.unwrap();
    holder.join().unwrap();
    assert_eq!(count(&raw(&path), "SELECT COUNT(*) FROM package"), 2);
}

/// A lock that is never released ends in a clear error after the bounded retries, and the
/// report changed nothing.
#[test]
fn a_lock_held_for_good_exhausts_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("masif.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(SqliteStore::open(&path)).unwrap();
    let mut conn = conn::open_connection(&path).unwrap();
    conn.busy_timeout(Duration::from_millis(10)).unwrap();
    let mut holder = raw(&path);
    let held = holder
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let conflicts = AtomicU64::new(0);
    let err = with_retries(
        &mut conn,
        TransactionBehavior::Immediate,
        "testing",
        &conflicts,
        |tx| {
            tx.execute("INSERT INTO package (name) VALUES ('x')", [])?;
            Ok(())
        },
    )
    .unwrap_err();
    let attempts = conn::RETRY.max_attempts;
    // Every busy attempt counts (what `Reports::retries` reports).
    assert_eq!(conflicts.load(Ordering::Relaxed), u64::from(attempts));
    match &err {
        StoreError::RetriesExhausted { attempts: n, last } if *n == attempts => {
            // The last conflict is kept, with SQLite's error as its source.
            assert!(
                matches!(&**last, StoreError::Sqlite { doing, .. } if doing == "testing"),
                "{last:?}"
            );
        }
        other => panic!("{other}"),
    }
    held.rollback().unwrap();
    assert_eq!(count(&raw(&path), "SELECT COUNT(*) FROM package"), 0);
}

#[tokio::test]
async fn stored_rows_that_are_not_valid_tasks_do_not_break_reports() {
    let (_dir, path, store) = fresh_store().await;
    let tasks: TaskSet = [update("alpha", "1.0", "2.0")].into();
    store.report(&agent("a"), &tasks).await.unwrap();
    // A pending row another tool wrote: no package, an update without versions.
    raw(&path)
        .execute(
            "INSERT INTO task (agent, package, action, approved) VALUES (1, NULL, 'update', 0)",
            [],
        )
        .unwrap();
    let detail = store.agent_detail(&agent("a")).await.unwrap().unwrap();
    assert_eq!(detail.pending, vec![update("alpha", "1.0", "2.0")]);
    store.report(&agent("a"), &tasks).await.unwrap();
    let conn = raw(&path);
    conn.execute("UPDATE agent_report SET last_seen = 0", [])
        .unwrap();
    store.report(&agent("a"), &tasks).await.unwrap();
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM task WHERE package IS NULL"),
        0
    );
}

/// Set to a database path, the `second_process_reports` helper reports into it.
const HELPER_DB_ENV: &str = "MASIF_SQLITE_TEST_HELPER_DB";
const HELPER_AGENTS: usize = 6;
const HELPER_ROUNDS: usize = 15;

/// Not a test on its own: the second process of `master_and_ui_as_two_processes` (this test
/// binary run again), playing the master. Does nothing unless [`HELPER_DB_ENV`] is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of master_and_ui_as_two_processes"]
async fn second_process_reports() {
    let Some(path) = std::env::var_os(HELPER_DB_ENV) else {
        return;
    };
    let master = SqliteStore::open(Path::new(&path)).await.unwrap();
    let mut jobs = Vec::new();
    for n in 0..HELPER_AGENTS {
        let master = master.clone();
        jobs.push(tokio::spawn(async move {
            for round in 0..HELPER_ROUNDS {
                let tasks: TaskSet = [
                    update("alpha", "1.0", "2.0"),
                    update(&format!("pkg{round}"), "1", "2"),
                ]
                .into();
                master
                    .report(&agent(&format!("host{n}")), &tasks)
                    .await
                    .unwrap();
            }
        }));
    }
    for job in jobs {
        job.await.unwrap();
    }
}

/// Master and UI as separate processes on one file (WAL, busy timeout, retries): the master
/// process reports while this one approves and reads; nothing fails, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_ui_as_two_processes() {
    let (_dir, path, ui) = fresh_store().await;
    let helper = spawn_helper(&path);
    let mut approvals = 0;
    let finished = loop {
        ui_round(&ui).await;
        approvals += 1;
        let helper = helper.clone();
        let done = tokio::task::spawn_blocking(move || helper.lock().unwrap().try_wait())
            .await
            .unwrap()
            .unwrap();
        if let Some(status) = done {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(finished.success(), "helper process failed: {finished:?}");
    assert!(approvals > 0);
    let conn = raw(&path);
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM agent"),
        HELPER_AGENTS as i64
    );
    // The update of alpha and its configure step.
    assert_eq!(
        count(&conn, "SELECT COUNT(*) FROM task WHERE approved = 1"),
        2
    );
    // Every agent's last report left exactly its last package pending (alpha is approved or,
    // if the last report came before the first approval, pending too).
    let last = format!("pkg{}", HELPER_ROUNDS - 1);
    for n in 0..HELPER_AGENTS {
        let detail = ui
            .agent_detail(&agent(&format!("host{n}")))
            .await
            .unwrap()
            .unwrap();
        assert!(
            detail.pending.iter().any(|t| t.package().as_str() == last),
            "{detail:?}"
        );
        assert!(detail.pending.len() <= 2, "{detail:?}");
    }
}

/// This test binary again, running only [`second_process_reports`] against `db`.
#[allow(clippy::disallowed_methods)] // test fixture: a second process on the same database
fn spawn_helper(db: &Path) -> std::sync::Arc<std::sync::Mutex<std::process::Child>> {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite::tests::second_process_reports",
            "--ignored",
            "--test-threads=1",
        ])
        .env(HELPER_DB_ENV, db)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting the helper process");
    std::sync::Arc::new(std::sync::Mutex::new(child))
}

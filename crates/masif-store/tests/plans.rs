//! The query plans of the UI's reads at 100,000 agents × 20 pending tasks (issue 18), on
//! MariaDB: a fleet of the `ui-bench` shape is seeded with set-based SQL, then every read the
//! UI makes goes through a store opened with `?max_join_size=…`, the plan guard, so a read
//! whose plan turned into a scan of the task table is refused by the server (error 1104) and
//! fails here. What the guard compares is the optimizer's cost estimate of the plan (see
//! docs/database.md), so this checks plans, never timings (those are `ui-bench`'s).
//!
//! Needs `MASIF_TEST_MYSQL_URL`; without it the tests say so and pass. Seeding takes a few
//! tens of seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use masif_proto::{Action, AgentName, PackageName, Tag, Version};
use masif_store::{
    AgentFilter, ApprovalScope, DbUrl, Page, PendingFilter, Store, StoreError, TaskKey,
};
use masif_testkit::db::TestDatabase;
use mysql_async::prelude::*;

/// Agents in the fleet.
const AGENTS: u64 = 100_000;

/// The guard: a read of one popular package's 33,334 awaiting agents stays below it, a scan
/// of the 2,000,000 task rows (cost about 400,000) does not.
const MAX_JOIN_SIZE: u32 = 150_000;

/// Offline agents of the fleet (every 100th), failing ones (every 50th), ones needing a
/// reboot (every 10th); every agent carries one of the tags `ring-0` … `ring-2`, and `ring-1`
/// has a max in flight.
const OFFLINE: u64 = AGENTS / 100;
const FAILING: u64 = AGENTS / 50;
const REBOOT: u64 = AGENTS / 10;

/// The fleet of `ui-bench` (10 updates of `base-00` … `base-09`, each to one of three
/// versions, and 10 tasks from a long tail of 3,000 packages per agent), with facts, tags and
/// one run per agent, written straight into the store's tables after `open` migrated them;
/// `{AGENTS}` is the fleet's size.
const SEED: &[&str] = &[
    "SET @now = UNIX_TIMESTAMP()",
    "INSERT INTO agent (id, name, ctime, mtime)
       SELECT seq, CONCAT('host-', LPAD(seq - 1, 5, '0')), @now - 86400, @now - 3600
         FROM seq_1_to_{AGENTS}",
    "INSERT INTO agent_report (agent, pending_hash, last_seen)
       SELECT seq, UNHEX(SHA2(seq, 256)), IF(seq % 100 = 0, @now - 86400, @now)
         FROM seq_1_to_{AGENTS}",
    "INSERT INTO package (id, name)
       SELECT seq + 1, CONCAT('base-', LPAD(seq, 2, '0')) FROM seq_0_to_9",
    "INSERT INTO package (id, name)
       SELECT seq + 11, CONCAT('pkg-', LPAD(seq, 4, '0')) FROM seq_0_to_2999",
    "INSERT INTO task (agent, package, from_version, to_version, action, approved, ctime)
       SELECT a.seq, n.seq + 1, '1.0', CONCAT('2.', (a.seq - 1 + n.seq) % 3), 'update', 0,
              @now - 3600
         FROM seq_1_to_{AGENTS} a JOIN seq_0_to_9 n",
    "INSERT INTO task (agent, package, from_version, to_version, action, approved, ctime)
       SELECT a.seq, 11 + ((a.seq - 1) * 7 + n.seq * 131) % 3000,
              CASE (a.seq - 1 + n.seq) % 17 WHEN 0 THEN NULL WHEN 1 THEN '0.9' ELSE '1.0' END,
              CASE (a.seq - 1 + n.seq) % 17 WHEN 0 THEN '1.0' WHEN 1 THEN NULL ELSE '1.1' END,
              CASE (a.seq - 1 + n.seq) % 17 WHEN 0 THEN 'install' WHEN 1 THEN 'remove'
                                            ELSE 'update' END,
              0, @now - 3600
         FROM seq_1_to_{AGENTS} a JOIN seq_10_to_19 n",
    "INSERT INTO agent_facts (agent, os, kernel, agent_version, reboot_required,
                              reboot_packages, reported_at)
       SELECT seq, 'Debian 12', '6.1.0', '2.0.0', seq % 10 = 0,
              IF(seq % 10 = 0, '[\"linux-image-amd64\"]', '[]'), @now
         FROM seq_1_to_{AGENTS}",
    "INSERT INTO agent_tag (agent, tag) SELECT seq, CONCAT('ring-', seq % 3) FROM seq_1_to_{AGENTS}",
    "INSERT INTO run (id, agent, run_key, package, started_at, duration_ms, exit_code, outcome,
                      tasks, output, received_at)
       SELECT seq, seq, CONCAT('r', seq), 'base-00', @now - 600, 1000,
              IF(seq % 50 = 0, 100, 0), IF(seq % 50 = 0, 'failed', 'succeeded'),
              '[{\"package\":\"base-00\",\"action\":\"install\",\"to_version\":\"2.0\"}]', '',
              @now - 600
         FROM seq_1_to_{AGENTS}",
    "INSERT INTO run_latest (agent, package, run, failed, started_at)
       SELECT seq, 'base-00', seq, seq % 50 = 0, @now - 600 FROM seq_1_to_{AGENTS}",
    "INSERT INTO tag_setting (tag, max_in_flight, windows) VALUES ('ring-1', 10, '[]')",
    "ANALYZE TABLE agent, agent_report, package, task, agent_facts, agent_tag, run, run_latest",
];

/// The migrations that fill tables derived from the ones [`SEED`] writes.
const DERIVED: &[&str] = &["0013_pending_summary"];

/// A seeded database and a store on it with the guard on.
struct Fleet {
    db: TestDatabase,
    store: Arc<dyn Store>,
}

impl Fleet {
    /// [`AGENTS`] agents, the guard at [`MAX_JOIN_SIZE`]; `None` (and a note saying why)
    /// without `MASIF_TEST_MYSQL_URL`.
    async fn seed() -> Option<Self> {
        Self::seed_with(AGENTS, MAX_JOIN_SIZE).await
    }

    /// `agents` agents, the guard at `max_join_size`.
    async fn seed_with(agents: u64, max_join_size: u32) -> Option<Self> {
        if std::env::var_os("MASIF_TEST_MYSQL_URL").is_none() {
            eprintln!(
                "skipped: MASIF_TEST_MYSQL_URL is unset (this test seeds 100,000 agents on MariaDB)"
            );
            return None;
        }
        let db = TestDatabase::create("plans").await;
        // Open once without the guard to migrate, as a master would.
        drop(open(&db.url()).await);
        let mut conn = mysql_async::Conn::from_url(db.url())
            .await
            .expect("connect");
        for sql in SEED {
            let sql = sql.replace("{AGENTS}", &agents.to_string());
            conn.query_drop(&sql)
                .await
                .unwrap_or_else(|e| panic!("seeding: {sql}: {e}"));
        }
        // Tables derived from the task rows (the pending overview's summary) are recomputed
        // by their migration, as when a database is adopted: it runs again at the next open.
        for migration in DERIVED {
            conn.exec_drop(
                "DELETE FROM masif_schema_version WHERE name = ?",
                (migration,),
            )
            .await
            .expect("forgetting a migration");
        }
        conn.disconnect().await.ok();
        drop(open(&db.url()).await);
        let store = open(&format!("{}?max_join_size={max_join_size}", db.url())).await;
        Some(Self { db, store })
    }
}

async fn open(url: &str) -> Arc<dyn Store> {
    let url: DbUrl = url.parse().expect("database url");
    masif_store::open(&url).await.expect("open store")
}

/// One read of the UI: what it is, and the call.
type Read<'a> = (
    String,
    Pin<Box<dyn Future<Output = masif_store::Result<()>> + Send + 'a>>,
);

fn read<'a, T>(
    what: impl Into<String>,
    call: impl Future<Output = masif_store::Result<T>> + Send + 'a,
) -> Read<'a> {
    (what.into(), Box::pin(async move { call.await.map(drop) }))
}

/// Runs every read and fails naming each one the server refused (or that failed otherwise).
async fn assert_all_pass(reads: Vec<Read<'_>>) {
    let mut failed = Vec::new();
    for (what, call) in reads {
        if let Err(e) = call.await {
            failed.push(format!("{what}: {e}"));
        }
    }
    assert!(failed.is_empty(), "reads refused:\n{}", failed.join("\n"));
}

fn name(i: u64) -> AgentName {
    AgentName::new(format!("host-{i:05}")).unwrap()
}

fn page(number: u64) -> Page {
    Page {
        offset: (number - 1) * 100,
        limit: 100,
    }
}

fn key(package: &str, action: Action, to: Option<&str>) -> TaskKey {
    TaskKey {
        package: PackageName::new(package).unwrap(),
        action,
        to_version: to.map(|v| Version::new(v).unwrap()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The Agents pages (`GET /agents` with every filter, later pages, the counts at the top),
/// one agent's page, the failing packages, approvals, the audit log, tags and roll-outs.
fn agent_page_reads(store: &dyn Store) -> Vec<Read<'_>> {
    let offline_before = now() - 900;
    let ring = Tag::new("ring-1").unwrap();
    let filters = [
        ("all", AgentFilter::default()),
        (
            "name host-09",
            AgentFilter {
                name: Some("host-09".into()),
                ..AgentFilter::default()
            },
        ),
        (
            "offline",
            AgentFilter {
                not_seen_since: Some(offline_before),
                ..AgentFilter::default()
            },
        ),
        (
            "failing",
            AgentFilter {
                failing: true,
                ..AgentFilter::default()
            },
        ),
        (
            "reboot",
            AgentFilter {
                reboot_required: true,
                ..AgentFilter::default()
            },
        ),
        (
            "tag ring-1",
            AgentFilter {
                tag: Some(ring.clone()),
                ..AgentFilter::default()
            },
        ),
        (
            "offline, tag ring-1",
            AgentFilter {
                not_seen_since: Some(offline_before),
                tag: Some(ring),
                ..AgentFilter::default()
            },
        ),
    ];
    let mut reads = Vec::new();
    for (what, filter) in filters {
        for number in [1, 5, 50, 1000] {
            let filter = filter.clone();
            reads.push(read(format!("agents({what}, page {number})"), async move {
                store.agents(&filter, page(number)).await
            }));
        }
    }
    let one = name(AGENTS / 2);
    let names: Vec<AgentName> = (0..100).map(name).collect();
    let base = key("base-00", Action::Update, Some("2.0"));
    reads.extend([
        read("agent_counts", store.agent_counts(offline_before)),
        read("agent_detail", {
            let one = one.clone();
            async move { store.agent_detail(&one).await }
        }),
        read("agent_runs", {
            let one = one.clone();
            async move { store.agent_runs(&one, page(1)).await }
        }),
        read("agent_windows", async move {
            store.agent_windows(&names, now()).await
        }),
        read("failing_packages", store.failing_packages()),
        read("needs_of(base-00 -> 2.0, one agent)", async move {
            let scope = ApprovalScope::Agents(vec![one]);
            store.needs_of(&[base], &scope).await
        }),
        read("approvals(page 1)", store.approvals(page(1))),
        read("approvals(page 20)", store.approvals(page(20))),
        read("audit_log(page 1)", store.audit_log(page(1))),
        read("tags", store.tags(now())),
        read("rollouts(page 1)", store.rollouts(page(1))),
    ]);
    reads
}

/// The pending page (`GET /` with its filters and later pages), selecting agents and counting
/// for the approve form, the fleet metrics and the reset page: the reads of the overview
/// summary (issue 18) that the lead engineer is rebuilding.
fn pending_overview_reads(store: &dyn Store) -> Vec<Read<'_>> {
    let popular = key("base-00", Action::Update, Some("2.0"));
    let filters = [
        ("all", PendingFilter::default()),
        (
            "package pkg-00",
            PendingFilter {
                package: Some("pkg-00".into()),
                ..PendingFilter::default()
            },
        ),
        (
            "action install",
            PendingFilter {
                action: Some(Action::Install),
                ..PendingFilter::default()
            },
        ),
        (
            "security only",
            PendingFilter {
                security_only: true,
                ..PendingFilter::default()
            },
        ),
    ];
    let mut reads = Vec::new();
    for (what, filter) in filters {
        for number in [1, 20] {
            let filter = filter.clone();
            reads.push(read(
                format!("pending_overview({what}, page {number})"),
                async move { store.pending_overview(&filter, page(number)).await },
            ));
        }
    }
    reads.extend([
        read("agents_awaiting(base-00 -> 2.0)", {
            let popular = popular.clone();
            async move { store.agents_awaiting(&[popular], page(1)).await }
        }),
        read("needs_of(base-00 -> 2.0, all agents)", async move {
            store.needs_of(&[popular], &ApprovalScope::AllAgents).await
        }),
        read("pending_by_action", store.pending_by_action()),
    ]);
    reads
}

#[tokio::test]
async fn agent_page_reads_stay_within_the_plan_guard() {
    let Some(fleet) = Fleet::seed().await else {
        return;
    };
    let store = fleet.store.as_ref();
    assert_all_pass(agent_page_reads(store)).await;

    // The totals and page counts the pages show.
    let offline_before = now() - 900;
    let counts = store.agent_counts(offline_before).await.unwrap();
    assert_eq!(
        (
            counts.agents,
            counts.offline,
            counts.failing,
            counts.reboot_required
        ),
        (AGENTS, OFFLINE, FAILING, REBOOT)
    );
    let total = |filter: AgentFilter, number: u64| async move {
        let listing = store.agents(&filter, page(number)).await.unwrap();
        (listing.total, listing.rows.len())
    };
    let offline = AgentFilter {
        not_seen_since: Some(offline_before),
        ..AgentFilter::default()
    };
    assert_eq!(total(AgentFilter::default(), 1000).await, (AGENTS, 100));
    assert_eq!(total(offline.clone(), 10).await, (OFFLINE, 100));
    assert_eq!(total(offline, 11).await, (OFFLINE, 0));
    let failing = AgentFilter {
        failing: true,
        ..AgentFilter::default()
    };
    assert_eq!(total(failing, 20).await, (FAILING, 100));
    let ring = AgentFilter {
        tag: Some(Tag::new("ring-1").unwrap()),
        ..AgentFilter::default()
    };
    assert_eq!(total(ring, 334).await, (AGENTS.div_ceil(3), 34));
    let first = store
        .agents(&AgentFilter::default(), page(1))
        .await
        .unwrap();
    assert_eq!(first.rows[0].name, name(0));
    assert_eq!(first.rows[0].pending_tasks, 20);
    assert_eq!(first.rows[99].name, name(99));

    // The guard works at this size: a scan of every task row is refused.
    let mut conn = mysql_async::Conn::from_url(fleet.db.url())
        .await
        .expect("connect");
    conn.query_drop(format!("SET SESSION max_join_size = {MAX_JOIN_SIZE}"))
        .await
        .expect("set max_join_size");
    let err = conn
        .query_first::<u64, _>("SELECT COUNT(*) FROM task")
        .await
        .expect_err("a scan of 2,000,000 task rows passed the plan guard");
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1104),
        "{err}"
    );
    conn.disconnect().await.ok();
}

/// Small, with a guard as small: what the store does with it, not the plans at scale.
#[tokio::test]
async fn the_store_applies_the_plan_guard_to_reads_but_not_to_writes() {
    let Some(fleet) = Fleet::seed_with(3_000, 1_000).await else {
        return;
    };
    // One connection, so the reads after the write below use the write's connection.
    let store = open(&format!("{}?pool_max=1&max_join_size=1000", fleet.db.url())).await;
    // Refused through the store: counting every one of the 60,000 task rows.
    let err = store.counts().await.expect_err("the guard refused nothing");
    assert!(
        matches!(&err, StoreError::Mysql { source, .. }
            if matches!(source.as_ref(), mysql_async::Error::Server(e) if e.code == 1104)),
        "{err}"
    );
    // A write reading every pending row of a package is not refused, and the guard is back on
    // the connection afterwards.
    let outcome = store
        .approve(
            &[key("base-00", Action::Update, Some("2.0"))],
            &ApprovalScope::AllAgents,
            "plans",
        )
        .await
        .expect("approving for every agent");
    assert_eq!(outcome.pending_rows_approved, 1_000);
    assert!(store.counts().await.is_err());
}

/// The pending page's reads from the summary, and the approval's. Not among them, read from
/// the task rows by design: the overview filtered by agent name (a substring of any name, so
/// every name is read; then only the matching agents' rows) or by tag (the tagged agents'
/// rows), and the reset page's row counts.
#[tokio::test]
async fn pending_overview_reads_stay_within_the_plan_guard() {
    let Some(fleet) = Fleet::seed().await else {
        return;
    };
    assert_all_pass(pending_overview_reads(fleet.store.as_ref())).await;
}

//! The master's Prometheus metrics, scraped over HTTP from a real master (mutual TLS, MariaDB)
//! and parsed: reports counted by outcome with exact values, the duration histogram's count,
//! a held v2 report in the long-poll gauge (and not in the histogram's wait), an approval for
//! one agent waking that agent's held report alone in the wake-up counter, open
//! connections, the database retries and the CRL problem gauge; the listener's 404 and 405.

mod common;

use std::time::Duration;

use common::gated::alpha_update;
use common::{Client, Master, Pki, Reply};
use masif_proto::v2::REPORT_PATH;
use masif_proto::AgentName;
use masif_store::ApprovalScope;
use masif_testkit::db::TestDatabase;
use masif_testkit::scrape::{self, Metrics};
use mysql_async::prelude::Queryable;

const ALPHA_UPDATE: &str =
    r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"}]"#;
/// How long a test waits for a condition before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn reports(m: &Metrics, outcome: &str) -> f64 {
    m.value("masif_master_reports_total", &[("outcome", outcome)])
}

/// Scrapes until `done` holds for the scrape (or fails after [`PATIENCE`]).
async fn scrape_until(master: &Master, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let m = scrape::scrape(master.metrics).await;
        if done(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {m:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reports_are_counted_by_outcome_and_timed() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let first = scrape::scrape(master.metrics).await;
    assert_eq!(first.kind("masif_master_reports"), "counter");
    assert_eq!(
        first.kind("masif_master_report_duration_seconds"),
        "histogram"
    );
    for outcome in [
        "ok",
        "bad_request",
        "rejected",
        "timeout",
        "unavailable",
        "error",
    ] {
        assert_eq!(
            reports(&first, outcome),
            0.0,
            "{outcome} shows from the start"
        );
    }
    assert_eq!(
        first.value("masif_master_report_duration_seconds_count", &[]),
        0.0
    );
    assert_eq!(first.value("masif_master_connections", &[]), 0.0);
    assert_eq!(first.value("masif_master_longpolls_waiting", &[]), 0.0);
    assert_eq!(first.value("masif_master_db_retries_total", &[]), 0.0);
    assert_eq!(first.value("masif_master_crl_problem", &[]), 0.0);

    let mut client = master.agent_client(&pki, "host-a").await;
    assert_eq!(client.report(ALPHA_UPDATE).await.unwrap().status, 200);
    assert_eq!(client.report("[]").await.unwrap().status, 200);
    assert_eq!(client.report("{not json").await.unwrap().status, 400);
    let get = client
        .request("GET", "/v1/pending-tasks", "")
        .await
        .unwrap();
    assert_eq!(get.status, 405);
    // Run results are not reports, refused or not.
    let runs = client
        .request("POST", "/v2/runs", r#"{"runs":[]}"#)
        .await
        .unwrap();
    assert_eq!(runs.status, 400, "{}", runs.body);
    // A body over the limit is refused unread, and its connection closed.
    let mut other = master.agent_client(&pki, "host-c").await;
    let too_big = "x".repeat(masif_proto::MAX_BODY_BYTES as usize + 1);
    let refused = other.request("POST", REPORT_PATH, too_big).await.unwrap();
    assert_eq!(refused.status, 413);
    drop(other);

    let m = scrape::scrape(master.metrics).await;
    assert_eq!(reports(&m, "ok"), 2.0);
    assert_eq!(reports(&m, "bad_request"), 2.0);
    assert_eq!(reports(&m, "rejected"), 1.0);
    for outcome in ["timeout", "unavailable", "error"] {
        assert_eq!(reports(&m, outcome), 0.0, "{outcome}");
    }
    let count = m.value("masif_master_report_duration_seconds_count", &[]);
    assert_eq!(count, 5.0);
    assert_eq!(
        m.value(
            "masif_master_report_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        5.0
    );
    assert!(
        m.value(
            "masif_master_report_duration_seconds_bucket",
            &[("le", "30.0")]
        ) <= 5.0
    );
    assert!(m.value("masif_master_report_duration_seconds_sum", &[]) > 0.0);
    // The one kept-alive agent connection, once the refused one is gone.
    scrape_until(&master, "one connection open", |m| {
        m.value("masif_master_connections", &[]) == 1.0
    })
    .await;
    drop(client);
    scrape_until(&master, "the connection closed", |m| {
        m.value("masif_master_connections", &[]) == 0.0
    })
    .await;
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_held_report_is_a_waiting_long_poll_and_its_wait_is_not_timed() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let held = hold_alpha(master.agent_client(&pki, "host-b").await);
    let m = scrape_until(&master, "a long-poll waiting", |m| {
        m.value("masif_master_longpolls_waiting", &[]) == 1.0
    })
    .await;
    // Counted as answered once stored, before the hold.
    assert_eq!(reports(&m, "ok"), 1.0);
    assert_eq!(
        m.value("masif_master_report_duration_seconds_count", &[]),
        1.0
    );
    approve_alpha(&master, ApprovalScope::AllAgents).await;
    let reply = tokio::time::timeout(PATIENCE, held).await.unwrap().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let m = scrape::scrape(master.metrics).await;
    assert_eq!(m.value("masif_master_longpolls_waiting", &[]), 0.0);
    assert_eq!(
        reports(&m, "ok"),
        1.0,
        "the held answer is not counted twice"
    );
    // However long it was held, its time was taken before: under the 30 s bucket.
    assert_eq!(
        m.value(
            "masif_master_report_duration_seconds_bucket",
            &[("le", "30.0")]
        ),
        1.0
    );
    master.stop().await.unwrap();
}

/// Holds a v2 report of `ALPHA_UPDATE` for an hour on its own task; the handle yields the
/// reply.
fn hold_alpha(mut client: Client) -> tokio::task::JoinHandle<Reply> {
    let body = format!(r#"{{"tasks":{ALPHA_UPDATE},"approved":[],"wait":3600}}"#);
    tokio::spawn(async move {
        client
            .request_within("POST", REPORT_PATH, body, Duration::from_secs(120))
            .await
            .unwrap()
    })
}

async fn approve_alpha(master: &Master, scope: ApprovalScope) {
    master
        .store
        .approve(&[alpha_update()], &scope, "admin")
        .await
        .unwrap();
}

async fn answered_alpha(held: tokio::task::JoinHandle<Reply>) {
    let reply = tokio::time::timeout(PATIENCE, held).await.unwrap().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("alpha"), "{}", reply.body);
}

fn one(name: &str) -> ApprovalScope {
    ApprovalScope::Agents(vec![AgentName::new(name).unwrap()])
}

#[tokio::test]
async fn an_approval_for_one_agent_wakes_that_agents_held_report_alone() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let wakeups = |m: &Metrics| m.value("masif_master_longpoll_wakeups_total", &[]);
    let waiting = |n: f64| move |m: &Metrics| m.value("masif_master_longpolls_waiting", &[]) == n;
    // The first approvals the master reads go to every held report (it has nothing to compare
    // them with): a first report, answered, leaves that read behind.
    let first = hold_alpha(master.agent_client(&pki, "host-0").await);
    scrape_until(&master, "host-0 held", waiting(1.0)).await;
    approve_alpha(&master, one("host-0")).await;
    answered_alpha(first).await;
    let before = wakeups(&scrape::scrape(master.metrics).await);
    let mut held = Vec::new();
    for name in ["host-1", "host-2", "host-3"] {
        held.push(hold_alpha(master.agent_client(&pki, name).await));
    }
    scrape_until(&master, "three held", waiting(3.0)).await;
    approve_alpha(&master, one("host-2")).await;
    answered_alpha(held.remove(1)).await;
    let m = scrape_until(&master, "two held", waiting(2.0)).await;
    assert_eq!(wakeups(&m) - before, 1.0, "host-2's report alone was woken");
    // An approval for every agent reaches the others.
    approve_alpha(&master, ApprovalScope::AllAgents).await;
    for report in held {
        answered_alpha(report).await;
    }
    let m = scrape::scrape(master.metrics).await;
    assert_eq!(wakeups(&m) - before, 3.0);
    master.stop().await.unwrap();
}

/// A changed report that finds its agent's row locked by another transaction meets real lock
/// wait timeouts: each conflicting attempt is a database retry, and the report that gives up
/// is `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_retries_are_counted_and_a_report_that_gives_up_is_unavailable() {
    let pki = Pki::new();
    let db = TestDatabase::create("retries").await;
    let url = format!("{}?lock_wait_timeout=1&max_attempts=2", db.url());
    let store = masif_store::open(&url.parse().unwrap()).await.unwrap();
    let mut lock = mysql_async::Conn::from_url(db.url()).await.unwrap();
    let master = Master::start_with_store(&pki.master, db, store, |_| {}).await;
    let mut client = master.agent_client(&pki, "host-r").await;
    assert_eq!(client.report(ALPHA_UPDATE).await.unwrap().status, 200);
    lock.query_drop("START TRANSACTION").await.unwrap();
    lock.query_drop("SELECT id FROM agent WHERE name = 'host-r' FOR UPDATE")
        .await
        .unwrap();
    let changed = client.report("[]").await.unwrap();
    assert_eq!(changed.status, 503, "{changed:?}");
    lock.query_drop("ROLLBACK").await.unwrap();
    let m = scrape::scrape(master.metrics).await;
    assert_eq!(m.value("masif_master_db_retries_total", &[]), 2.0);
    assert_eq!(reports(&m, "ok"), 1.0);
    assert_eq!(reports(&m, "unavailable"), 1.0);
    assert_eq!(
        m.value("masif_master_report_duration_seconds_count", &[]),
        2.0
    );
    // The lock gone, the same report goes through without a retry.
    assert_eq!(client.report("[]").await.unwrap().status, 200);
    let m = scrape::scrape(master.metrics).await;
    assert_eq!(m.value("masif_master_db_retries_total", &[]), 2.0);
    assert_eq!(reports(&m, "ok"), 2.0);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn unusable_tls_files_show_as_a_crl_problem_until_fixed() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.reload_interval = Duration::from_millis(50)).await;
    // Serving: the files were read (a master does not start with unusable ones).
    let before = scrape::scrape(master.metrics).await;
    assert_eq!(before.value("masif_master_crl_problem", &[]), 0.0);
    let path = pki.master.crl.clone().unwrap();
    let tmp = path.with_extension("new");
    std::fs::write(
        &tmp,
        "-----BEGIN X509 CRL-----\nnot a crl\n-----END X509 CRL-----\n",
    )
    .unwrap();
    std::fs::rename(tmp, &path).unwrap();
    scrape_until(&master, "a CRL problem", |m| {
        m.value("masif_master_crl_problem", &[]) == 1.0
    })
    .await;
    pki.revoke(&[]);
    scrape_until(&master, "the CRL fixed", |m| {
        m.value("masif_master_crl_problem", &[]) == 0.0
    })
    .await;
    master.stop().await.unwrap();
}

#[tokio::test]
async fn the_metrics_listener_answers_404_and_405_and_stops_with_the_master() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let answer = scrape::request(master.metrics, "GET", "/").await;
    assert_eq!(answer.status, 404);
    let answer = scrape::request(master.metrics, "GET", "/v1/pending-tasks").await;
    assert_eq!(answer.status, 404);
    let answer = scrape::request(master.metrics, "POST", "/metrics").await;
    assert_eq!(answer.status, 405);
    assert_eq!(
        answer.headers.get("allow").map(String::as_str),
        Some("GET, HEAD")
    );
    let metrics = master.metrics;
    master.stop().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(metrics).await.is_err(),
        "the metrics listener closes with the master"
    );
}

/// The Grafana dashboard's master panels query only what the master exports, and show every
/// metric it exports (the UI's test checks the rest of the dashboard).
#[tokio::test]
async fn the_dashboard_shows_every_master_metric_and_only_exported_ones() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let m = scrape::scrape(master.metrics).await;
    let exported = m.sample_names();
    let used = scrape::dashboard_metrics(&scrape::dashboard());
    for name in used.iter().filter(|n| n.starts_with("masif_master_")) {
        assert!(
            exported.contains(name),
            "the dashboard uses {name}, not exported"
        );
    }
    for family in m.families.keys() {
        assert!(
            used.iter().any(|u| u.starts_with(family.as_str())),
            "no panel shows {family}"
        );
    }
    master.stop().await.unwrap();
}

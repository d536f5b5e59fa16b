//! The master against a client that holds a valid certificate and misbehaves: early answers
//! as curl sees them, requests at once, report rate, tasks per report, slow bodies and the
//! shared body budget. Raw connections use `Expect: 100-continue`: the interim answer tells
//! that the master has admitted the request and reads its body.

mod common;

use std::time::Duration;

use common::{client_config, raw_connection, read_until, Client, Master, Pki, MASTER_CN};
use tokio::io::AsyncWriteExt;

const ALPHA_UPDATE: &str =
    r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"}]"#;

/// A v1 report of `n` updates.
fn tasks(n: usize) -> String {
    let tasks: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"package":"p{i}","action":"update","from_version":"1.0","to_version":"2.0"}}"#
            )
        })
        .collect();
    format!("[{}]", tasks.join(","))
}

/// A request head announcing `length` body bytes and waiting for the go-ahead.
fn head_expecting(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {MASTER_CN}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    )
}

/// Runs curl with its default protocol choice against the master: (status, HTTP version).
fn curl(
    master: &Master,
    files: &masif_pki::TlsFiles,
    path: &str,
    body: &std::path::Path,
) -> (String, String) {
    let url = format!("https://{MASTER_CN}:{}{path}", master.addr.port());
    #[allow(clippy::disallowed_methods)] // curl is the client under test here
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--output", "/dev/null"])
        .args(["--write-out", "%{http_code} %{http_version}"])
        .arg("--resolve")
        .arg(format!("{MASTER_CN}:{}:127.0.0.1", master.addr.port()))
        .arg("--cert")
        .arg(&files.cert)
        .arg("--key")
        .arg(&files.key)
        .arg("--cacert")
        .arg(&files.ca)
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(url)
        .output()
        .expect("curl runs (scripts/test-all.sh installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "curl failed: {stderr}");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let (code, version) = out.split_once(' ').expect("status and version");
    (code.to_owned(), version.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn early_answers_reach_curl_with_its_default_protocol() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let (_, files) = pki.agent("curl.example.com");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 3 << 20]).unwrap();
    let small = dir.path().join("small.json");
    std::fs::write(&small, "[]").unwrap();
    let runs = tokio::task::spawn_blocking(move || {
        let mut seen = vec![curl(&master, &files, "/v1/pending-tasks", &big)];
        for _ in 0..10 {
            seen.push(curl(&master, &files, "/v1/unknown", &small));
        }
        (master, seen)
    });
    let (master, seen) = runs.await.unwrap();
    assert_eq!(seen[0], ("413".to_owned(), "1.1".to_owned()));
    for answer in &seen[1..] {
        assert_eq!(answer, &("404".to_owned(), "1.1".to_owned()));
    }
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_third_request_at_once_from_one_agent_gets_429() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let (_, files) = pki.agent("busy.example.com");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut raw = raw_connection(master.addr, &files).await;
        let head = head_expecting("/v1/pending-tasks", ALPHA_UPDATE.len());
        raw.write_all(head.as_bytes()).await.unwrap();
        assert!(read_until(&mut raw, "100 Continue")
            .await
            .contains("100 Continue"));
        held.push(raw);
    }
    let mut third = Client::connect(master.addr, client_config(&files))
        .await
        .unwrap();
    let before = master.db.snapshot().await;
    let reply = third.report(ALPHA_UPDATE).await.unwrap();
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(reply.retry_after.as_deref(), Some("5"));
    assert_eq!(master.db.snapshot().await, before);
    // Another agent is not affected.
    let mut other = master.agent_client(&pki, "other.example.com").await;
    assert_eq!(other.report(ALPHA_UPDATE).await.unwrap().status, 200);
    // Once one of the two is answered, the agent may send again.
    let mut first = held.remove(0);
    first.write_all(ALPHA_UPDATE.as_bytes()).await.unwrap();
    assert!(read_until(&mut first, "\r\n\r\n[]")
        .await
        .contains("200 OK"));
    assert_eq!(third.report(ALPHA_UPDATE).await.unwrap().status, 200);
    drop(held);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn reports_over_the_rate_get_429_with_retry_after() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.max_reports_per_minute = 2).await;
    let mut agent = master.agent_client(&pki, "chatty.example.com").await;
    for _ in 0..2 {
        assert_eq!(agent.report(ALPHA_UPDATE).await.unwrap().status, 200);
    }
    let before = master.db.snapshot().await;
    let reply = agent.report(&tasks(3)).await.unwrap();
    assert_eq!(reply.status, 429, "{reply:?}");
    let wait: u64 = reply.retry_after.unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "one report per 30 s: {wait}");
    assert_eq!(
        master.db.snapshot().await,
        before,
        "a refused report changed the database"
    );
    // Run results are not reports.
    let runs = agent.request("POST", "/v2/runs", "[]").await.unwrap();
    assert_ne!(runs.status, 429, "{runs:?}");
    // Each agent has its own allowance.
    let mut other = master.agent_client(&pki, "quiet.example.com").await;
    assert_eq!(other.report(ALPHA_UPDATE).await.unwrap().status, 200);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_report_over_max_tasks_gets_413_and_changes_nothing() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.max_tasks = 3).await;
    let mut agent = master.agent_client(&pki, "greedy.example.com").await;
    assert_eq!(agent.report(&tasks(3)).await.unwrap().status, 200);
    let before = master.db.snapshot().await;
    let reply = agent.report(&tasks(4)).await.unwrap();
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.body.contains("api.max_tasks"), "{}", reply.body);
    let v2 = format!(r#"{{"tasks":{},"approved":[],"wait":0}}"#, tasks(4));
    let reply = agent.request("POST", "/v2/report", v2).await.unwrap();
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(master.db.snapshot().await, before);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_not_complete_in_time_gets_408() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.report_timeout = Duration::from_millis(500)).await;
    let (_, files) = pki.agent("slow.example.com");
    let before = master.db.snapshot().await;
    let mut raw = raw_connection(master.addr, &files).await;
    let head = head_expecting("/v1/pending-tasks", ALPHA_UPDATE.len());
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&ALPHA_UPDATE.as_bytes()[..10]).await.unwrap();
    let answer = read_until(&mut raw, "in time").await;
    assert!(answer.contains("408 Request Timeout"), "{answer}");
    assert_eq!(master.db.snapshot().await, before);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn the_body_budget_is_shared_by_all_connections() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| {
        s.max_body_bytes_in_flight = 1000;
        s.report_timeout = Duration::from_secs(1);
    })
    .await;
    let mut other = master.agent_client(&pki, "other.example.com").await;
    // One agent announces 900 bytes and sends none: its room is taken once it gets the go-ahead.
    let (_, files) = pki.agent("hog.example.com");
    let mut hog = raw_connection(master.addr, &files).await;
    hog.write_all(head_expecting("/v1/pending-tasks", 900).as_bytes())
        .await
        .unwrap();
    assert!(read_until(&mut hog, "100 Continue")
        .await
        .contains("100 Continue"));
    // Another agent's body does not fit beside it: 503 once its deadline passed.
    let body = format!("{ALPHA_UPDATE}{}", " ".repeat(200));
    let reply = other.report(&body).await.unwrap();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.retry_after.is_some());
    // The hog's deadline passes too; its room is given back.
    assert!(read_until(&mut hog, "in time").await.contains("408"));
    assert_eq!(other.report(&body).await.unwrap().status, 200);
    master.stop().await.unwrap();
}

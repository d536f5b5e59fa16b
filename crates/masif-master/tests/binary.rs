//! The shipped `masif-master` binary: `--check-config`, refusal to start on a CRITICAL
//! certificate finding, serving, a clean exit on SIGTERM, and `kill -9` in the middle of a
//! write batch (issue 14, item 8).

#![allow(clippy::disallowed_methods)] // these tests run the real binary and send it signals

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client_config, post_once, Client, Pki};
use masif_testkit::db::TestDatabase;
use masif_testkit::pki::Usage;

fn write_config(
    pki: &Pki,
    port: u16,
    db_url: &str,
    files: &masif_pki::TlsFiles,
) -> std::path::PathBuf {
    let path = pki.dir.path().join(format!("master-{port}.yml"));
    std::fs::write(
        &path,
        format!(
            "api:\n  listen: \"127.0.0.1:{port}\"\n  name: {}\ntls:\n  cert: {:?}\n  key: {:?}\n  ca: {:?}\n  crl: {:?}\ndb:\n  url: {db_url:?}\nlog:\n  level: info\n",
            common::MASTER_CN,
            files.cert,
            files.key,
            files.ca,
            files.crl.as_ref().unwrap()
        ),
    )
    .unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn master(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_masif-master"));
    command.args(args);
    command
}

#[test]
fn check_config_accepts_a_good_file_and_names_bad_keys() {
    let pki = Pki::new();
    let good = write_config(&pki, 8150, "mysql://u:pw@127.0.0.1/db", &pki.master);
    let out = master(&["--config", good.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = pki.dir.path().join("bad.yml");
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("listen:", "listn:");
    std::fs::write(&bad, text).unwrap();
    let out = master(&["--config", bad.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listn") && stderr.contains("bad.yml"),
        "{stderr}"
    );
}

#[test]
fn an_expired_certificate_is_refused_at_start_up() {
    let pki = Pki::new();
    let now = time::OffsetDateTime::now_utc();
    let expired = pki
        .ca
        .issue_valid(
            common::MASTER_CN,
            Usage::Server,
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    let crl = pki.ca.crl_pem(&[], 30).unwrap();
    let files = pki
        .ca
        .write_files(&pki.dir.path().join("expired"), &expired, Some(&crl))
        .unwrap();
    let config = write_config(&pki, free_port(), "mysql://u:pw@127.0.0.1/db", &files);
    let out = master(&["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("expired"), "{stderr}");
    assert!(!stderr.contains("pw@"), "password leaked: {stderr}");
}

#[tokio::test]
async fn serves_and_exits_cleanly_on_sigterm() {
    let pki = Pki::new();
    let db = TestDatabase::create("binary").await;
    let port = free_port();
    let config = write_config(&pki, port, &db.url(), &pki.master);
    let metrics_port = free_port();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("metrics_listen: \"127.0.0.1:{metrics_port}\"\n"));
    std::fs::write(&config, text).unwrap();
    let mut child = master(&["--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_, files) = pki.agent("bin.example.com");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let reply = first_answer(addr, &files).await;
    assert_eq!(reply.status, 200);
    // metrics_listen serves the metrics of the running binary.
    let metrics_addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let metrics = masif_testkit::scrape::scrape(metrics_addr).await;
    let ok = metrics.value("masif_master_reports_total", &[("outcome", "ok")]);
    assert!(ok >= 1.0, "{metrics:?}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "master did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still open"
    );
    assert!(
        tokio::net::TcpStream::connect(metrics_addr).await.is_err(),
        "metrics port still open"
    );
}

/// The first answer of a master starting on `addr` to an empty report from `files`' agent.
async fn first_answer(addr: std::net::SocketAddr, files: &masif_pki::TlsFiles) -> common::Reply {
    let started = Instant::now();
    loop {
        match post_once(addr, client_config(files), "[]").await {
            Ok(reply) => return reply,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("master never answered: {e}"),
        }
    }
}

const AGENTS: usize = 60;
const FIRST_WAVE: usize = 10;
const TASKS: usize = 400;

/// Agent `agent`'s first report: TASKS installs of packages of its own and shared ones.
fn first_report(agent: usize) -> (String, BTreeSet<(String, String)>) {
    let tasks: BTreeSet<(String, String)> = (0..TASKS)
        .map(|i| {
            let package = match i % 2 {
                0 => format!("shared{i}"),
                _ => format!("own{agent}-{i}"),
            };
            (package, format!("1.{agent}"))
        })
        .collect();
    let body: Vec<String> = tasks
        .iter()
        .map(|(p, v)| format!(r#"{{"package":"{p}","action":"install","to_version":"{v}"}}"#))
        .collect();
    (format!("[{}]", body.join(",")), tasks)
}

/// Agent `agent`'s stored pending (package, target version) pairs, and whether its
/// `agent_report` row (the digest of its pending set) exists.
async fn stored(db: &TestDatabase, agent: usize) -> (BTreeSet<(String, String)>, bool) {
    use mysql_async::prelude::*;
    let mut conn = mysql_async::Conn::from_url(db.url()).await.unwrap();
    let name = format!("agent{agent}");
    let tasks: Vec<(String, String)> = conn
        .exec(
            "SELECT p.name, t.to_version FROM task t JOIN agent a ON a.id = t.agent \
             JOIN package p ON p.id = t.package WHERE a.name = ? AND t.approved = 0",
            (&name,),
        )
        .await
        .unwrap();
    let digest: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM agent_report r JOIN agent a ON a.id = r.agent WHERE a.name = ?",
            (&name,),
        )
        .await
        .unwrap();
    conn.disconnect().await.ok();
    (tasks.into_iter().collect(), digest == Some(1))
}

/// The master killed with SIGKILL while a write batch of first reports is open in MariaDB:
/// every agent has either its complete task set (with its digest) or nothing, every report
/// answered before is complete, and a restarted master takes every agent's report again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_write_batch_leaves_no_half_written_report() {
    use mysql_async::prelude::*;
    let pki = Pki::new();
    let db = TestDatabase::create("kill9").await;
    let port = free_port();
    let config = write_config(&pki, port, &db.url(), &pki.master);
    let start = || {
        master(&["--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = Killed(start());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probe = pki.agent("probe").1;
    assert_eq!(first_answer(addr, &probe).await.status, 200);

    let files: Vec<_> = (0..AGENTS)
        .map(|a| pki.agent(&format!("agent{a}")).1)
        .collect();
    let mut clients = Vec::new();
    for f in &files {
        clients.push(Client::connect(addr, client_config(f)).await.unwrap());
    }
    // A first wave is written and answered; the master dies in the write of the second.
    let mut answered = BTreeSet::new();
    let mut clients = clients.into_iter().enumerate();
    for (a, mut client) in clients.by_ref().take(FIRST_WAVE) {
        let reply = client.report(&first_report(a).0).await.unwrap();
        assert_eq!(reply.status, 200, "agent{a}");
        answered.insert(a);
    }
    // The second wave's write transaction stops at a shared package's lock, after writing its
    // agents' rows: the master is killed with that transaction open.
    let mut holder = mysql_async::Conn::from_url(db.url()).await.unwrap();
    holder.query_drop("START TRANSACTION").await.unwrap();
    holder
        .query_drop("SELECT id FROM package WHERE name = 'shared0' FOR UPDATE")
        .await
        .unwrap();
    let flood: Vec<_> = clients
        .map(|(a, mut client)| {
            tokio::spawn(async move {
                let reply = client.report(&first_report(a).0).await;
                (a, reply.ok().map(|r| r.status))
            })
        })
        .collect();
    // Kill once the write waits for that lock (a guard against hanging, not a timing
    // assertion).
    let writing = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                   WHERE DB = DATABASE() AND ID <> CONNECTION_ID() \
                     AND INFO LIKE '%LOCK IN SHARE MODE%' AND TIME_MS > 200";
    let mut watch = mysql_async::Conn::from_url(db.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open: Option<u64> = watch.query_first(writing).await.unwrap();
        if open.unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no write batch was seen open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill_9();
    holder.query_drop("ROLLBACK").await.unwrap();
    drop((watch, holder));
    for report in flood {
        match report.await.unwrap() {
            (a, Some(200)) => {
                answered.insert(a);
            }
            (a, Some(status)) => panic!("agent{a}: {status}"),
            (_, None) => {} // the connection died with the master
        }
    }
    let (mut complete, mut empty) = (0, 0);
    for a in 0..AGENTS {
        let (tasks, digest) = stored(&db, a).await;
        if tasks.is_empty() {
            assert!(!digest, "agent{a}: a digest without its tasks");
            assert!(
                !answered.contains(&a),
                "agent{a} was answered but has nothing"
            );
            empty += 1;
        } else {
            assert_eq!(tasks, first_report(a).1, "agent{a}: half-written");
            assert!(digest, "agent{a}: tasks without their digest");
            complete += 1;
        }
    }
    eprintln!(
        "killed mid-batch: {complete} agents complete ({} answered), {empty} with nothing",
        answered.len()
    );

    // A restarted master takes every agent's report; each ends with its complete set.
    let _child = Killed(start());
    assert_eq!(first_answer(addr, &probe).await.status, 200);
    for (a, f) in files.iter().enumerate() {
        let reply = post_once(addr, client_config(f), &first_report(a).0)
            .await
            .unwrap();
        assert_eq!((reply.status, reply.body.trim()), (200, "[]"), "agent{a}");
        assert_eq!(stored(&db, a).await, (first_report(a).1, true), "agent{a}");
    }
}

/// A master process killed with SIGKILL when the test is done with it, or fails.
struct Killed(std::process::Child);

impl Killed {
    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill_9();
    }
}

//! The shipped `masif-master` binary: `--check-config`, refusal to start on a CRITICAL
//! certificate finding, serving, and a clean exit on SIGTERM.

#![allow(clippy::disallowed_methods)] // these tests run the real binary and send it signals

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client_config, post_once, Pki};
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
    let mut child = master(&["--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (_, files) = pki.agent("bin.example.com");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let reply = loop {
        match post_once(addr, client_config(&files), "[]").await {
            Ok(reply) => break reply,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("master never answered: {e}"),
        }
    };
    assert_eq!(reply.status, 200);
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
}

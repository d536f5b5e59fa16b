//! The master over real mutual TLS against a real MariaDB: identities, refusals, malformed
//! input that changes nothing, limits, compatibility with the original database, reloading.

mod common;

use std::time::Duration;

use common::{anonymous_client_config, client_config, post_once, Client, Master, Pki};
use masif_testkit::pki::{EphemeralCa, Usage};

const ALPHA_UPDATE: &str =
    r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"}]"#;
const TWO_TASKS: &str = r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"},{"package":"gamma","action":"install","to_version":"1.0"}]"#;

#[tokio::test]
async fn agents_are_told_only_their_own_approvals() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let (_, a_files) = pki.agent("a.example.com");
    let (_, b_files) = pki.agent("b.example.com");
    let mut a = Client::connect(master.addr, client_config(&a_files))
        .await
        .unwrap();
    let mut b = Client::connect(master.addr, client_config(&b_files))
        .await
        .unwrap();

    let reply = a.report(TWO_TASKS).await.unwrap();
    assert_eq!((reply.status, reply.body.trim()), (200, "[]"));
    assert_eq!(b.report(TWO_TASKS).await.unwrap().status, 200);

    // Approve alpha's update for agent a only, the way the original UI's per-agent flow does.
    master
        .db
        .execute(
            "INSERT INTO task(agent, package, from_version, to_version, action, approved) \
             SELECT a.id, p.id, NULL, '2.0', 'update', 1 FROM agent a, package p \
             WHERE a.name = 'a.example.com' AND p.name = 'alpha'",
        )
        .await;
    let reply = a.report(TWO_TASKS).await.unwrap();
    assert_eq!(reply.status, 200);
    let approved = masif_proto::parse_task_list(reply.body.as_bytes()).unwrap();
    assert_eq!(
        approved,
        masif_proto::parse_task_list(ALPHA_UPDATE.as_bytes()).unwrap()
    );
    let reply = b.report(TWO_TASKS).await.unwrap();
    assert_eq!(reply.body.trim(), "[]", "b must not see a's approval");

    // b's pending set is untouched by a's reports.
    let detail = master
        .store
        .agent_detail(&masif_proto::AgentName::new("b.example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.pending.len(), 2);
    let detail = master
        .store
        .agent_detail(&masif_proto::AgentName::new("a.example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        detail.pending.len(),
        1,
        "a's approved task is no longer pending"
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn approvals_written_the_original_way_are_honoured() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let mut client = master.agent_client(&pki, "c.example.com").await;
    assert_eq!(client.report(TWO_TASKS).await.unwrap().status, 200);
    // "Approve selection": agent NULL, from_version NULL.
    master
        .db
        .execute(
            "INSERT INTO task(agent, package, from_version, to_version, action, approved) \
             SELECT NULL, id, NULL, '1.0', 'install', 1 FROM package WHERE name = 'gamma'",
        )
        .await;
    let reply = client.report(TWO_TASKS).await.unwrap();
    assert_eq!(
        reply.body.trim(),
        r#"[{"package":"gamma","action":"install","to_version":"1.0"}]"#
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn an_original_database_is_adopted_in_place() {
    let pki = Pki::new();
    let db = masif_testkit::db::TestDatabase::create("adopt").await;
    // Exactly the original schema, with rows the original master and UI wrote.
    db.execute(include_str!("../../../schema/mysql/0001_original.sql"))
        .await;
    db.execute(
        "INSERT INTO agent(name, ctime, mtime) VALUES ('old.example.com', 1500000000, 1500000000);
         INSERT INTO package(name) VALUES ('perl');
         INSERT INTO task(agent, package, from_version, to_version, action, approved)
           VALUES (1, 1, '5.24.1-3+deb9u3', '5.24.1-3+deb9u4', 'update', 0),
                  (NULL, 1, NULL, '5.24.1-3+deb9u4', 'update', 1);",
    )
    .await;
    let master = Master::start_on(&pki.master, db, |_| {}).await;
    let (_, files) = pki.agent("old.example.com");
    let reply = post_once(
        master.addr,
        client_config(&files),
        r#"[{"package":"perl","action":"update","from_version":"5.24.1-3+deb9u3","to_version":"5.24.1-3+deb9u4"}]"#,
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("5.24.1-3+deb9u4"), "{}", reply.body);
    let counts = master.store.counts().await.unwrap();
    assert_eq!(
        (counts.agents, counts.packages),
        (1, 1),
        "existing rows are reused"
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn foreign_revoked_and_anonymous_clients_are_refused() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.reload_interval = Duration::from_millis(200)).await;

    let foreign = EphemeralCa::new("Masif Test CA").unwrap(); // same name, different key
    let stranger = foreign.issue("a.example.com", Usage::Client).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut stranger_files = foreign.write_files(dir.path(), &stranger, None).unwrap();
    stranger_files.ca = pki.master.ca.clone(); // it trusts the real master
    assert!(post_once(master.addr, client_config(&stranger_files), "[]")
        .await
        .is_err());

    assert!(
        post_once(master.addr, anonymous_client_config(&pki.master), "[]")
            .await
            .is_err()
    );

    // Revoked while the master runs: refused without a restart.
    let (issued, files) = pki.agent("revoked.example.com");
    assert_eq!(
        post_once(master.addr, client_config(&files), "[]")
            .await
            .unwrap()
            .status,
        200
    );
    pki.revoke(&[&issued]);
    let mut refused = false;
    for _ in 0..50 {
        if post_once(master.addr, client_config(&files), "[]")
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the republished CRL was not picked up");
    // Others still get in.
    let (_, ok_files) = pki.agent("fine.example.com");
    assert_eq!(
        post_once(master.addr, client_config(&ok_files), "[]")
            .await
            .unwrap()
            .status,
        200
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_certificate_revoked_meanwhile_is_refused_on_its_kept_alive_connection() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.reload_interval = Duration::from_millis(200)).await;
    let (issued, files) = pki.agent("long-poller.example.com");
    let mut revoked = Client::connect(master.addr, client_config(&files))
        .await
        .unwrap();
    let mut other = master.agent_client(&pki, "other.example.com").await;
    assert_eq!(revoked.report(ALPHA_UPDATE).await.unwrap().status, 200);
    pki.revoke(&[&issued]);
    // The same connection, never idle long enough to be closed, once the CRL is re-read.
    let mut status = 200;
    for _ in 0..50 {
        status = revoked.report(ALPHA_UPDATE).await.unwrap().status;
        if status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 403, "the new CRL never reached the open connection");
    assert!(
        revoked.report(ALPHA_UPDATE).await.is_err(),
        "the master keeps the connection of a revoked certificate open"
    );
    assert_eq!(other.report(ALPHA_UPDATE).await.unwrap().status, 200);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_certificate_without_cn_gets_400() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let issued = pki.ca.issue("", Usage::Client).unwrap();
    let files = pki
        .ca
        .write_files(&pki.dir.path().join("nocn"), &issued, None)
        .unwrap();
    let reply = post_once(master.addr, client_config(&files), "[]")
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("common name"), "{}", reply.body);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_certificate_whose_cn_holds_a_format_character_gets_400() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    // Looks like "web01.example.com" followed by a reversed tail in the UI.
    // Issued without a SAN (a DNS name cannot hold it), the CN set alone.
    let issued = pki
        .ca
        .issue_with("", Usage::Client, |params| {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "web01\u{202e}moc.elpmaxe");
        })
        .unwrap();
    let files = pki
        .ca
        .write_files(&pki.dir.path().join("bidi"), &issued, None)
        .unwrap();
    let reply = post_once(master.addr, client_config(&files), "[]")
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("common name") && reply.body.contains("format character"),
        "{}",
        reply.body
    );
    assert_eq!(master.store.counts().await.unwrap().agents, 0);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_certificate_with_two_common_names_is_refused() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    // A second attribute with the CN's object identifier (2.5.4.3) beside the first.
    let issued = pki
        .ca
        .issue_with("web01.example.com", Usage::Client, |params| {
            params.distinguished_name.push(
                rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]),
                "db01.example.com",
            );
        })
        .unwrap();
    let files = pki
        .ca
        .write_files(&pki.dir.path().join("two-cns"), &issued, None)
        .unwrap();
    let report = masif_pki::check(
        &files,
        &masif_pki::CheckOptions::new(masif_pki::Role::Agent),
    );
    assert_eq!(report.status(), masif_pki::Severity::Critical);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("2 common names")),
        "{:?}",
        report.findings
    );
    let refused = post_once(master.addr, client_config(&files), ALPHA_UPDATE).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(master.store.counts().await.unwrap().agents, 0);
    // The same CA's single-CN certificates still get in.
    let (_, good) = pki.agent("web02.example.com");
    let reply = post_once(master.addr, client_config(&good), ALPHA_UPDATE)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_bodies_get_400_and_change_nothing() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let mut client = master.agent_client(&pki, "d.example.com").await;
    assert_eq!(client.report(TWO_TASKS).await.unwrap().status, 200);
    let before = master.db.snapshot().await;
    let long = "x".repeat(192);
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "JSON"),
        ("{".into(), "JSON"),
        (r#"{"package":"a"}"#.into(), "array"),
        ("[1]".into(), "object"),
        (
            r#"[{"action":"install","to_version":"1"}]"#.into(),
            "package",
        ),
        (
            r#"[{"package":"","action":"install","to_version":"1"}]"#.into(),
            "empty",
        ),
        (
            r#"[{"package":"a","action":"upgrade","to_version":"1"}]"#.into(),
            "unknown action",
        ),
        (
            r#"[{"package":"a","action":"install","from_version":"1","to_version":"2"}]"#.into(),
            "install",
        ),
        (
            r#"[{"package":"a","action":"update","to_version":"2"}]"#.into(),
            "update",
        ),
        (
            r#"[{"package":"a","action":"configure"}]"#.into(),
            "configure",
        ),
        (r#"[{"package":"a","action":"remove"}]"#.into(), "remove"),
        (
            r#"[{"package":"a","action":"install","to_version":null}]"#.into(),
            "string",
        ),
        (
            format!(r#"[{{"package":"{long}","action":"install","to_version":"1"}}]"#),
            "longer than 191",
        ),
        (
            format!(r#"[{{"package":"a","action":"install","to_version":"{long}"}}]"#),
            "longer than 191",
        ),
        (
            format!(
                r#"[{{"package":"ok","action":"install","to_version":"1"}},{{"package":"{long}","action":"install","to_version":"1"}}]"#
            ),
            "task 1",
        ),
        (
            r#"[{"package":"open\u202essl","action":"install","to_version":"1"}]"#.into(),
            "invisible format character",
        ),
        (
            r#"[{"package":"a","action":"install","to_version":"1.0\u200b"}]"#.into(),
            "invisible format character",
        ),
    ];
    for (body, reason) in cases {
        let reply = client.report(&body).await.unwrap();
        assert_eq!(reply.status, 400, "{body:.60}");
        assert!(
            reply.body.contains(reason),
            "{:?} should mention {reason:?}",
            reply.body
        );
        assert!(reply.body.len() < 300, "error bodies stay short");
    }
    assert_eq!(
        master.db.snapshot().await,
        before,
        "a refused report changed the database"
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_413_without_echo() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let (_, files) = pki.agent("e.example.com");
    let before = master.db.snapshot().await;
    let two_mib = format!("[{}]", "\"x\",".repeat(512 * 1024));
    let reply = post_once(master.addr, client_config(&files), &two_mib)
        .await
        .unwrap();
    assert_eq!(reply.status, 413);
    assert!(reply.body.len() < 100);
    assert_eq!(master.db.snapshot().await, before);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn other_paths_and_methods() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let mut client = master.agent_client(&pki, "f.example.com").await;
    let reply = client
        .request("GET", "/v1/pending-tasks", "")
        .await
        .unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(
        client
            .request("PUT", "/v1/pending-tasks", "[]")
            .await
            .unwrap()
            .status,
        405
    );
    assert_eq!(
        client
            .request("POST", "/v1/pending-task", "[]")
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(client.request("GET", "/", "").await.unwrap().status, 404);
    assert_eq!(
        client
            .request("POST", "/v1/pending-tasks/x", "[]")
            .await
            .unwrap()
            .status,
        404
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.idle_timeout = Duration::from_millis(500)).await;
    let mut client = master.agent_client(&pki, "g.example.com").await;
    assert_eq!(client.report("[]").await.unwrap().status, 200);
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client.is_closed() {
            closed = true;
            break;
        }
    }
    assert!(closed, "an idle kept-alive connection stayed open");
    master.stop().await.unwrap();
}

#[tokio::test]
async fn slow_handshakes_are_cut_off() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.handshake_timeout = Duration::from_millis(300)).await;
    // A TCP client that never speaks TLS.
    let mut tcp = tokio::net::TcpStream::connect(master.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .expect("the master never closed the silent connection");
    assert!(matches!(read, Ok(0) | Err(_)));
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_restart() {
    let pki = Pki::new();
    let master = Master::start(&pki, |s| s.reload_interval = Duration::from_millis(200)).await;
    let (_, files) = pki.agent("h.example.com");
    assert!(
        post_once(master.addr, client_config(&files), "[]")
            .await
            .is_ok(),
        "serving before the renewal"
    );
    // Renew the master certificate under a new CA (as a migration to another PKI would).
    let new_ca = EphemeralCa::new("Renewed CA").unwrap();
    let renewed = new_ca.issue(common::MASTER_CN, Usage::Server).unwrap();
    let staged = new_ca
        .write_files(&pki.dir.path().join("staged"), &renewed, None)
        .unwrap();
    std::fs::copy(&staged.cert, &pki.master.cert).unwrap();
    std::fs::copy(&staged.key, &pki.master.key).unwrap();
    // The old CA still verifies clients, but the agent (trusting only the old CA) must now
    // fail to verify the master; one trusting the new CA succeeds.
    let mut new_files = files.clone();
    new_files.ca = staged.ca.clone();
    let mut switched = false;
    for _ in 0..50 {
        if post_once(master.addr, client_config(&new_files), "[]")
            .await
            .is_ok()
        {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the renewed certificate was not picked up");
    assert!(post_once(master.addr, client_config(&files), "[]")
        .await
        .is_err());
    master.stop().await.unwrap();
}

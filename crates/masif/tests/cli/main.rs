//! The real `masif` binary against a real UI (SQLite, and MariaDB where rows need an age or a
//! name no report can carry): every API subcommand's table and `--json`, approve then revoke
//! as the database and the audit log see them, API errors (exit 1), usage errors (exit 2),
//! HTTPS with a private CA, `check-fleet` under each condition (`fleet`), and tags and staged
//! roll-outs (`rollouts`).

mod fixture;
mod fleet;
mod rollouts;

use fixture::*;
use masif_proto::v2::Outcome;
use masif_store::Page;

/// web-1 and web-2 await zeta's update, web-1 also newpkg's install; web-2's perl update
/// failed after approval; sec-1 awaits openssl's security update.
async fn scene(ui: &Ui) {
    ui.report(
        "web-1",
        vec![update("zeta", "1.0", "2.0"), install("newpkg", "1.0")],
    )
    .await;
    ui.report(
        "web-2",
        vec![update("zeta", "1.0", "2.0"), update("perl", "5.1", "5.2")],
    )
    .await;
    ui.record_runs(
        "web-2",
        &[run(
            "w2-1",
            update("perl", "5.1", "5.2"),
            Outcome::Failed,
            unix_now() - 60,
        )],
    )
    .await;
    ui.report_security("sec-1", update("openssl", "3.0.1", "3.0.2"), vec![])
        .await;
    ui.store.flush().await;
}

/// The line of `text` that starts with `start`.
fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in\n{text}"))
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_lists_filters_and_prints_the_api_json() {
    let ui = Ui::sqlite(Options::default()).await;
    scene(&ui).await;

    let out = ui.masif(&["pending"]).await;
    let text = out.ok();
    assert!(text.starts_with("PACKAGE "), "{text}");
    assert_eq!(
        words(line(text, "zeta"))[..4],
        ["zeta", "update", "2.0", "2"]
    );
    assert_eq!(
        words(line(text, "newpkg"))[..4],
        ["newpkg", "install", "1.0", "1"]
    );
    assert_eq!(
        words(line(text, "openssl"))[..5],
        ["openssl", "update", "3.0.2", "1", "yes"]
    );
    assert!(text.contains("1 security update on 1 agent\n"), "{text}");
    assert!(
        text.contains("approved but failing: perl on 1 agent"),
        "{text}"
    );

    let json = ui.masif(&["pending", "--json"]).await.json();
    let packages: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["package"].as_str().unwrap())
        .collect();
    for p in ["newpkg", "openssl", "perl", "zeta"] {
        assert!(packages.contains(&p), "{p} in {json}");
    }
    assert_eq!(json["security"]["updates"], 1);

    // Filters go to the API as its query parameters.
    let json = ui
        .masif(&["pending", "--package", "ZET", "--json"])
        .await
        .json();
    assert_eq!(json["total"], 1, "{json}");
    assert_eq!(json["items"][0]["package"], "zeta");
    let json = ui.masif(&["pending", "--security", "--json"]).await.json();
    assert_eq!(json["items"][0]["package"], "openssl", "{json}");
    let text = ui
        .masif(&["pending", "--agent", "web-1", "--action", "install"])
        .await;
    assert!(text.ok().contains("newpkg"), "{text:?}");
    assert!(!text.ok().contains("zeta"), "{text:?}");
    let text = ui
        .masif(&["pending", "--per-page", "1", "--page", "2"])
        .await;
    assert!(text.ok().contains("page 2 of 4 (4 packages)"), "{text:?}");
    ui.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_one_agent_as_tables_and_json() {
    let ui = Ui::sqlite(Options::default()).await;
    scene(&ui).await;

    let out = ui.masif(&["agents"]).await;
    let text = out.ok();
    let web2 = words(line(text, "web-2"));
    assert!(web2.contains(&"online"), "{text}");
    assert!(line(text, "web-2").contains("failure"), "{text}");
    assert!(
        text.contains("fleet: 3 agents, 0 offline, 1 failing, 0 to reboot"),
        "{text}"
    );

    let json = ui.masif(&["agents", "--failing", "--json"]).await.json();
    assert_eq!(json["total"], 1, "{json}");
    assert_eq!(json["items"][0]["name"], "web-2");
    assert_eq!(json["counts"]["agents"], 3);
    let text = ui.masif(&["agents", "--name", "WEB"]).await;
    assert!(!text.ok().contains("sec-1"), "{text:?}");
    assert!(text.ok().contains("web-1"), "{text:?}");

    let out = ui.masif(&["agent", "web-2"]).await;
    let text = out.ok();
    assert!(text.contains("agent           web-2\n"), "{text}");
    assert_eq!(
        words(line(text, "zeta"))[..4],
        ["zeta", "update", "1.0", "2.0"]
    );
    assert!(
        text.lines().any(|l| l.contains("  perl     failure  100")),
        "{text}"
    );
    let json = ui.masif(&["agent", "web-2", "--json"]).await.json();
    assert_eq!(json["agent"]["name"], "web-2");
    assert_eq!(json["runs"]["total"], 1);

    let out = ui.masif(&["agent", "web-9"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("(HTTP 404 Not Found)"), "{out:?}");
    ui.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_then_revoke_changes_the_database_and_the_audit_log() {
    let ui = Ui::sqlite(Options::default()).await;
    scene(&ui).await;
    let approvals = || async {
        ui.store
            .approvals(Page::default())
            .await
            .expect("approvals")
            .rows
    };

    let out = ui.masif(&["approve", "zeta", "update", "2.0"]).await;
    assert!(out.ok().contains("approved update zeta 2.0\n"), "{out:?}");
    assert!(out.ok().contains("for every agent:"), "{out:?}");
    let rows = approvals().await;
    assert!(rows
        .iter()
        .any(|a| a.package.as_ref().map(|p| p.as_str()) == Some("zeta")));

    // Several tasks at once, for one agent.
    let out = ui
        .masif(&[
            "approve",
            "--task",
            "install:newpkg=1.0",
            "--task",
            "update:perl=5.2",
            "--agent",
            "web-1",
            "--json",
        ])
        .await;
    let json = out.json();
    assert_eq!(json["agents"], serde_json::json!(["web-1"]), "{json}");
    assert_eq!(json["tasks"].as_array().unwrap().len(), 2, "{json}");
    // The store adds the configure step of each install and update (APT plans both).
    let rows = approvals().await;
    assert_eq!(rows.len(), 6, "{rows:?}");

    // An unknown agent: 400 naming it, nothing written.
    let out = ui
        .masif(&["approve", "zeta", "update", "2.0", "--agent", "nope-1"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("nope-1") && out.stderr.contains("HTTP 400"),
        "{out:?}"
    );
    assert_eq!(approvals().await.len(), 6);

    let json = ui.masif(&["approvals", "--json"]).await.json();
    let zeta = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["package"] == "zeta" && a["action"] == "update")
        .unwrap_or_else(|| panic!("zeta in {json}"));
    let id = zeta["id"].as_u64().unwrap().to_string();
    let text = ui.masif(&["approvals"]).await;
    assert!(words(line(text.ok(), &id)).contains(&"zeta"), "{text:?}");

    let out = ui.masif(&["revoke", &id]).await;
    assert_eq!(out.ok(), format!("revoked approval {id}\n"));
    let rows = approvals().await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(!rows.iter().any(|a| a.id.to_string() == id), "{rows:?}");

    // Revoking it again: 404, exit 1, the other ids still revoked.
    let other = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["package"] == "newpkg" && a["action"] == "install")
        .unwrap()["id"]
        .to_string();
    let out = ui.masif(&["revoke", &id, &other]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("revoking approval {id}: ")),
        "{out:?}"
    );
    assert!(out.stderr.contains("HTTP 404"), "{out:?}");
    assert_eq!(out.stdout, format!("revoked approval {other}\n"));
    assert_eq!(approvals().await.len(), 4);

    let out = ui.masif(&["audit"]).await;
    let text = out.ok();
    assert!(text.starts_with("ID "), "{text}");
    assert!(
        text.lines().filter(|l| l.contains(TOKEN_NAME)).count() >= 4,
        "{text}"
    );
    let json = ui.masif(&["audit", "--json"]).await.json();
    assert!(json["total"].as_u64().unwrap() >= 4, "{json}");
    ui.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_exit_1_and_usage_errors_exit_2() {
    let ui = Ui::sqlite(Options::default()).await;
    let token_file = ui.token_file.to_str().unwrap().to_owned();

    // A wrong token: the API's message and status.
    let wrong = ui.dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let out = masif(
        &[
            "agents",
            "--url",
            &ui.url,
            "--token-file",
            wrong.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("masif: ") && out.stderr.contains("(HTTP 401 Unauthorized)"),
        "{out:?}"
    );

    // The environment instead of flags.
    let out = masif(
        &["agents"],
        &[("MASIF_URL", &ui.url), ("MASIF_TOKEN", TOKEN)],
    )
    .await;
    assert!(out.ok().contains("no agents"), "{out:?}");

    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}/");
    let out = masif(&["agents", "--url", &url, "--token-file", &token_file], &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{closed}")),
        "{out:?}"
    );

    // Usage: no URL, no token, a bad flag or value, no task to approve.
    for (args, env, needle) in [
        (
            vec!["agents", "--token-file", &token_file],
            vec![],
            "no API URL",
        ),
        (vec!["agents", "--url", &ui.url], vec![], "no API token"),
        (
            vec!["agents", "--url", "ftp://x/", "--token-file", &token_file],
            vec![],
            "expected http or https",
        ),
        (vec!["agents", "--bogus"], vec![], "--bogus"),
        (vec!["pending", "--action", "upgrade"], vec![], "upgrade"),
        (vec!["approve", "--task", "zeta"], vec![], "ACTION:PACKAGE"),
        (
            vec!["approve"],
            vec![("MASIF_URL", ui.url.as_str()), ("MASIF_TOKEN", TOKEN)],
            "approve needs a task",
        ),
        (vec!["revoke", "seven"], vec![], "seven"),
    ] {
        let out = masif(&args, &env).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    ui.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    use masif_testkit::pki::{EphemeralCa, Usage};
    let ca = EphemeralCa::new("cli test CA").unwrap();
    let issued = ca.issue("localhost", Usage::Server).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = ca.write_files(dir.path(), &issued, None).unwrap();
    let chain = masif_pki::load_certs(&files.cert).unwrap();
    let key = masif_pki::load_key(&files.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(masif_pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let ui = Ui::sqlite(Options {
        tls: Some(std::sync::Arc::new(config)),
        ..Options::default()
    })
    .await;
    ui.report("web-1", vec![update("zeta", "1.0", "2.0")]).await;
    ui.store.flush().await;
    let ca_path = files.ca.to_str().unwrap();
    let out = ui.masif(&["agents", "--ca", ca_path]).await;
    assert!(out.ok().contains("web-1"), "{out:?}");

    // The system bundle does not know this CA.
    let out = ui.masif(&["agents"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("TLS with localhost:"), "{out:?}");
    assert!(
        out.stderr.contains("UnknownIssuer") || out.stderr.contains("unknown issuer"),
        "{out:?}"
    );
    // An unreadable bundle is a usage problem.
    let out = ui.masif(&["agents", "--ca", "/nonexistent/ca.pem"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--ca") && out.stderr.contains("/nonexistent/ca.pem"),
        "{out:?}"
    );
    ui.stop().await;
}

/// Text written by another program (the original master, a database tool) comes out of the
/// API as it is: the terminal gets it escaped. (Agent names with control characters never reach
/// the tables: the store skips such rows; the unit tests of `cli::agents` print one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_from_the_database_are_printed_escaped() {
    let ui = Ui::mariadb("cli_hostile", Options::default()).await;
    let now = unix_now();
    ui.sql(&format!(
        "INSERT INTO audit (at, user, action, detail) VALUES ({now}, \
         CONCAT('evil', CHAR(27), '[2J', CHAR(27), ']0;owned', CHAR(7), '-1'), 'approve', \
         CONCAT('line one', CHAR(13), CHAR(27), '[1A\\\\fake'))"
    ))
    .await;
    let out = ui.masif(&["audit"]).await;
    let text = out.ok();
    assert!(
        !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\r'),
        "{text}"
    );
    assert!(
        text.contains("evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}-1"),
        "{text}"
    );
    assert!(text.contains("line one\\u{d}\\u{1b}[1A\\\\fake"), "{text}");
    // --json keeps JSON's own escapes, which a terminal does not interpret either.
    let out = ui.masif(&["audit", "--json"]).await;
    assert!(!out.stdout.contains('\x1b'), "{out:?}");
    assert_eq!(
        out.json()["items"][0]["user"],
        "evil\u{1b}[2J\u{1b}]0;owned\u{7}-1"
    );
    ui.stop().await;
}

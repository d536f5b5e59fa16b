//! `masif check-fleet` against a real UI over MariaDB: OK, then WARNING and CRITICAL for
//! offline agents (last contact moved back in the database), failing agents (a failed run
//! recorded through the store) and old security updates; UNKNOWN when the API cannot answer.

use super::fixture::*;
use masif_proto::v2::Outcome;

/// Moves agent `name`'s last contact to `at`.
async fn set_last_seen(ui: &Ui, name: &str, at: i64) {
    ui.sql(&format!(
        "UPDATE agent_report r JOIN agent a ON a.id = r.agent \
         SET r.last_seen = {at} WHERE a.name = '{name}'"
    ))
    .await;
}

fn check_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["check-fleet"];
    args.extend(extra);
    args
}

/// The exit code and the one status line; asserts there is exactly one line.
async fn check(ui: &Ui, extra: &[&str]) -> (i32, String) {
    let out = ui.masif(&check_args(extra)).await;
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    (out.code, out.stdout.trim_end().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_failing_agents_warn_then_go_critical() {
    let ui = Ui::mariadb(
        "cli_fleet",
        Options {
            offline_after: 600,
            ..Options::default()
        },
    )
    .await;
    for name in ["web-1", "web-2", "db-1"] {
        ui.report(name, vec![update("zeta", "1.0", "2.0")]).await;
    }
    ui.store.flush().await;

    let (code, line) = check(&ui, &[]).await;
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("MASIF-FLEET OK - 0 offline of 3 agents, 0 failing, 0 security updates pending over 7 days | "),
        "{line}"
    );
    assert!(
        line.contains(" agents=3;;;0 offline=0;0;;0;3 failing=0;0;;0;3 security_overdue=0;0;;0"),
        "{line}"
    );

    // One agent silent for an hour: offline.
    set_last_seen(&ui, "db-1", unix_now() - 3600).await;
    let (code, line) = check(&ui, &["--offline-crit", "1"]).await;
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("MASIF-FLEET WARNING - 1 offline (db-1) of 3 agents"),
        "{line}"
    );
    assert!(line.contains(" offline=1;0;1;0;3 "), "{line}");
    let (code, _) = check(&ui, &["--offline-warn", "1"]).await;
    assert_eq!(code, 0);
    let json = ui.masif(&["check-fleet", "--json"]).await;
    assert_eq!(json.code, 1, "{json:?}");
    let json = json.json();
    assert_eq!(json["status"], "WARNING", "{json}");
    assert_eq!(json["exit_code"], 1, "{json}");
    assert_eq!(json["fleet"]["offline"], 1, "{json}");
    assert_eq!(
        json["fleet"]["offline_names"],
        serde_json::json!(["db-1"]),
        "{json}"
    );
    assert!(
        json["output"]
            .as_str()
            .unwrap()
            .starts_with("MASIF-FLEET WARNING - "),
        "{json}"
    );
    let (code, line) = check(&ui, &["--offline-crit", "0"]).await;
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("MASIF-FLEET CRITICAL - "), "{line}");

    // A failed run: failing.
    ui.record_runs(
        "web-2",
        &[run(
            "w2-1",
            update("zeta", "1.0", "2.0"),
            Outcome::Failed,
            unix_now() - 60,
        )],
    )
    .await;
    let (code, line) = check(&ui, &["--offline-warn", "5"]).await;
    assert_eq!(code, 1, "{line}");
    assert!(line.contains(", 1 failing (web-2), "), "{line}");
    let (code, line) = check(&ui, &["--offline-warn", "5", "--failing-crit", "0"]).await;
    assert_eq!(code, 2, "{line}");
    let (code, _) = check(&ui, &["--offline-warn", "5", "--failing-warn", "1"]).await;
    assert_eq!(code, 0);
    ui.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_updates_pending_too_long_alert() {
    let ui = Ui::mariadb("cli_fleet_sec", Options::default()).await;
    ui.report_security("sec-1", update("openssl", "3.0.1", "3.0.2"), vec![])
        .await;
    ui.report_security("sec-2", update("openssl", "3.0.1", "3.0.2"), vec![])
        .await;
    ui.store.flush().await;

    // Reported just now: not overdue.
    let (code, line) = check(&ui, &["--security-age", "1"]).await;
    assert_eq!(code, 0, "{line}");
    assert!(
        line.contains("0 security updates pending over 1 day |"),
        "{line}"
    );

    // Pending for ten days.
    age_pending(&ui, unix_now() - 10 * 86_400).await;
    let (code, line) = check(&ui, &["--security-age", "7"]).await;
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("1 security update pending over 7 days (update openssl 3.0.2) |"),
        "{line}"
    );
    assert!(line.ends_with(" security_overdue=1;0;;0"), "{line}");
    let (code, _) = check(&ui, &["--security-age", "7", "--security-crit", "0"]).await;
    assert_eq!(code, 2);
    let (code, _) = check(&ui, &["--security-age", "11"]).await;
    assert_eq!(code, 0);
    ui.stop().await;
}

/// More security updates than one page holds (500 packages): every page is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_security_updates_is_counted() {
    let ui = Ui::mariadb("cli_fleet_pages", Options::default()).await;
    let updates: Vec<_> = (0..503)
        .map(|i| update(&format!("lib{i:03}"), "1.0", "1.1"))
        .collect();
    ui.report_securities("big-1", updates, vec![update("zeta", "1.0", "2.0")])
        .await;
    age_pending(&ui, unix_now() - 30 * 86_400).await;
    let (code, line) = check(&ui, &["--security-crit", "502"]).await;
    assert_eq!(code, 2, "{line}");
    assert!(
        line.contains(" 503 security updates pending over 7 days ("),
        "{line}"
    );
    assert!(line.ends_with(" security_overdue=503;0;502;0"), "{line}");
    ui.stop().await;
}

/// Makes every pending task look first reported at `at`.
async fn age_pending(ui: &Ui, at: i64) {
    ui.sql(&format!("UPDATE task SET ctime = {at}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_cannot_answer_is_unknown() {
    let ui = Ui::sqlite(Options::default()).await;
    let token_file = ui.token_file.to_str().unwrap().to_owned();
    let wrong = ui.dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port())
    };
    for (args, needle) in [
        (
            vec![
                "check-fleet",
                "--url",
                &ui.url,
                "--token-file",
                wrong.to_str().unwrap(),
            ],
            "(HTTP 401 Unauthorized)",
        ),
        (
            vec!["check-fleet", "--url", &closed, "--token-file", &token_file],
            "cannot connect to",
        ),
        (
            vec!["check-fleet", "--token-file", &token_file],
            "no API URL",
        ),
        (vec!["check-fleet", "--offline-warn", "many"], "many"),
    ] {
        let out = masif(&args, &[]).await;
        assert_eq!(out.code, 3, "{args:?}: {out:?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains(needle), "{args:?}: {out:?}");
    }
    let out = masif(&["check-fleet", "--token-file", &token_file], &[]).await;
    assert!(
        out.stdout.starts_with("MASIF-FLEET UNKNOWN - no API URL"),
        "{out:?}"
    );
    let out = masif(
        &[
            "check-fleet",
            "--url",
            &closed,
            "--token-file",
            &token_file,
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.json()["status"], "UNKNOWN", "{out:?}");
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{out:?}"
    );
    ui.stop().await;
}

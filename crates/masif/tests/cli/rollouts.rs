//! Roll-out control from the command line, the real binary against a real UI: `tags` and
//! `tag set` (a part not given keeps its value), `--tag` on `agents`, `pending` and `approve`,
//! and `rollouts`, `rollout start`, `show` and `promote` through a halt; API errors exit 1 with
//! the API's message naming the field, usage errors exit 2.

use masif_proto::facts::Facts;
use masif_proto::v2::Outcome;
use masif_proto::{AgentName, Tag, Task, TaskSet};

use super::fixture::*;
use super::{line, words};

/// Reports `tasks` as `name` with v2 facts carrying `tags`.
async fn report_tagged(ui: &Ui, name: &str, tags: &[&str], tasks: Vec<Task>) {
    let facts = Facts {
        tags: tags.iter().map(|t| Tag::new(*t).unwrap()).collect(),
        ..Facts::default()
    };
    let set: TaskSet = tasks.into_iter().collect();
    ui.store
        .report_with_facts(&AgentName::new(name).unwrap(), &set, Some(&facts))
        .await
        .expect("report with facts");
}

/// web-1 (canary, web) and web-2 (web) await perl 5.2, db-1 (db) awaits zeta 2.0.
async fn tagged_scene(ui: &Ui) {
    let perl = || update("perl", "5.1", "5.2");
    report_tagged(ui, "web-1", &["canary", "web"], vec![perl()]).await;
    report_tagged(ui, "web-2", &["web"], vec![perl()]).await;
    report_tagged(ui, "db-1", &["db"], vec![update("zeta", "1.0", "2.0")]).await;
    ui.store.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_listed_set_part_by_part_and_filter() {
    let ui = Ui::sqlite(Options::default()).await;
    tagged_scene(&ui).await;

    let out = ui
        .masif(&[
            "tag",
            "set",
            "web",
            "--max-in-flight",
            "2",
            "--weekly",
            "mon-fri,02:00-04:00,Europe/Berlin",
        ])
        .await;
    assert_eq!(
        words(line(out.ok(), "web")),
        [
            "web",
            "2",
            "2",
            "0",
            "mon,tue,wed,thu,fri",
            "02:00-04:00",
            "Europe/Berlin"
        ]
    );
    // Windows only: the max in flight stays.
    let once = "2030-01-01T00:00:00Z/2030-01-02T00:00:00Z";
    let json = ui
        .masif(&["tag", "set", "web", "--once", once, "--json"])
        .await
        .json();
    assert_eq!(json["max_in_flight"], 2, "{json}");
    assert_eq!(
        json["windows"],
        serde_json::json!([{"from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"}])
    );
    // The limit only: the windows stay.
    let json = ui
        .masif(&["tag", "set", "web", "--max-in-flight", "none", "--json"])
        .await
        .json();
    assert_eq!(
        (
            json["max_in_flight"].clone(),
            json["windows"].as_array().unwrap().len()
        ),
        (serde_json::Value::Null, 1)
    );
    let text = ui.masif(&["tags"]).await;
    assert_eq!(
        words(line(text.ok(), "web")),
        [
            "web",
            "2",
            "-",
            "0",
            "2030-01-01T00:00:00Z",
            "–",
            "2030-01-02T00:00:00Z"
        ]
    );
    assert_eq!(
        words(line(text.ok(), "canary")),
        ["canary", "1", "-", "0", "any", "time"]
    );
    let json = ui
        .masif(&["tag", "set", "web", "--no-windows", "--json"])
        .await
        .json();
    assert_eq!(json["windows"], serde_json::json!([]));
    assert_eq!(
        ui.masif(&["tags", "--json"]).await.json()["tags"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The API names the field; nothing changed.
    let out = ui
        .masif(&["tag", "set", "web", "--weekly", "mon,02:00-04:00,Mars/Base"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("windows[0].time_zone: unknown time zone \"Mars/Base\""),
        "{out:?}"
    );
    let out = ui
        .masif(&["tag", "set", "web", "--weekly", "mon,04:00-02:00,UTC"])
        .await;
    assert!(
        out.stderr.contains("windows[0].end: must be after start"),
        "{out:?}"
    );
    for args in [
        vec!["tag", "set", "web", "--max-in-flight", "0"],
        vec![
            "tag",
            "set",
            "web",
            "--no-windows",
            "--weekly",
            "mon,02:00-04:00,UTC",
        ],
        vec!["tag", "set", "web", "--weekly", "fri2,02:00-04:00,UTC"],
        vec!["tag", "set", "web", "--once", "2030-01-01T00:00:00Z"],
        vec!["tag", "set", "<b>web</b>", "--no-windows"],
        vec!["agents", "--tag", "-web"],
        vec![
            "approve",
            "--tag",
            "web",
            "--agent",
            "web-1",
            "--task",
            "update:perl=5.2",
        ],
    ] {
        let out = ui.masif(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    assert_eq!(
        ui.masif(&["tags", "--json"]).await.json()["tags"][2]["windows"],
        serde_json::json!([])
    );

    let text = ui.masif(&["agents", "--tag", "web"]).await;
    assert_eq!(
        words(line(text.ok(), "web-1")).last(),
        Some(&"canary,web"),
        "{text:?}"
    );
    assert!(!text.ok().contains("db-1"), "{text:?}");
    let json = ui.masif(&["pending", "--tag", "db", "--json"]).await.json();
    assert_eq!(json["items"][0]["package"], "zeta", "{json}");
    assert_eq!(json["total"], 1);
    let out = ui
        .masif(&["approve", "--tag", "web", "--task", "update:perl=5.2"])
        .await;
    let approved = line(out.ok(), "for the agents tagged web: ");
    assert!(approved.ends_with(", 2 pending tasks approved"), "{out:?}");
    let out = ui
        .masif(&["approve", "--tag", "nobody", "--task", "update:perl=5.2"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no agent carries tag nobody"),
        "{out:?}"
    );
    ui.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_start_show_halt_and_promote() {
    let ui = Ui::mariadb("cli_rollouts", Options::default()).await;
    tagged_scene(&ui).await;

    let out = ui
        .masif(&[
            "rollout",
            "start",
            "--ring",
            "canary",
            "--ring",
            "web",
            "--ring",
            "db",
            "--task",
            "update:perl=5.2",
            "--max-failure-percent",
            "10",
        ])
        .await;
    let text = out.ok();
    assert_eq!(words(line(text, "state")), ["state", "running"], "{text}");
    assert_eq!(
        words(line(text, "current ring")),
        ["current", "ring", "canary", "(1", "of", "3)"]
    );
    assert_eq!(
        words(line(text, "progress")),
        ["progress", "1", "agent:", "0", "succeeded,", "0", "failed"]
    );
    assert_eq!(words(line(text, "soak")), ["soak", "by", "hand"]);
    assert!(text.contains("\nupdate perl 5.2  any\n"), "{text}");
    let id = words(line(text, "roll-out"))[1].to_owned();

    let list = ui.masif(&["rollouts"]).await;
    assert_eq!(
        words(line(list.ok(), &id))[..3],
        [id.as_str(), "running", "canary"]
    );
    assert!(list.ok().contains("page 1 of 1 (1 roll-out)"), "{list:?}");
    let json = ui.masif(&["rollouts", "--json"]).await.json();
    assert_eq!(
        json["items"][0]["created_by"],
        format!("token:{TOKEN_NAME}")
    );

    // web-1 fails in the canary ring: the master's pass halts the roll-out.
    let now = unix_now();
    ui.record_runs(
        "web-1",
        &[run(
            "c1",
            update("perl", "5.1", "5.2"),
            Outcome::Failed,
            now,
        )],
    )
    .await;
    ui.store.advance_rollouts(now + 1).await.unwrap();
    let text = ui.masif(&["rollout", "show", &id]).await;
    assert!(line(text.ok(), "halted").contains("web-1"), "{text:?}");
    let out = ui.masif(&["rollout", "promote", &id]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("promote with force"), "{out:?}");
    let json = ui
        .masif(&["rollout", "promote", &id, "--force", "--json"])
        .await
        .json();
    assert_eq!(
        (json["state"].as_str(), json["current_ring"].as_str()),
        (Some("running"), Some("web"))
    );
    let text = ui.masif(&["rollout", "promote", &id]).await;
    assert_eq!(words(line(text.ok(), "state")), ["state", "completed"]);
    let out = ui.masif(&["rollout", "promote", &id]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("completed"), "{out:?}");

    let out = ui.masif(&["rollout", "show", "999999"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no roll-out 999999"), "{out:?}");
    let out = ui
        .masif(&[
            "rollout",
            "start",
            "--ring",
            "nobody",
            "--task",
            "update:perl=5.2",
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no agent carries tag nobody"),
        "{out:?}"
    );
    for args in [
        vec!["rollout", "start", "--task", "update:perl=5.2"],
        vec!["rollout", "start", "--ring", "web"],
        vec![
            "rollout",
            "start",
            "--ring",
            "web",
            "--task",
            "update:perl=5.2",
            "--max-failure-percent",
            "101",
        ],
        vec![
            "rollout",
            "start",
            "--ring",
            "web",
            "--task",
            "update:perl=5.2",
            "--soak",
            "-1",
        ],
        vec!["rollout", "show", "x"],
        vec!["rollout", "promote"],
    ] {
        let out = ui.masif(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    ui.stop().await;
}

//! Roll-out control through the API over real HTTP: tag filters on agents and pending, agents'
//! tags and maintenance windows, approving for a tag, setting a tag's max in flight and
//! windows, staged roll-outs created, listed, halted and promoted (with force, 409 without);
//! malformed, oversized and hostile input refused naming the field with nothing written; and
//! the same on SQLite.

mod common;
#[path = "api_rollouts/errors.rs"]
mod errors;

use std::collections::BTreeSet;

use common::api::{get, post, send, serve, TOKEN};
use common::{run, unix_now, update, Fixture};
use masif_proto::facts::Facts;
use masif_proto::v2::Outcome;
use masif_proto::{AgentName, Tag, Task, TaskSet};
use masif_store::Store;
use serde_json::{json, Value};

/// Reports `tasks` as `name` with v2 facts carrying `tags`.
pub(crate) async fn report_tagged(store: &dyn Store, name: &str, tags: &[&str], tasks: Vec<Task>) {
    let facts = Facts {
        tags: tags.iter().map(|t| Tag::new(*t).unwrap()).collect(),
        ..Facts::default()
    };
    let set: TaskSet = tasks.into_iter().collect();
    store
        .report_with_facts(&AgentName::new(name).unwrap(), &set, Some(&facts))
        .await
        .expect("report with facts");
}

/// web-1 (canary, web) and web-2 (web) await perl 5.2, db-1 (db) awaits libc6; an untagged
/// agent awaits perl too.
pub(crate) async fn tagged_scene(store: &dyn Store) {
    let perl = || update("perl", "5.1", "5.2");
    report_tagged(store, "web-1", &["canary", "web"], vec![perl()]).await;
    report_tagged(store, "web-2", &["web"], vec![perl()]).await;
    report_tagged(store, "db-1", &["db"], vec![update("libc6", "1", "2")]).await;
    report_tagged(store, "plain", &[], vec![perl()]).await;
    store.flush().await;
}

/// `PUT path` with the test token and a JSON body.
pub(crate) async fn put(
    ui: &common::served::Served,
    path: &str,
    body: &Value,
) -> common::api::Answer {
    send(
        ui,
        "PUT",
        path,
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

pub(crate) fn names(items: &Value, field: &str) -> BTreeSet<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn perl_task() -> Value {
    json!({"package": "perl", "action": "update", "to_version": "5.2"})
}

pub(crate) fn weekly(zone: &str) -> Value {
    json!({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
           "end": "24:00", "time_zone": zone})
}

#[tokio::test]
async fn tags_filter_agents_and_pending_carry_windows_and_approve() {
    let fx = Fixture::new("api_tags").await;
    tagged_scene(&*fx.store).await;
    let (ui, _tokens) = serve(fx.store.clone()).await;

    let web = get(&ui, "/api/v1/agents?tag=web").await.json();
    assert_eq!(
        names(&web["items"], "name"),
        ["web-1", "web-2"].map(String::from).into()
    );
    let web1 = &web["items"][0];
    assert_eq!(web1["tags"], json!(["canary", "web"]));
    assert_eq!(
        (web1["window_open"].clone(), web1["next_window"].clone()),
        (json!(true), Value::Null)
    );
    let pending = get(&ui, "/api/v1/pending?tag=db").await.json();
    assert_eq!(
        names(&pending["items"], "package"),
        ["libc6".to_owned()].into()
    );

    // Settings: the answer is the tag as listed; windows show in the agents' items.
    let set = put(
        &ui,
        "/api/v1/tags/web",
        &json!({"max_in_flight": 2, "windows": [weekly("UTC")]}),
    )
    .await;
    assert_eq!(
        set.json(),
        json!({"tag": "web", "agents": 2, "max_in_flight": 2, "windows": [weekly("UTC")], "leases": 0}),
        "{}",
        set.body
    );
    let from = unix_now() + 7200;
    let once = json!({"from": masif_store::schedule::rfc3339(from),
                      "to": masif_store::schedule::rfc3339(from + 3600)});
    let set = put(
        &ui,
        "/api/v1/tags/db",
        &json!({"max_in_flight": null, "windows": [once]}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    // A tag nobody carries yet may be set.
    let later = put(
        &ui,
        "/api/v1/tags/later",
        &json!({"max_in_flight": 5, "windows": []}),
    )
    .await;
    assert_eq!(later.json()["agents"], 0, "{}", later.body);
    let tags = get(&ui, "/api/v1/tags").await.json();
    assert_eq!(
        names(&tags["tags"], "tag"),
        ["canary", "db", "later", "web"].map(String::from).into()
    );
    let agents = get(&ui, "/api/v1/agents").await.json();
    let item = |name: &str| {
        agents["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()
            .clone()
    };
    let web2 = item("web-2");
    assert_eq!(web2["window_open"], true);
    let now = unix_now();
    let recent: Vec<String> = (now - 30..=now)
        .map(masif_store::schedule::rfc3339)
        .collect();
    assert!(
        recent.contains(&web2["next_window"].as_str().unwrap().to_owned()),
        "{web2}"
    );
    let db1 = item("db-1");
    assert_eq!(db1["window_open"], false);
    assert_eq!(
        db1["next_window"],
        json!(masif_store::schedule::rfc3339(from))
    );
    assert_eq!(item("plain")["window_open"], true);
    assert_eq!(
        get(&ui, "/api/v1/agents/db-1").await.json()["agent"]["window_open"],
        false
    );

    // Approving for a tag: its agents now, audited under the token.
    let approved = post(
        &ui,
        "/api/v1/approvals",
        &json!({"tasks": [perl_task()], "tag": "web"}),
    )
    .await;
    let approved = approved.json();
    assert_eq!(approved["tag"], "web", "{approved}");
    assert_eq!(approved["pending_rows_approved"], 2, "{approved}");
    let agents: BTreeSet<String> = fx
        .approved()
        .await
        .iter()
        .map(|a| a.split(' ').next().unwrap().to_owned())
        .collect();
    assert!(
        agents.contains("web-1") && agents.contains("web-2") && !agents.contains("plain"),
        "{agents:?}"
    );
    let audit = get(&ui, "/api/v1/audit").await.json();
    assert_eq!(
        names(&audit["items"], "user"),
        ["token:ci".to_owned()].into()
    );
    ui.stop().await;
}

#[tokio::test]
async fn rollouts_start_list_halt_and_promote() {
    let fx = Fixture::new("api_rollouts").await;
    tagged_scene(&*fx.store).await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    let body = json!({"tasks": [perl_task()], "rings": ["canary", "web", "db"],
                      "soak_seconds": null, "max_failure_percent": 0});
    let created = post(&ui, "/api/v1/rollouts", &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let r = created.json();
    let id = r["id"].as_u64().unwrap();
    assert_eq!(
        (
            r["state"].clone(),
            r["current_ring"].clone(),
            r["current_ring_index"].clone()
        ),
        (json!("running"), json!("canary"), json!(0))
    );
    assert_eq!(
        r["ring_progress"],
        json!({"agents": 1, "succeeded": 0, "failed": 0})
    );
    assert_eq!(r["tasks"], json!([perl_task()]));
    assert_eq!(
        (r["created_by"].clone(), r["soak_seconds"].clone()),
        (json!("token:ci"), Value::Null)
    );
    assert_eq!(get(&ui, &format!("/api/v1/rollouts/{id}")).await.json(), r);
    let list = get(&ui, "/api/v1/rollouts?per_page=1").await.json();
    assert_eq!(
        (list["total"].clone(), list["items"][0]["id"].clone()),
        (json!(1), json!(id))
    );

    // web-1 fails in the canary ring: the master's pass halts the roll-out.
    let now = unix_now();
    fx.record_runs(
        "web-1",
        &[run(
            "c1",
            update("perl", "5.1", "5.2"),
            Outcome::Failed,
            now,
        )],
    )
    .await;
    fx.store.advance_rollouts(now + 1).await.unwrap();
    let halted = get(&ui, &format!("/api/v1/rollouts/{id}")).await.json();
    assert_eq!(halted["state"], "halted", "{halted}");
    assert!(
        halted["halted_reason"].as_str().unwrap().contains("web-1"),
        "{halted}"
    );
    let promote = format!("/api/v1/rollouts/{id}/promote");
    let before = fx.db.snapshot().await;
    let refused = post(&ui, &promote, &json!({})).await;
    assert!(
        refused.error(409).contains("promote with force"),
        "{}",
        refused.body
    );
    let refused = post(&ui, &promote, &json!({"force": false})).await;
    refused.error(409);
    assert_eq!(
        fx.db.snapshot().await,
        before,
        "a refused promotion changed the database"
    );
    let forced = post(&ui, &promote, &json!({"force": true})).await.json();
    assert_eq!(
        (forced["state"].clone(), forced["current_ring"].clone()),
        (json!("running"), json!("web"))
    );
    let last = post(&ui, &promote, &json!({})).await.json();
    assert_eq!(
        (last["state"].clone(), last["current_ring"].clone()),
        (json!("completed"), json!("db"))
    );
    assert!(post(&ui, &promote, &json!({}))
        .await
        .error(409)
        .contains("completed"));
    // The halt is the master's pass, audited as `rollout`; the rest the token's.
    let audit = get(&ui, "/api/v1/audit").await.json();
    assert_eq!(
        names(&audit["items"], "user"),
        ["rollout".to_owned(), "token:ci".to_owned()].into()
    );
    ui.stop().await;
}

#[tokio::test]
async fn tags_and_rollouts_work_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = masif_store::open(&masif_store::DbUrl::sqlite(dir.path().join("m.db")))
        .await
        .unwrap();
    tagged_scene(&*store).await;
    let (ui, _tokens) = serve(store.clone()).await;
    let set = put(
        &ui,
        "/api/v1/tags/web",
        &json!({"max_in_flight": 1, "windows": [weekly("Europe/Berlin")]}),
    )
    .await;
    assert_eq!(
        set.json()["windows"],
        json!([weekly("Europe/Berlin")]),
        "{}",
        set.body
    );
    let bad = put(
        &ui,
        "/api/v1/tags/web",
        &json!({"max_in_flight": 1, "windows": [weekly("Mars/Base")]}),
    )
    .await;
    assert_eq!(
        bad.json(),
        json!({"error": "windows[0].time_zone: unknown time zone \"Mars/Base\""})
    );
    assert_eq!(
        get(&ui, "/api/v1/tags").await.json()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tag"] == "web")
            .unwrap()["windows"],
        json!([weekly("Europe/Berlin")])
    );
    let r = post(&ui, "/api/v1/rollouts", &json!({"tasks": [perl_task()], "rings": ["canary", "web"], "soak_seconds": 60, "max_failure_percent": 50})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_u64().unwrap();
    let promoted = post(&ui, &format!("/api/v1/rollouts/{id}/promote"), &json!({}))
        .await
        .json();
    assert_eq!(promoted["state"], "completed", "{promoted}");
    assert_eq!(promoted["ring_progress"]["agents"], 2);
    assert_eq!(
        get(&ui, "/api/v1/agents?tag=canary").await.json()["total"],
        1
    );
    ui.stop().await;
}

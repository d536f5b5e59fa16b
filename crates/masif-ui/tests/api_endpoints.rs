//! What each API endpoint answers over real HTTP: the pending overview with its filters,
//! security facts, needs and paging; agents with counts, filters and runs; one agent with
//! facts, tasks and runs; approvals from a named version; and the same on SQLite.

mod common;

use common::api::{delete, get, post, serve};
use common::facts::{HOSTILE_OS, SECURITY_ORIGIN};
use common::{run, unix_now, update, Fixture, HOSTILE_AGENT, HOSTILE_PACKAGE};
use masif_proto::v2::Outcome;
use serde_json::{json, Value};

fn names(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pending_is_grouped_filtered_and_paged() {
    let fx = Fixture::new("api_pending").await;
    fx.seed().await;
    fx.seed_facts().await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    let all = get(&ui, "/api/v1/pending").await.json();
    assert_eq!(all["total"], 7, "{all}");
    assert_eq!(
        (all["page"].clone(), all["per_page"].clone()),
        (json!(1), json!(50))
    );
    assert_eq!(all["security"], json!({"updates": 1, "agents": 2}));
    assert_eq!(all["failing"], json!([]));
    let perl = &all["items"][0];
    assert_eq!(perl["package"], "perl");
    assert_eq!(perl["agents"], 4);
    assert_eq!(perl["held_on"], 1);
    let row = &perl["tasks"][0];
    assert_eq!(
        (
            row["action"].as_str(),
            row["to_version"].as_str(),
            row["agents"].as_u64()
        ),
        (Some("update"), Some("5.2"), Some(3))
    );
    let since = row["since"].as_i64().unwrap();
    assert!((unix_now() - 600..=unix_now()).contains(&since), "{since}");
    let openssl = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["package"] == "openssl")
        .unwrap();
    assert_eq!(openssl["tasks"][0]["security"], true);
    assert_eq!(
        openssl["tasks"][0]["needs"],
        json!([
            {"package": "libssl4", "action": "install", "to_version": "1.0"},
            {"package": "libssl4", "action": "configure", "to_version": "1.0"},
        ])
    );
    let hostile = get(
        &ui,
        &format!("/api/v1/pending?package={}", common::enc("<SCRIPT>")),
    )
    .await
    .json();
    assert_eq!(names(&hostile["items"], "package"), [HOSTILE_PACKAGE]);
    for (query, want) in [
        ("package=PER", vec!["perl"]),
        ("agent=db-1", vec!["newpkg", "oldpkg", "perl"]),
        ("action=install", vec!["libssl4", "newpkg"]),
        ("action=remove&agent=db", vec!["oldpkg"]),
        ("security=true", vec!["openssl"]),
        ("security=false&package=openssl", vec!["openssl"]),
    ] {
        let a = get(&ui, &format!("/api/v1/pending?{query}")).await.json();
        let mut got = names(&a["items"], "package");
        got.sort();
        assert_eq!(got, want, "{query}");
        assert_eq!(a["total"], want.len(), "{query}");
    }
    let page2 = get(&ui, "/api/v1/pending?per_page=2&page=2").await.json();
    assert_eq!(
        (
            page2["total"].clone(),
            page2["page"].clone(),
            page2["per_page"].clone()
        ),
        (json!(7), json!(2), json!(2))
    );
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    let beyond = get(&ui, "/api/v1/pending?per_page=500&page=3").await.json();
    assert_eq!(beyond["items"], json!([]));
    ui.stop().await;
}

#[tokio::test]
async fn agents_and_one_agent_with_facts_tasks_and_runs() {
    let fx = Fixture::new("api_agents").await;
    fx.seed().await;
    fx.seed_facts().await;
    let now = unix_now();
    fx.record_runs(
        "db-1",
        &[
            run(
                "r1",
                update("perl", "5.0", "5.3"),
                Outcome::Failed,
                now - 120,
            ),
            run(
                "r2",
                update("perl", "4.9", "5.0"),
                Outcome::Succeeded,
                now - 3600,
            ),
        ],
    )
    .await;
    fx.set_last_seen("web-2", now - 86_400).await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    let all = get(&ui, "/api/v1/agents").await.json();
    assert_eq!(
        all["counts"],
        json!({"agents": 6, "offline": 1, "failing": 1, "reboot_required": 1})
    );
    assert_eq!(all["total"], 6);
    let db1 = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "db-1")
        .unwrap()
        .clone();
    assert_eq!(db1["pending_tasks"], 3);
    assert_eq!(db1["pending_packages"], 3);
    assert_eq!(db1["failing_packages"], 1);
    assert_eq!(db1["offline"], false);
    assert_eq!(
        db1["last_run"],
        json!({"outcome": "failure", "started_at": now - 120})
    );
    for (query, want) in [
        ("name=WEB", vec!["web-1", "web-2"]),
        ("offline=true", vec!["web-2"]),
        ("failing=true", vec!["db-1"]),
        ("reboot_required=true", vec!["sec-1"]),
        ("offline=true&failing=true", vec![]),
        ("per_page=1&page=2", vec!["o'brien \"the\" <b>host</b>"]),
    ] {
        let a = get(&ui, &format!("/api/v1/agents?{query}")).await.json();
        assert_eq!(names(&a["items"], "name"), want, "{query}");
    }
    let sec1 = get(&ui, "/api/v1/agents/sec-1").await.json();
    assert_eq!(sec1["agent"]["reboot_required"], true);
    assert_eq!(sec1["facts"]["os"], HOSTILE_OS);
    assert_eq!(sec1["facts"]["held"], json!(["grub-pc"]));
    assert_eq!(
        sec1["facts"]["reboot_packages"],
        json!(["linux-image-amd64"])
    );
    let openssl = sec1["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["package"] == "openssl")
        .unwrap();
    assert_eq!(openssl["origin"], SECURITY_ORIGIN);
    assert_eq!(openssl["security"], true);
    assert_eq!(openssl["from_version"], "3.0.1");
    assert_eq!(openssl["needs"].as_array().unwrap().len(), 2);
    let db1 = get(&ui, "/api/v1/agents/db-1?per_page=1").await.json();
    assert_eq!(db1["facts"], Value::Null, "a v1 agent sends no facts");
    assert_eq!(db1["runs"]["total"], 2);
    let newest = &db1["runs"]["items"][0];
    assert_eq!(newest["id"], "r1");
    assert_eq!(newest["outcome"], "failure");
    assert_eq!(newest["exit_code"], 100);
    assert_eq!(newest["duration_ms"], 65_000);
    assert_eq!(
        newest["tasks"],
        json!([{"package": "perl", "action": "update", "from_version": "5.0", "to_version": "5.3"}])
    );
    let older = get(&ui, "/api/v1/agents/db-1?per_page=1&page=2")
        .await
        .json();
    assert_eq!(older["runs"]["items"][0]["outcome"], "success");
    let hostile = get(
        &ui,
        &format!("/api/v1/agents/{}", common::enc(HOSTILE_AGENT)),
    )
    .await;
    assert_eq!(
        hostile.json()["agent"]["name"],
        HOSTILE_AGENT,
        "{}",
        hostile.body
    );
    ui.stop().await;
}

#[tokio::test]
async fn approvals_name_agents_and_from_versions() {
    let fx = Fixture::new("api_approvals").await;
    fx.seed().await;
    let (ui, _tokens) = serve(fx.store.clone()).await;
    let body = json!({
        "tasks": [{"package": "perl", "action": "update", "to_version": "5.3", "from_version": "5.0"},
                  {"package": "oldpkg", "action": "remove", "to_version": null}],
        "agents": ["db-1"],
    });
    let a = post(&ui, "/api/v1/approvals", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({
            "approvals_written": 3, "pending_rows_approved": 2, "agents": ["db-1"],
            "tasks": [{"package": "perl", "action": "update", "to_version": "5.3", "from_version": "5.0"},
                      {"package": "oldpkg", "action": "remove", "to_version": null}],
        })
    );
    let list = get(&ui, "/api/v1/approvals").await.json();
    assert_eq!(list["total"], 3);
    let perl = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["package"] == "perl" && i["action"] == "update")
        .unwrap();
    assert_eq!(perl["agent"], "db-1");
    assert_eq!(perl["from_version"], "5.0");
    assert_eq!(perl["approved_by"], "token:ci");
    assert!(perl["approved_at"].as_i64().unwrap() >= unix_now() - 60);
    // From another version: nothing pending matches, the approval is still written.
    let other = post(&ui, "/api/v1/approvals", &json!({"tasks": [{"package": "perl", "action": "update", "to_version": "5.2", "from_version": "4.0"}]})).await;
    assert_eq!(other.json()["pending_rows_approved"], 0);
    let id = perl["id"].as_u64().unwrap();
    assert_eq!(
        delete(&ui, &format!("/api/v1/approvals/{id}")).await.json(),
        json!({"revoked": id})
    );
    assert_eq!(
        delete(&ui, &format!("/api/v1/approvals/{id}")).await.status,
        404
    );
    ui.stop().await;
}

#[tokio::test]
async fn the_api_works_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = masif_store::open(&masif_store::DbUrl::sqlite(dir.path().join("m.db")))
        .await
        .unwrap();
    let tasks = [update("perl", "5.1", "5.2")].into_iter().collect();
    store
        .report(&common::api::agent("web-1"), &tasks)
        .await
        .unwrap();
    store.flush().await;
    let (ui, _tokens) = serve(store.clone()).await;
    let pending = get(&ui, "/api/v1/pending").await.json();
    assert_eq!(pending["items"][0]["tasks"][0]["agents"], 1);
    let approve = |agents: Value| json!({"tasks": [{"package": "perl", "action": "update", "to_version": "5.2"}], "agents": agents});
    let unknown = post(
        &ui,
        "/api/v1/approvals",
        &approve(json!(["web-1", "ghost"])),
    )
    .await;
    assert!(unknown.error(400).contains("unknown agent ghost"));
    assert_eq!(
        get(&ui, "/api/v1/approvals").await.json()["total"],
        0,
        "nothing written"
    );
    assert_eq!(get(&ui, "/api/v1/audit").await.json()["total"], 0);
    let ok = post(&ui, "/api/v1/approvals", &approve(json!(["web-1"])))
        .await
        .json();
    assert_eq!(ok["pending_rows_approved"], 1);
    let id = get(&ui, "/api/v1/approvals").await.json()["items"][0]["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        delete(&ui, &format!("/api/v1/approvals/{id}")).await.status,
        200
    );
    let audit = get(&ui, "/api/v1/audit").await.json();
    assert_eq!(names(&audit["items"], "action"), ["revoke", "approve"]);
    assert_eq!(names(&audit["items"], "user"), ["token:ci", "token:ci"]);
    // Approving took the row out of the pending set; it comes back with the next report.
    let agent = get(&ui, "/api/v1/agents/web-1").await.json();
    assert_eq!(agent["agent"]["pending_tasks"], 0);
    assert_eq!(agent["agent"]["last_run"], Value::Null);
    ui.stop().await;
}

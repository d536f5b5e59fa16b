//! Protocol v2 over real mutual TLS against a real MariaDB: a held report is answered as soon
//! as an approval or a revocation touches it, whether written through another store (as the UI
//! or another master would) or straight into the tables (as the original UI does); at the end of
//! its wait and at shutdown; run results are stored once; malformed bodies are refused and
//! change nothing, hostile host facts too (400 naming the field); with v2 turned off both paths are 404 and v1 still works.

mod common;

use std::time::Duration;

use common::{Client, Master, Pki, Reply};
use masif_proto::v2::{ReportAnswer, REPORT_PATH, RUNS_PATH};
use masif_proto::{parse_task_list, Action, AgentName, PackageName, TaskSet, Version};
use masif_store::{ApprovalScope, Page, Store, TaskKey};

const TWO_TASKS: &str = r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"},{"package":"gamma","action":"install","to_version":"1.0"}]"#;
const ALPHA_UPDATE: &str =
    r#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"}]"#;
/// Longer than any test runs: a held report that is answered was answered because of an event.
const HELD: u64 = 3600;
/// How long a test waits for an answer before it fails instead of hanging.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

fn tasks(json: &str) -> TaskSet {
    parse_task_list(json.as_bytes()).unwrap()
}

fn report_body(tasks: &str, approved: &str, wait: u64) -> String {
    format!(r#"{{"tasks":{tasks},"approved":{approved},"wait":{wait}}}"#)
}

fn answer(reply: &Reply) -> TaskSet {
    assert_eq!(reply.status, 200, "{}", reply.body);
    ReportAnswer::parse(reply.body.as_bytes()).unwrap().approved
}

fn alpha_update() -> TaskKey {
    TaskKey {
        package: PackageName::new("alpha").unwrap(),
        action: Action::Update,
        to_version: Some(Version::new("2.0").unwrap()),
    }
}

/// Sends a held report on its own task; the handle yields the reply.
fn hold(mut client: Client, body: String) -> tokio::task::JoinHandle<Reply> {
    tokio::spawn(async move {
        client
            .request_within("POST", REPORT_PATH, body, ANSWER_WITHIN)
            .await
            .unwrap()
    })
}

/// Waits until the master has stored `agent`'s report (the held request is then parked).
async fn stored(store: &dyn Store, agent: &str, pending: usize) {
    let name = AgentName::new(agent).unwrap();
    for _ in 0..600 {
        if let Some(detail) = store.agent_detail(&name).await.unwrap() {
            if detail.pending.len() == pending {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{agent}'s report was never stored");
}

/// A second store on the master's database: nothing it does can reach the master's memory.
async fn other_store(master: &Master) -> std::sync::Arc<dyn Store> {
    masif_store::open(&master.db.url().parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_held_report_is_answered_when_an_approval_touches_it() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let ui = other_store(&master).await;
    let held = hold(
        master.agent_client(&pki, "a.example.com").await,
        report_body(TWO_TASKS, "[]", HELD),
    );
    stored(ui.as_ref(), "a.example.com", 2).await;
    // An approval for another package does not end the wait; this one does.
    ui.approve(&[alpha_update()], &ApprovalScope::AllAgents, "admin")
        .await
        .unwrap();
    let reply = tokio::time::timeout(ANSWER_WITHIN, held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer(&reply), tasks(ALPHA_UPDATE));
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_held_report_is_answered_when_its_approval_is_revoked() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let ui = other_store(&master).await;
    let mut client = master.agent_client(&pki, "b.example.com").await;
    let first = client
        .request("POST", REPORT_PATH, report_body(TWO_TASKS, "[]", 0))
        .await
        .unwrap();
    assert!(answer(&first).is_empty());
    ui.approve(&[alpha_update()], &ApprovalScope::AllAgents, "admin")
        .await
        .unwrap();
    // Knowing the approval, the agent waits; the revocation answers it.
    let held = hold(client, report_body(TWO_TASKS, ALPHA_UPDATE, HELD));
    stored(ui.as_ref(), "b.example.com", 1).await;
    // The approval is two rows (the update and its configure step): revoke both.
    for approval in ui.approvals(Page::default()).await.unwrap().rows {
        assert!(ui.revoke(approval.id, "admin").await.unwrap());
    }
    let reply = tokio::time::timeout(ANSWER_WITHIN, held)
        .await
        .unwrap()
        .unwrap();
    assert!(answer(&reply).is_empty(), "{}", reply.body);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn approvals_written_straight_into_the_tables_are_noticed() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let held = hold(
        master.agent_client(&pki, "c.example.com").await,
        report_body(TWO_TASKS, "[]", HELD),
    );
    stored(master.store.as_ref(), "c.example.com", 2).await;
    // The original UI's "approve selection": agent NULL, from_version NULL, no counter bumped.
    master
        .db
        .execute(
            "INSERT INTO task(agent, package, from_version, to_version, action, approved) \
             SELECT NULL, id, NULL, '1.0', 'install', 1 FROM package WHERE name = 'gamma'",
        )
        .await;
    let reply = tokio::time::timeout(ANSWER_WITHIN, held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        answer(&reply),
        tasks(r#"[{"package":"gamma","action":"install","to_version":"1.0"}]"#)
    );
    master.stop().await.unwrap();
}

#[tokio::test]
async fn a_report_is_answered_at_once_when_the_agent_knows_less_or_asks_no_wait() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let mut client = master.agent_client(&pki, "d.example.com").await;
    let reply = client
        .request("POST", REPORT_PATH, report_body(TWO_TASKS, "[]", 0))
        .await
        .unwrap();
    assert!(answer(&reply).is_empty());
    master
        .store
        .approve(&[alpha_update()], &ApprovalScope::AllAgents, "admin")
        .await
        .unwrap();
    let reply = client
        .request("POST", REPORT_PATH, report_body(TWO_TASKS, "[]", HELD))
        .await
        .unwrap();
    assert_eq!(
        answer(&reply),
        tasks(ALPHA_UPDATE),
        "differs: answered at once"
    );
    // A short wait ends with the same approvals.
    let reply = client
        .request("POST", REPORT_PATH, report_body(TWO_TASKS, ALPHA_UPDATE, 1))
        .await
        .unwrap();
    assert_eq!(answer(&reply), tasks(ALPHA_UPDATE));
    master.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_held_reports_at_once() {
    let pki = Pki::new();
    let master = Master::start(&pki, |settings| {
        settings.shutdown_grace = Duration::from_secs(600)
    })
    .await;
    let held = hold(
        master.agent_client(&pki, "e.example.com").await,
        report_body(TWO_TASKS, "[]", HELD),
    );
    stored(master.store.as_ref(), "e.example.com", 2).await;
    tokio::time::timeout(ANSWER_WITHIN, master.stop())
        .await
        .expect("the held report must not hold up the shutdown")
        .unwrap();
    let reply = held.await.unwrap();
    assert!(answer(&reply).is_empty());
}

fn run_json(id: &str, outcome: &str, output: &str) -> String {
    format!(
        r#"{{"id":"{id}","package":"zeta","started_at":1764900000,"duration_ms":1200,"exit_code":100,"outcome":"{outcome}","tasks":[{{"package":"zeta","action":"configure","to_version":"2.0"}}],"output":{}}}"#,
        serde_json::to_string(output).unwrap()
    )
}

#[tokio::test]
async fn runs_are_stored_once_however_often_they_are_sent() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let mut client = master.agent_client(&pki, "f.example.com").await;
    let body = format!(
        r#"{{"runs":[{}]}}"#,
        run_json("1764900000000-1", "failed", "<b>postinst failed</b>\n")
    );
    for expected in [r#"{"stored":1}"#, r#"{"stored":0}"#] {
        let reply = client
            .request("POST", RUNS_PATH, body.clone())
            .await
            .unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, expected));
    }
    let runs = master
        .store
        .agent_runs(&AgentName::new("f.example.com").unwrap(), Page::default())
        .await
        .unwrap();
    assert_eq!(runs.total, 1);
    assert_eq!(runs.rows[0].output.as_str(), "<b>postinst failed</b>\n");
    master.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_v2_bodies_are_refused_and_change_nothing() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let mut client = master.agent_client(&pki, "g.example.com").await;
    let reports = [
        "not json".to_owned(),
        "[]".to_owned(),
        r#"{"tasks":{}}"#.to_owned(),
        r#"{"tasks":[{"package":"a"}]}"#.to_owned(),
        report_body(
            TWO_TASKS,
            r#"[{"package":"zeta","action":"install","to_version":"1"}]"#,
            0,
        ),
        report_body(TWO_TASKS, "[]", 3601),
        r#"{"tasks":[],"wait":-1}"#.to_owned(),
        r#"{"tasks":[],"wait":"5"}"#.to_owned(),
    ];
    for body in reports {
        let reply = client
            .request("POST", REPORT_PATH, body.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(reply.body.len() < 200, "a short reason: {}", reply.body);
    }
    let too_long = "x".repeat(4097);
    let runs = [
        r#"{}"#.to_owned(),
        r#"{"runs":[]}"#.to_owned(),
        format!(r#"{{"runs":[{}]}}"#, run_json("a b", "failed", "")),
        format!(r#"{{"runs":[{}]}}"#, run_json("1", "exploded", "")),
        format!(r#"{{"runs":[{}]}}"#, run_json("1", "failed", &too_long)),
        format!(r#"{{"runs":[{}]}}"#, run_json("1", "failed", "bell \u{7}")),
        format!(
            r#"{{"runs":[{}]}}"#,
            run_json("1", "failed", "\u{202e}evil")
        ),
        format!(r#"{{"runs":[{0},{0}]}}"#, run_json("1", "failed", "")),
        format!(
            r#"{{"runs":[{}]}}"#,
            run_json("1", "failed", "").replace(r#""started_at":1764900000"#, r#""started_at":-5"#)
        ),
        format!(
            r#"{{"runs":[{}]}}"#,
            run_json("1", "failed", "").replace(
                r#"[{"package":"zeta","action":"configure","to_version":"2.0"}]"#,
                "[]"
            )
        ),
        format!(
            r#"{{"runs":[{}]}}"#,
            vec![run_json("1", "failed", ""); 51].join(",")
        ),
    ];
    for body in runs {
        let reply = client
            .request("POST", RUNS_PATH, body.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{body:.200}: {}", reply.body);
        assert!(reply.body.len() < 200, "a short reason: {}", reply.body);
    }
    let counts = master.store.counts().await.unwrap();
    assert_eq!((counts.agents, counts.tasks, counts.packages), (0, 0, 0));
    let wrong_method = client.request("GET", REPORT_PATH, "").await.unwrap();
    assert_eq!(wrong_method.status, 405);
    master.stop().await.unwrap();
}

/// A report of `TWO_TASKS` with `facts` (a JSON object).
fn report_with_facts(facts: &str) -> String {
    format!(r#"{{"tasks":{TWO_TASKS},"approved":[],"wait":0,"facts":{facts}}}"#)
}

#[tokio::test]
async fn hostile_facts_are_refused_naming_the_field_and_change_nothing() {
    let pki = Pki::new();
    let master = Master::start(&pki, |_| {}).await;
    let mut client = master.agent_client(&pki, "f.example.com").await;
    let good = r#"{"os":"Debian GNU/Linux 12 (bookworm)","kernel":"6.1.0-28-amd64","reboot_required":true,"reboot_packages":["linux-image-6.1.0-28-amd64"],"held":["delta"],"tasks":[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0","origin":"Debian-Security:12/stable-security","needs":[{"package":"gamma","action":"install","to_version":"1.0"}]}]}"#;
    let reply = client
        .request("POST", REPORT_PATH, report_with_facts(good))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let name = AgentName::new("f.example.com").unwrap();
    let before = master.store.agent_detail(&name).await.unwrap().unwrap();
    let facts = before.facts.clone().expect("facts stored");
    assert!(facts.reboot_required);
    assert_eq!(facts.held[0].as_str(), "delta");

    let long = "x".repeat(192);
    let many: Vec<String> = (0..2001).map(|i| format!(r#""p{i}""#)).collect();
    let hostile = [
        (format!(r#"{{"os":"{long}"}}"#), "facts.os"),
        (r#"{"os":"Debian\u200b 12"}"#.to_owned(), "facts.os"),
        (r#"{"kernel":"6.1\u001b[31m"}"#.to_owned(), "facts.kernel"),
        (r#"{"agent_version":"1\u202e0"}"#.to_owned(), "facts.agent_version"),
        (r#"{"reboot_required":"yes"}"#.to_owned(), "facts.reboot_required"),
        (format!(r#"{{"held":[{}]}}"#, many.join(",")), "facts.held"),
        (r#"{"reboot_packages":["ok","de\u00adlta"]}"#.to_owned(), "facts.reboot_packages[1]"),
        (
            r#"{"tasks":[{"package":"omega","action":"remove"}]}"#.to_owned(),
            "facts.tasks[0]",
        ),
        (
            r#"{"tasks":[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0","origin":"\ufeffDebian-Security"}]}"#.to_owned(),
            "facts.tasks[0].origin",
        ),
        (r#"["os"]"#.to_owned(), "facts"),
    ];
    for (facts, field) in hostile {
        let reply = client
            .request("POST", REPORT_PATH, report_with_facts(&facts))
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{facts:.200}: {}", reply.body);
        assert!(
            reply.body.starts_with(&format!("{field}: ")) && reply.body.len() < 200,
            "{field}: {}",
            reply.body
        );
    }
    let after = master.store.agent_detail(&name).await.unwrap().unwrap();
    assert_eq!(after.facts, before.facts, "refused facts change nothing");
    assert_eq!(after.pending, before.pending);
    assert_eq!(after.task_facts, before.task_facts);
    master.stop().await.unwrap();
}

#[tokio::test]
async fn with_v2_off_its_paths_are_not_found_and_v1_works() {
    let pki = Pki::new();
    let master = Master::start(&pki, |settings| settings.v2 = false).await;
    let mut client = master.agent_client(&pki, "h.example.com").await;
    for path in [REPORT_PATH, RUNS_PATH] {
        let reply = client
            .request("POST", path, report_body(TWO_TASKS, "[]", 0))
            .await
            .unwrap();
        assert_eq!(reply.status, 404, "{path}");
    }
    assert_eq!(client.report(TWO_TASKS).await.unwrap().status, 200);
    master.stop().await.unwrap();
}

//! Issue 17, show test: an approval made through one Galera node reaches agents served by
//! masters on other nodes. Held v2 reports (the long-poll) on masters using nodes 2 and 3 are
//! answered with an approval written through node 1; and at store level, a report through
//! node 3 made right after an approval through node 1 is answered with it, even when node 3
//! lags behind (`wsrep_sync_wait`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_agent::MasterClient;
use masif_proto::{Action, AgentName, PackageName, TaskSet, Version};
use masif_store::{ApprovalScope, Store, TaskKey};
use masif_testkit::galera::{Cluster, GaleraDatabase, Lagging};
use masif_testkit::pki::{EphemeralCa, Usage};
use masif_testkit::tasks::update;

const MASTER_CN: &str = "master.galera.test";

/// Longest a report is held: the approval must end the hold long before.
const WAIT: Duration = Duration::from_secs(120);

fn key(package: &str, to: &str) -> TaskKey {
    TaskKey {
        package: PackageName::new(package).unwrap(),
        action: Action::Update,
        to_version: Some(Version::new(to).unwrap()),
    }
}

async fn open(url: String) -> Arc<dyn Store> {
    masif_store::open(&url.parse().unwrap()).await.unwrap()
}

/// Waits until the store (read through its node) holds `tasks` as `agent`'s pending set.
async fn wait_pending(store: &Arc<dyn Store>, agent: &str, tasks: &TaskSet) {
    let name = AgentName::new(agent).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let detail = store.agent_detail(&name).await.unwrap();
        if detail.is_some_and(|d| d.pending.iter().cloned().collect::<TaskSet>() == *tasks) {
            return;
        }
        assert!(Instant::now() < deadline, "{agent}'s report never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_through_node_1_ends_reports_held_on_masters_using_nodes_2_and_3() {
    let cluster = Cluster::shared().await;
    let db = GaleraDatabase::create(&cluster, "approval_hold").await;
    // The UI's store on node 1 (it creates the schema); a master on node 2 and one on node 3.
    let ui = open(db.url(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = EphemeralCa::new("Masif Galera CA").unwrap();
    let cert = ca.issue(MASTER_CN, Usage::Server).unwrap();
    let files = ca
        .write_files(&dir.path().join("master"), &cert, None)
        .unwrap();
    let mut masters = Vec::new();
    for node in [2, 3] {
        let store = open(db.url(node)).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(masif_master::serve_with_listener(
            masif_master::ServeSettings::new(files.clone()),
            store,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        masters.push((node, addr, stop, served));
    }

    let tasks: TaskSet = [update("alpha", "1.0", "2.0")].into();
    let mut held = Vec::new();
    for (node, addr, _, _) in &masters {
        let agent = format!("held-on-node-{node}");
        let issued = ca.issue(&agent, Usage::Client).unwrap();
        let agent_files = ca
            .write_files(&dir.path().join(&agent), &issued, None)
            .unwrap();
        let client = MasterClient::new(&agent_files, &[addr.to_string()], MASTER_CN).unwrap();
        let reported = tasks.clone();
        let report = tokio::spawn(async move {
            client
                .report(&reported, &TaskSet::new(), WAIT, None)
                .await
                .unwrap()
        });
        // Its report is written (seen through node 1): the master holds the answer now.
        wait_pending(&ui, &agent, &tasks).await;
        held.push((agent, report));
    }
    assert!(
        held.iter().all(|(_, report)| !report.is_finished()),
        "the reports are held"
    );

    let approved = Instant::now();
    ui.approve(
        &[key("alpha", "2.0")],
        &ApprovalScope::AllAgents,
        "galera-admin",
    )
    .await
    .unwrap();
    for (agent, report) in held {
        let answer = report.await.unwrap();
        let took = approved.elapsed();
        assert_eq!(answer.approved, tasks, "{agent}");
        assert!(took < WAIT, "{agent}: answered only when the hold ended");
        eprintln!(
            "{agent}: the approval through node 1 arrived {} ms after it was made",
            took.as_millis()
        );
    }
    for (_, _, stop, served) in masters {
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_through_node_3_right_after_an_approval_through_node_1_is_answered_with_it() {
    let cluster = Cluster::shared().await;
    let db = GaleraDatabase::create(&cluster, "approval_read").await;
    let ui = open(db.url(1)).await;
    let master = open(db.url(3)).await;
    let agent = AgentName::new("reports-through-node-3").unwrap();
    const ROUNDS: usize = 20;
    let packages: Vec<String> = (0..=ROUNDS).map(|i| format!("pkg{i:02}")).collect();
    let tasks: TaskSet = packages.iter().map(|p| update(p, "1.0", "2.0")).collect();
    assert!(master.report(&agent, &tasks).await.unwrap().is_empty());

    // Each round approves one package through node 1 and reports at once through node 3.
    let mut missed = Vec::new();
    for (round, package) in packages[..ROUNDS].iter().enumerate() {
        ui.approve(
            &[key(package, "2.0")],
            &ApprovalScope::AllAgents,
            "galera-admin",
        )
        .await
        .unwrap();
        let approved = master.report(&agent, &tasks).await.unwrap();
        if !approved.contains(&update(package, "1.0", "2.0")) {
            missed.push(round);
        }
    }
    assert!(
        missed.is_empty(),
        "reports through node 3 missed the approval just made through node 1 in rounds \
         {missed:?} of {ROUNDS}"
    );

    // On this machine node 3 applies within a millisecond, so the rounds above would mostly
    // pass without the sync wait too. A node that lags shows it: held back, node 3 has not
    // applied the approval, and the report waits for it instead of answering from the past.
    let last = &packages[ROUNDS];
    let lagging = Lagging::start(&db, 3).await;
    ui.approve(
        &[key(last, "2.0")],
        &ApprovalScope::AllAgents,
        "galera-admin",
    )
    .await
    .unwrap();
    let reporter = master.clone();
    let (reported_agent, reported) = (agent.clone(), tasks.clone());
    let report =
        tokio::spawn(async move { reporter.report(&reported_agent, &reported).await.unwrap() });
    // A report that does not wait answers within milliseconds; give it ample time to.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if report.is_finished() {
        let approved = report.await.unwrap();
        panic!(
            "the report through the lagging node 3 answered without waiting: {} tasks approved, \
             {last} {}among them",
            approved.len(),
            if approved.contains(&update(last, "1.0", "2.0")) {
                ""
            } else {
                "not "
            }
        );
    }
    lagging.catch_up().await;
    let approved = report.await.unwrap();
    assert_eq!(approved, tasks, "every package approved, {last} included");
    master.flush().await;
    ui.flush().await;
}

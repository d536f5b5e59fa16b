//! Issue 17: a Galera node that leaves the primary component (cut off from the others:
//! `wsrep_ready` OFF, every statement 1047) while a master's and a UI's stores use it. Both
//! move to the next address of their `db.urls` and carry on: the approval is written, the
//! report is answered with it, retried rather than failed, and the node has it all once back.

use std::sync::Arc;

use masif_proto::{Action, AgentName, PackageName, TaskSet, Version};
use masif_store::{ApprovalScope, Store, StoreSettings, TaskKey};
use masif_testkit::galera::{Cluster, GaleraDatabase};
use masif_testkit::tasks::update;

async fn open_nodes(db: &GaleraDatabase, order: &[usize]) -> Arc<dyn Store> {
    let urls: Vec<masif_store::DbUrl> = db.urls(order).iter().map(|u| u.parse().unwrap()).collect();
    masif_store::open_any(&urls, &StoreSettings::default())
        .await
        .unwrap()
}

async fn pending(store: &Arc<dyn Store>, agent: &AgentName) -> TaskSet {
    let detail = store.agent_detail(agent).await.unwrap().expect("the agent");
    detail.pending.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_on_a_node_that_leaves_the_cluster_move_on_and_lose_nothing() {
    // It partitions a node: a cluster of its own.
    let cluster = Cluster::start_own().await;
    let db = GaleraDatabase::create(&cluster, "isolated").await;
    // Both use node 3 first.
    let master = open_nodes(&db, &[3, 1, 2]).await;
    let ui = open_nodes(&db, &[3, 2, 1]).await;
    let agent = AgentName::new("agent-on-node-3").unwrap();
    let before: TaskSet = [update("alpha", "1.0", "2.0"), update("beta", "1.0", "2.0")].into();
    assert!(master.report(&agent, &before).await.unwrap().is_empty());
    assert_eq!(pending(&ui, &agent).await, before);
    let retries = master.retries();

    cluster.isolate_node(3).await;
    // The UI's write and the master's report both meet 1047 on node 3 first.
    ui.approve(
        &[TaskKey {
            package: PackageName::new("alpha").unwrap(),
            action: Action::Update,
            to_version: Some(Version::new("2.0").unwrap()),
        }],
        &ApprovalScope::AllAgents,
        "galera-admin",
    )
    .await
    .unwrap();
    let after: TaskSet = [
        update("alpha", "1.0", "2.0"),
        update("beta", "1.0", "2.0"),
        update("gamma", "1.0", "3.0"),
    ]
    .into();
    let approved = master.report(&agent, &after).await.unwrap();
    assert_eq!(approved, [update("alpha", "1.0", "2.0")].into());
    assert!(
        master.retries() > retries,
        "the report met node 3's 1047 and was retried elsewhere ({} retries before, {} after)",
        retries,
        master.retries()
    );
    let expected: TaskSet = [update("beta", "1.0", "2.0"), update("gamma", "1.0", "3.0")].into();
    assert_eq!(pending(&ui, &agent).await, expected);
    master.flush().await;

    // Back in the cluster, node 3 has caught up with what was written without it.
    cluster.rejoin_node(3).await;
    let on_node_3 = open_nodes(&db, &[3]).await;
    assert_eq!(pending(&on_node_3, &agent).await, expected);
    ui.flush().await;
}

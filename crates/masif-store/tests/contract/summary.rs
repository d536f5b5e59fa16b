//! Contract tests of the pending summary (the overview's maintained counts): after random
//! reports, approvals (for all agents, some agents, one from-version), revocations and resets,
//! it equals a full recount from the task rows, at every step, on both back ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use masif_proto::{Action, AgentName, PackageName, Task, TaskSet, Version};
use masif_store::{ApprovalScope, ApprovalTask, Page, TaskKey};

use crate::contract_test;
use crate::report::{agent, install, task, update};
use crate::TestStore;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const AGENTS: u64 = 6;
const PACKAGES: u64 = 4;

/// A random task of a few packages, actions and versions, so that agents share keys, an agent
/// has two rows of one key (two from-versions) and several actions of one package.
fn random_task(rng: &mut Rng) -> Task {
    let package = format!("pkg{}", rng.below(PACKAGES));
    let v = |rng: &mut Rng| format!("{}.{}", rng.below(2) + 1, rng.below(2));
    match rng.below(5) {
        0 => task(&package, Action::Install, None, Some(&v(rng))),
        1 | 2 => task(&package, Action::Update, Some(&v(rng)), Some(&v(rng))),
        3 => task(&package, Action::Configure, None, Some(&v(rng))),
        _ => task(&package, Action::Remove, Some(&v(rng)), None),
    }
}

fn random_report(rng: &mut Rng) -> TaskSet {
    let n = rng.below(7);
    (0..n).map(|_| random_task(rng)).collect()
}

/// The summary's rows as sorted text rows.
async fn sorted(db: &TestStore, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = db.rows(sql).await;
    rows.sort();
    rows
}

const COUNTED: &str = "approved = 0 AND agent IS NOT NULL AND package IS NOT NULL \
                       AND action IS NOT NULL";

/// Asserts that both summary tables equal a recount from the task rows.
pub(crate) async fn assert_recount(db: &TestStore, step: &str) {
    // A key's count is the sum of its rows (on MySQL one per writer's slot).
    let rows = sorted(
        db,
        "SELECT package, action, to_version, SUM(agents) FROM pending_summary
          GROUP BY package, action, to_version HAVING SUM(agents) <> 0",
    )
    .await;
    let recount = sorted(
        db,
        &format!(
            "SELECT package, action, COALESCE(to_version, ''), COUNT(DISTINCT agent) FROM task
              WHERE {COUNTED} GROUP BY package, action, COALESCE(to_version, '')"
        ),
    )
    .await;
    assert_eq!(rows, recount, "row counts after {step}");
    let packages = sorted(
        db,
        "SELECT package, action, SUM(agents) FROM pending_package_summary
          GROUP BY package, action HAVING SUM(agents) <> 0",
    )
    .await;
    let mut recount = sorted(
        db,
        &format!(
            "SELECT package, action, COUNT(DISTINCT agent) FROM task
              WHERE {COUNTED} GROUP BY package, action"
        ),
    )
    .await;
    recount.extend(
        db.rows(&format!(
            "SELECT package, '', COUNT(DISTINCT agent) FROM task WHERE {COUNTED} GROUP BY package"
        ))
        .await,
    );
    recount.sort();
    assert_eq!(packages, recount, "package counts after {step}");
}

fn random_key(rng: &mut Rng, reported: &[Task]) -> Option<ApprovalTask> {
    if reported.is_empty() {
        return None;
    }
    let t = &reported[rng.below(reported.len() as u64) as usize];
    let key = TaskKey {
        package: PackageName::new(t.package().as_str()).unwrap(),
        action: t.action(),
        to_version: t.to_version().cloned(),
    };
    // Now and then only the rows of one from-version.
    let from_version = if rng.below(3) == 0 {
        t.from_version().map(|v| Version::new(v.as_str()).unwrap())
    } else {
        None
    };
    Some(ApprovalTask { key, from_version })
}

async fn summary_equals_a_recount_after_random_changes(db: TestStore) {
    // What the run went through, so that it cannot pass by doing nothing.
    let (mut most_keys, mut approved, mut revoked) = (0, 0, 0);
    for seed in [0x5eed_u64, 0xfeed_f00d] {
        let mut rng = Rng(seed);
        let mut reported: Vec<Task> = Vec::new();
        for step in 0..120 {
            let name = agent(&format!("agent{}", rng.below(AGENTS)));
            let what = match rng.below(20) {
                0..=10 => {
                    let tasks = random_report(&mut rng);
                    reported.extend(tasks.iter().cloned());
                    db.store.report(&name, &tasks).await.unwrap();
                    format!("report of {name}")
                }
                11..=15 => {
                    let Some(approval) = random_key(&mut rng, &reported) else {
                        continue;
                    };
                    let scope = match rng.below(3) {
                        0 => ApprovalScope::AllAgents,
                        _ => {
                            let others = agent(&format!("agent{}", rng.below(AGENTS)));
                            let names: Vec<AgentName> = vec![name.clone(), others];
                            ApprovalScope::Agents(names)
                        }
                    };
                    // Agents that never reported are unknown: such an approval is refused.
                    if let Ok(outcome) = db.store.approve_tasks(&[approval], &scope, "test").await {
                        approved += outcome.pending_rows_approved;
                    }
                    "an approval".to_owned()
                }
                16..=18 => {
                    let approvals = db.store.approvals(Page::default()).await.unwrap();
                    if let Some(a) = approvals
                        .rows
                        .get(rng.below(approvals.rows.len().max(1) as u64) as usize)
                    {
                        assert!(db.store.revoke(a.id, "test").await.unwrap());
                        revoked += 1;
                    }
                    "a revocation".to_owned()
                }
                _ => {
                    db.store.reset(rng.below(2) == 0, "test").await.unwrap();
                    "a reset".to_owned()
                }
            };
            db.store.flush().await;
            assert_recount(&db, &format!("step {step} ({what}, seed {seed:#x})")).await;
            most_keys = most_keys.max(db.int("SELECT COUNT(*) FROM pending_summary").await);
        }
    }
    assert!(
        most_keys >= 10 && approved >= 10 && revoked >= 5,
        "too little happened: {most_keys} keys at most, {approved} rows approved, {revoked} revoked"
    );
}
contract_test!(summary_equals_a_recount_after_random_changes);

/// Concurrent reports (batched into shared transactions on MySQL), an approval for every
/// agent and the summary check racing them leave the summary exact.
async fn reports_of_many_agents_at_once_stay_exact(db: TestStore) {
    let mut rng = Rng(42);
    let mut handles = Vec::new();
    for i in 0..24 {
        let store = db.store.clone();
        let tasks = random_report(&mut rng);
        handles.push(tokio::spawn(async move {
            store
                .report(&agent(&format!("agent{i}")), &tasks)
                .await
                .unwrap();
        }));
    }
    let approval = ApprovalTask::from(TaskKey {
        package: PackageName::new("pkg1").unwrap(),
        action: Action::Update,
        to_version: Some(Version::new("1.1").unwrap()),
    });
    let store = db.store.clone();
    handles.push(tokio::spawn(async move {
        store
            .approve_tasks(&[approval], &ApprovalScope::AllAgents, "test")
            .await
            .unwrap();
    }));
    // The check racing them finds nothing to correct: it counts what is committed while no
    // delta of the packages it counts can land.
    let writing = Arc::new(AtomicBool::new(true));
    let checker = {
        let (db, writing) = (db.clone(), writing.clone());
        tokio::spawn(async move {
            let (mut corrected, mut passes) = (0, 0);
            while writing.load(Ordering::SeqCst) || passes == 0 {
                corrected += check_everything(&db).await;
                passes += 1;
            }
            corrected
        })
    };
    for handle in handles {
        handle.await.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    assert_eq!(
        checker.await.unwrap(),
        0,
        "the check corrected a right summary"
    );
    db.store.flush().await;
    assert_recount(&db, "concurrent reports, an approval and the check").await;
}
contract_test!(reports_of_many_agents_at_once_stay_exact);

/// Runs the summary check over every package; returns how many counts it corrected.
async fn check_everything(db: &TestStore) -> u64 {
    let (mut after, mut corrected, mut steps) = (0, 0, 0);
    loop {
        let step = db.store.check_pending_summary(after).await.unwrap();
        corrected += step.corrected;
        steps += 1;
        match step.next {
            Some(next) => after = next,
            None => return corrected,
        }
        assert!(steps < 1000, "the check does not end");
    }
}

/// Pending rows written past the store, as the original master and UI do (the UI approves by
/// deleting pending rows, resets by deleting every task; the master inserts pending rows),
/// leave the summary wrong until the check corrects it; a check of a right summary corrects
/// nothing. Enough packages that the check takes several steps.
async fn the_check_corrects_writes_that_bypassed_the_store(db: TestStore) {
    for i in 0..150 {
        let tasks: TaskSet = [
            task(&format!("pkg{i:03}"), Action::Update, Some("1"), Some("2")),
            task(
                "common",
                Action::Update,
                Some("1"),
                Some(&format!("{}", i % 3)),
            ),
            task(
                "common",
                Action::Configure,
                None,
                Some(&format!("{}", i % 3)),
            ),
        ]
        .into_iter()
        .collect();
        db.store
            .report(&agent(&format!("agent{i}")), &tasks)
            .await
            .unwrap();
    }
    db.store.flush().await;
    assert_recount(&db, "the reports").await;
    assert_eq!(
        check_everything(&db).await,
        0,
        "a right summary was changed"
    );

    // The original UI's approval of "common" to version 1, for every agent.
    db.exec(
        "DELETE FROM task WHERE approved = 0 AND package = (SELECT id FROM package
          WHERE name = 'common') AND action = 'update' AND to_version = '1'",
    )
    .await;
    // The original master's pending row of a new package for one agent.
    db.exec("INSERT INTO package (name) VALUES ('newcomer')")
        .await;
    db.exec(
        "INSERT INTO task (agent, package, from_version, to_version, action, approved)
         SELECT a.id, p.id, NULL, '9', 'install', 0 FROM agent a, package p
          WHERE a.name = 'agent7' AND p.name = 'newcomer'",
    )
    .await;
    let stale = db
        .int(
            "SELECT SUM(agents) FROM pending_package_summary s JOIN package p ON p.id = s.package
               WHERE p.name = 'common' AND s.action = 'update'",
        )
        .await;
    assert_eq!(stale, 150, "the bypassing writes changed the summary");
    // update-to-1 (row, and the agents that lost their only update row of "common"), and the
    // newcomer's row, package and package-action counts.
    assert!(check_everything(&db).await >= 5);
    assert_recount(&db, "the check after bypassing writes").await;

    // The original UI's reset.
    db.exec("DELETE FROM task").await;
    assert!(check_everything(&db).await > 0);
    assert_recount(&db, "the check after a reset past the store").await;
    assert_eq!(
        db.int(
            "SELECT COUNT(*) FROM (SELECT package FROM pending_summary
              GROUP BY package, action, to_version HAVING SUM(agents) <> 0) k"
        )
        .await,
        0
    );
}
contract_test!(the_check_corrects_writes_that_bypassed_the_store);

/// Several stores on one database (masters and the UI) keep the summary exact together, each
/// agent's reports going through one store then another; on MySQL each store adds its deltas
/// to rows of its own slot, so that masters writing through different Galera nodes never
/// change the same row (certification would refuse all but one of them).
async fn stores_side_by_side_keep_the_summary_exact(db: TestStore) {
    let mut stores = vec![db.store.clone()];
    for _ in 0..3 {
        stores.push(
            db.open_another(&masif_store::StoreSettings::default())
                .await,
        );
    }
    for round in 0..3 {
        for i in 0..8 {
            let store = &stores[(i + round) % stores.len()];
            let tasks: TaskSet = if (i + round) % 3 == 0 {
                [install("common", "2")].into_iter().collect()
            } else {
                let extra = format!("{round}");
                [update("common", "1", "2"), install("extra", &extra)]
                    .into_iter()
                    .collect()
            };
            let name = agent(&format!("agent{i}"));
            store.report(&name, &tasks).await.unwrap();
            store.flush().await;
        }
        assert_recount(&db, &format!("round {round}")).await;
    }
    let common = ApprovalTask::from(TaskKey {
        package: PackageName::new("common").unwrap(),
        action: Action::Update,
        to_version: Some(Version::new("2").unwrap()),
    });
    let outcome = stores[1]
        .approve_tasks(&[common], &ApprovalScope::AllAgents, "test")
        .await
        .unwrap();
    assert!(outcome.pending_rows_approved > 0);
    assert_recount(&db, "an approval through another store").await;
    if db.backend == crate::Backend::Mysql {
        // Four stores drew their slots at random from 255: the chance that all drew one is
        // below one in 4 million.
        let slots = db
            .int("SELECT COUNT(DISTINCT slot) FROM pending_package_summary")
            .await;
        assert!(slots >= 2, "every store wrote to one slot");
    }
}
contract_test!(stores_side_by_side_keep_the_summary_exact);

//! Contract tests of run results, run against every back end: runs stored once however often
//! they are resent, the newest kept per agent, old ones purged, the latest outcome per package
//! (never overwritten by an older run), failing packages, agents filtered by last contact and
//! failing runs, output stored verbatim, unreadable rows, resets.

use masif_proto::v2::{Outcome, Run, RunId, RunOutput};
use masif_store::{AgentCounts, AgentFilter, Page, Retention, RunRecord, StoreError};

use crate::admin::{all, by_name};
use crate::contract_test;
use crate::report::{agent, now, q, set, update};
use crate::TestStore;

const DAY: i64 = 24 * 3600;

/// A run of `package` (updating it from 1 to 2) that started at `started_at`.
pub(crate) fn run(id: &str, package: &str, started_at: i64, outcome: Outcome) -> Run {
    Run {
        id: RunId::new(id).unwrap(),
        package: masif_proto::PackageName::new(package).unwrap(),
        started_at,
        duration_ms: 1500,
        exit_code: match outcome {
            Outcome::Succeeded => Some(0),
            Outcome::Failed => Some(100),
            Outcome::PlanChanged => None,
        },
        outcome,
        tasks: set([update(package, "1", "2")]),
        output: RunOutput::new(format!("run {id}\n")).unwrap(),
    }
}

/// Records `runs` of agent `name` with the default retention; returns how many were new.
pub(crate) async fn record(db: &TestStore, name: &str, runs: &[Run]) -> u64 {
    db.store
        .record_runs(&agent(name), runs, &Retention::default())
        .await
        .unwrap()
}

async fn runs_of(db: &TestStore, name: &str) -> Vec<RunRecord> {
    let listing = db.store.agent_runs(&agent(name), all()).await.unwrap();
    assert_eq!(listing.total as usize, listing.rows.len());
    listing.rows
}

async fn ids_of(db: &TestStore, name: &str) -> Vec<String> {
    let runs = runs_of(db, name).await;
    runs.iter().map(|r| r.run_id.as_str().to_owned()).collect()
}

/// The failing packages as (package, agents, last failed at).
async fn failing(db: &TestStore) -> Vec<(String, u64, i64)> {
    let packages = db.store.failing_packages().await.unwrap();
    packages
        .into_iter()
        .map(|f| (f.package.as_str().to_owned(), f.agents, f.last_failed_at))
        .collect()
}

async fn runs_are_stored_once_however_often_resent(db: TestStore) {
    let t = now();
    let first = [
        run("r1", "perl", t - 20, Outcome::Succeeded),
        run("r2", "bash", t - 10, Outcome::Failed),
    ];
    assert_eq!(record(&db, "web1", &first).await, 2);
    // The agent row is created as a report would create it.
    let detail = db
        .store
        .agent_detail(&agent("web1"))
        .await
        .unwrap()
        .unwrap();
    assert!((t - 5..=t + 1).contains(&detail.agent.ctime));
    assert_eq!(detail.agent.last_run, Some((Outcome::Failed, t - 10)));
    assert_eq!(detail.agent.failing_packages, 1);
    // Resent: nothing new; with one new run: only that one.
    assert_eq!(record(&db, "web1", &first).await, 0);
    let third = run("r3", "curl", t, Outcome::PlanChanged);
    assert_eq!(
        record(&db, "web1", &[first[1].clone(), third.clone()]).await,
        1
    );
    // A run id repeated within one batch is stored once too.
    let fourth = run("r4", "perl", t + 1, Outcome::Succeeded);
    assert_eq!(record(&db, "web1", &[fourth.clone(), fourth]).await, 1);
    assert_eq!(ids_of(&db, "web1").await, ["r4", "r3", "r2", "r1"]);
    // Every field comes back as recorded.
    let stored = &runs_of(&db, "web1").await[1];
    assert_eq!(stored.run_id, third.id);
    assert_eq!(stored.package, third.package);
    assert_eq!(stored.started_at, third.started_at);
    assert_eq!(stored.duration_ms, third.duration_ms);
    assert_eq!(stored.exit_code, None);
    assert_eq!(stored.outcome, Outcome::PlanChanged);
    assert_eq!(stored.tasks, third.tasks);
    assert_eq!(stored.output, third.output);
    // Run ids are per agent: another agent's r1 is a run of its own.
    assert_eq!(record(&db, "web2", &first[..1]).await, 1);
    assert_eq!(ids_of(&db, "web2").await, ["r1"]);
    assert_eq!(db.int("SELECT COUNT(*) FROM run").await, 5);
    // Nothing to record writes nothing, not even the agent.
    assert_eq!(record(&db, "idle", &[]).await, 0);
    assert!(db
        .store
        .agent_detail(&agent("idle"))
        .await
        .unwrap()
        .is_none());
}
contract_test!(runs_are_stored_once_however_often_resent);

/// The same batch sent by several requests at once (an agent retrying while its first request
/// is still in flight) is stored once, and the agent row once.
async fn concurrent_resends_store_each_run_once(db: TestStore) {
    let t = now();
    let batch: Vec<Run> = (0..5)
        .map(|i| run(&format!("r{i}"), "perl", t + i, Outcome::Failed))
        .collect();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (store, batch) = (db.store.clone(), batch.clone());
            tokio::spawn(async move {
                store
                    .record_runs(&agent("new"), &batch, &Retention::default())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut new = 0;
    for sender in senders {
        new += sender.await.unwrap();
    }
    assert_eq!(new, 5);
    assert_eq!(db.int("SELECT COUNT(*) FROM run").await, 5);
    assert_eq!(db.int("SELECT COUNT(*) FROM agent").await, 1);
    assert_eq!(failing(&db).await, [("perl".to_owned(), 1, t + 4)]);
}
contract_test!(concurrent_resends_store_each_run_once);

async fn runs_are_listed_newest_first_in_pages(db: TestStore) {
    let t = now();
    // One batch is stored oldest start first.
    let batch: Vec<Run> = (1..=5)
        .rev()
        .map(|i| run(&format!("r{i}"), "perl", t + i, Outcome::Succeeded))
        .collect();
    record(&db, "a", &batch).await;
    let page = db
        .store
        .agent_runs(
            &agent("a"),
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    let ids: Vec<&str> = page.rows.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["r4", "r3"]);
    // An unknown agent has no runs; names are exact.
    for nobody in ["nobody", "A"] {
        let none = db.store.agent_runs(&agent(nobody), all()).await.unwrap();
        assert_eq!((none.rows.len(), none.total), (0, 0), "{nobody}");
    }
}
contract_test!(runs_are_listed_newest_first_in_pages);

async fn retention_keeps_the_newest_runs_of_each_agent(db: TestStore) {
    let t = now();
    let keep_3 = Retention {
        keep_per_agent: 3,
        ..Retention::default()
    };
    let runs = |from: i64, to: i64| -> Vec<Run> {
        (from..=to)
            .map(|i| run(&format!("r{i}"), "perl", t + i, Outcome::Succeeded))
            .collect()
    };
    record(&db, "other", &runs(1, 2)).await;
    let new = db
        .store
        .record_runs(&agent("a"), &runs(1, 5), &keep_3)
        .await
        .unwrap();
    assert_eq!(new, 5, "runs deleted by the retention still count as new");
    assert_eq!(ids_of(&db, "a").await, ["r5", "r4", "r3"]);
    for batch in [runs(6, 6), runs(7, 7)] {
        db.store
            .record_runs(&agent("a"), &batch, &keep_3)
            .await
            .unwrap();
    }
    assert_eq!(ids_of(&db, "a").await, ["r7", "r6", "r5"]);
    assert_eq!(
        ids_of(&db, "other").await,
        ["r2", "r1"],
        "other agents keep theirs"
    );
    // The latest outcome outlives the runs the retention deleted.
    let failed = run("r0", "bash", t, Outcome::Failed);
    db.store
        .record_runs(&agent("a"), &[failed], &keep_3)
        .await
        .unwrap();
    db.store
        .record_runs(&agent("a"), &runs(8, 10), &keep_3)
        .await
        .unwrap();
    assert_eq!(ids_of(&db, "a").await, ["r10", "r9", "r8"]);
    assert_eq!(failing(&db).await, [("bash".to_owned(), 1, t)]);
}
contract_test!(retention_keeps_the_newest_runs_of_each_agent);

async fn old_runs_and_outcomes_are_purged(db: TestStore) {
    let t = now();
    record(
        &db,
        "a",
        &[
            run("ancient", "perl", t - 100 * DAY, Outcome::Failed),
            run("old", "bash", t - 91 * DAY, Outcome::Failed),
            run("recent", "curl", t - 10 * DAY, Outcome::Failed),
        ],
    )
    .await;
    record(
        &db,
        "b",
        &[run("b1", "perl", t - 95 * DAY, Outcome::Failed)],
    )
    .await;
    assert_eq!(failing(&db).await.len(), 3);
    let purged = db.store.purge_runs(&Retention::default()).await.unwrap();
    assert_eq!(purged, 3);
    assert_eq!(ids_of(&db, "a").await, ["recent"]);
    assert!(ids_of(&db, "b").await.is_empty());
    // Their latest outcomes went too: old failures no longer show.
    assert_eq!(failing(&db).await, [("curl".to_owned(), 1, t - 10 * DAY)]);
    assert_eq!(db.int("SELECT COUNT(*) FROM run_latest").await, 1);
    assert_eq!(db.store.purge_runs(&Retention::default()).await.unwrap(), 0);
}
contract_test!(old_runs_and_outcomes_are_purged);

/// A purge deletes in chunks of 10,000 rows and goes on until every old row is gone.
async fn purges_go_on_beyond_one_chunk(db: TestStore) {
    let t = now();
    record(&db, "a", &[run("keep", "perl", t, Outcome::Succeeded)]).await;
    let agent_id = db.int("SELECT id FROM agent WHERE name = 'a'").await;
    let digit = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
                 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let n = "(d1.d + 10 * d2.d + 100 * d3.d + 1000 * d4.d + 10000 * d5.d)";
    db.exec(&format!(
        "INSERT INTO run (agent, run_key, package, started_at, duration_ms, exit_code, outcome, \
                          tasks, output, received_at) \
         SELECT {agent_id}, {n}, 'perl', {old}, 1, 0, 'succeeded', '[]', '', {old} \
           FROM {digit} d1, {digit} d2, {digit} d3, {digit} d4, {digit} d5 \
          WHERE {n} < 10005",
        old = t - 200 * DAY
    ))
    .await;
    assert_eq!(db.int("SELECT COUNT(*) FROM run").await, 10_006);
    let purged = db.store.purge_runs(&Retention::default()).await.unwrap();
    assert_eq!(purged, 10_005);
    assert_eq!(ids_of(&db, "a").await, ["keep"]);
}
contract_test!(purges_go_on_beyond_one_chunk);

async fn an_older_resent_run_does_not_overwrite_a_newer_outcome(db: TestStore) {
    let t = now();
    record(&db, "a", &[run("new", "perl", t, Outcome::Succeeded)]).await;
    // The agent resends a run that started before the stored one: stored, but not the status.
    assert_eq!(
        record(&db, "a", &[run("old", "perl", t - 60, Outcome::Failed)]).await,
        1
    );
    assert!(failing(&db).await.is_empty());
    let summary = &db.store.agents(&by_name("a"), all()).await.unwrap().rows[0];
    assert_eq!(summary.failing_packages, 0);
    // A later run does replace it, also one that started at the same second.
    record(&db, "a", &[run("same", "perl", t, Outcome::Failed)]).await;
    assert_eq!(failing(&db).await, [("perl".to_owned(), 1, t)]);
    record(&db, "a", &[run("later", "perl", t + 1, Outcome::Succeeded)]).await;
    assert!(failing(&db).await.is_empty());
    // Within one batch, the latest start wins whatever the order of the runs.
    record(
        &db,
        "a",
        &[
            run("b2", "bash", t + 20, Outcome::Failed),
            run("b1", "bash", t + 10, Outcome::Succeeded),
        ],
    )
    .await;
    assert_eq!(failing(&db).await, [("bash".to_owned(), 1, t + 20)]);
}
contract_test!(an_older_resent_run_does_not_overwrite_a_newer_outcome);

async fn failing_packages_count_agents_and_clear_after_success(db: TestStore) {
    let t = now();
    record(&db, "a", &[run("1", "perl", t - 30, Outcome::Failed)]).await;
    record(&db, "b", &[run("1", "perl", t - 20, Outcome::Failed)]).await;
    record(
        &db,
        "c",
        &[
            run("1", "bash", t - 10, Outcome::Failed),
            run("2", "curl", t - 10, Outcome::Succeeded),
            run("3", "zsh", t - 10, Outcome::PlanChanged),
        ],
    )
    .await;
    assert_eq!(
        failing(&db).await,
        [
            ("perl".to_owned(), 2, t - 20),
            ("bash".to_owned(), 1, t - 10)
        ]
    );
    // A later success on a clears a's failure; a tie in agents is ordered by name.
    record(&db, "a", &[run("2", "perl", t, Outcome::Succeeded)]).await;
    assert_eq!(
        failing(&db).await,
        [
            ("bash".to_owned(), 1, t - 10),
            ("perl".to_owned(), 1, t - 20)
        ]
    );
    // A plan that changed before the run is not a failure either.
    record(&db, "b", &[run("2", "perl", t, Outcome::PlanChanged)]).await;
    assert_eq!(failing(&db).await, [("bash".to_owned(), 1, t - 10)]);
    // Agents deleted without their runs (the original UI's reset) do not count.
    db.exec("DELETE FROM agent WHERE name = 'c'").await;
    assert!(failing(&db).await.is_empty());
}
contract_test!(failing_packages_count_agents_and_clear_after_success);

async fn agents_are_filtered_by_last_contact_and_failing_runs(db: TestStore) {
    let t = now();
    for name in ["fresh", "stale", "broken"] {
        db.store
            .report(&agent(name), &set([update("perl", "1", "2")]))
            .await
            .unwrap();
    }
    db.store.flush().await;
    db.exec(&format!(
        "UPDATE agent_report SET last_seen = {} \
         WHERE agent = (SELECT id FROM agent WHERE name = 'stale')",
        t - 7200
    ))
    .await;
    // Only the original master has seen this one: its pending set's mtime is its last contact.
    db.exec("INSERT INTO agent (name, ctime, mtime) VALUES ('legacy', 5, 6)")
        .await;
    record(&db, "broken", &[run("1", "perl", t - 5, Outcome::Failed)]).await;
    record(
        &db,
        "stale",
        &[
            run("1", "perl", t - 7300, Outcome::Failed),
            run("2", "bash", t - 7300, Outcome::Failed),
        ],
    )
    .await;
    record(&db, "fresh", &[run("1", "perl", t - 5, Outcome::Succeeded)]).await;

    let names = |filter: AgentFilter| {
        let store = db.store.clone();
        async move {
            let listing = store.agents(&filter, all()).await.unwrap();
            let names: Vec<String> = listing.rows.iter().map(|a| a.name.to_string()).collect();
            assert_eq!(listing.total as usize, names.len());
            names
        }
    };
    let offline = Some(t - 3600);
    let filter = |name: Option<&str>, not_seen_since, failing| AgentFilter {
        name: name.map(str::to_owned),
        not_seen_since,
        failing,
        reboot_required: false,
        tag: None,
    };
    assert_eq!(
        names(filter(None, offline, false)).await,
        ["legacy", "stale"]
    );
    assert_eq!(names(filter(None, None, true)).await, ["broken", "stale"]);
    assert_eq!(names(filter(None, offline, true)).await, ["stale"]);
    assert_eq!(names(filter(Some("BRO"), None, true)).await, ["broken"]);
    assert!(names(filter(Some("fresh"), offline, false))
        .await
        .is_empty());
    assert_eq!(names(AgentFilter::default()).await.len(), 4);
    assert_eq!(
        db.store.agent_counts(t - 3600).await.unwrap(),
        AgentCounts {
            agents: 4,
            offline: 2,
            failing: 2,
            reboot_required: 0,
        }
    );

    let all_agents = db
        .store
        .agents(&AgentFilter::default(), all())
        .await
        .unwrap();
    let summary = |name: &str| {
        all_agents
            .rows
            .iter()
            .find(|a| a.name.as_str() == name)
            .unwrap()
            .clone()
    };
    assert_eq!(summary("stale").failing_packages, 2);
    assert_eq!(summary("stale").last_run, Some((Outcome::Failed, t - 7300)));
    assert_eq!(summary("fresh").last_run, Some((Outcome::Succeeded, t - 5)));
    assert_eq!(summary("fresh").failing_packages, 0);
    assert_eq!(summary("legacy").last_run, None);
    // The newest run is the one recorded last, whenever it started.
    record(
        &db,
        "fresh",
        &[run("0", "bash", t - 99, Outcome::PlanChanged)],
    )
    .await;
    let fresh = db
        .store
        .agent_detail(&agent("fresh"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.agent.last_run, Some((Outcome::PlanChanged, t - 99)));
    // Everyone is offline for a time after now; nobody before the epoch.
    let counts = db.store.agent_counts(t + 3600).await.unwrap();
    assert_eq!((counts.agents, counts.offline), (4, 4));
    assert_eq!(db.store.agent_counts(0).await.unwrap().offline, 0);
}
contract_test!(agents_are_filtered_by_last_contact_and_failing_runs);

async fn output_and_names_come_back_verbatim(db: TestStore) {
    let host = "o'brien \"quoted\" \\ host";
    let package = "пакет-😀";
    let mut hostile = run("x", package, now(), Outcome::Failed);
    hostile.output = RunOutput::new(
        "<script>alert('x')</script>\n\tÄÖÜ 日本語 😀 \\ ' \" ; DROP TABLE run; --\n",
    )
    .unwrap();
    // The longest output there is, cut from multibyte text at a character boundary.
    let mut longest = run("y", package, now() - 1, Outcome::Succeeded);
    longest.output = RunOutput::tail_of(&"ü😀".repeat(2000));
    assert!(longest.output.as_str().len() > masif_proto::v2::MAX_OUTPUT_BYTES - 4);
    record(&db, host, &[hostile.clone(), longest.clone()]).await;
    let stored = runs_of(&db, host).await;
    assert_eq!(stored[0].output, hostile.output);
    assert_eq!(stored[0].package.as_str(), package);
    assert_eq!(stored[0].tasks, hostile.tasks);
    assert_eq!(stored[1].output, longest.output);
    assert_eq!(
        failing(&db).await,
        [(package.to_owned(), 1, hostile.started_at)]
    );
}
contract_test!(output_and_names_come_back_verbatim);

async fn unreadable_stored_runs_are_errors(db: TestStore) {
    // Rows another tool wrote: one with a task list that is not one, one with an outcome
    // nobody knows.
    for (name, column, value) in [("a", "tasks", "not json"), ("b", "outcome", "exploded")] {
        record(&db, name, &[run("r1", "perl", now(), Outcome::Failed)]).await;
        let id = db
            .int(&format!(
                "SELECT r.id FROM run r JOIN agent a ON a.id = r.agent WHERE a.name = {}",
                q(name)
            ))
            .await;
        db.exec(&format!(
            "UPDATE run SET {column} = {} WHERE id = {id}",
            q(value)
        ))
        .await;
        match db.store.agent_runs(&agent(name), all()).await {
            Err(StoreError::Unreadable(what)) => {
                assert!(what.starts_with(&format!("run {id}: ")), "{what}")
            }
            other => panic!("{column}: {other:?}"),
        }
    }
    // The listing of agents still shows them, without a last run it cannot read.
    let b = db.store.agent_detail(&agent("b")).await.unwrap().unwrap();
    assert_eq!(b.agent.last_run, None);
}
contract_test!(unreadable_stored_runs_are_errors);

async fn resets_delete_runs_only_with_the_agents(db: TestStore) {
    let t = now();
    record(&db, "a", &[run("1", "perl", t, Outcome::Failed)]).await;
    db.store.reset(false, "carol").await.unwrap();
    assert_eq!(ids_of(&db, "a").await, ["1"]);
    assert_eq!(failing(&db).await.len(), 1);
    db.store.reset(true, "carol").await.unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM run").await, 0);
    assert_eq!(db.int("SELECT COUNT(*) FROM run_latest").await, 0);
    // The agent comes back with its next batch, and its run ids are new again.
    assert_eq!(
        record(&db, "a", &[run("1", "perl", t, Outcome::Failed)]).await,
        1
    );
}
contract_test!(resets_delete_runs_only_with_the_agents);

/// The offline agents by their report rows (MySQL: a range of `agent_report (last_seen)` once
/// every agent has one), also once the original master's agents or report rows of agents
/// deleted behind the store's back break that.
async fn offline_agents_are_exact_with_and_without_report_rows(db: TestStore) {
    let t = now();
    for name in ["a", "b", "c", "d"] {
        db.store
            .report(&agent(name), &set([update("perl", "1", "2")]))
            .await
            .unwrap();
    }
    db.store.flush().await;
    db.exec(&format!(
        "UPDATE agent_report SET last_seen = {} \
         WHERE agent IN (SELECT id FROM agent WHERE name IN ('b', 'c'))",
        t - 7200
    ))
    .await;
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let offline = |before: i64| {
        let store = db.store.clone();
        async move {
            let filter = AgentFilter {
                not_seen_since: Some(before),
                ..AgentFilter::default()
            };
            let listing = store.agents(&filter, all()).await.unwrap();
            let names: Vec<String> = listing.rows.iter().map(|a| a.name.to_string()).collect();
            let counts = store.agent_counts(before).await.unwrap();
            assert_eq!(listing.total, counts.offline);
            assert_eq!(listing.total as usize, names.len());
            (counts.agents, names)
        }
    };
    assert_eq!(offline(t - 3600).await, (4, names(&["b", "c"])));
    // An agent deleted behind the store's back (its tasks first) leaves its report row.
    db.exec("DELETE FROM task WHERE agent = (SELECT id FROM agent WHERE name = 'c')")
        .await;
    db.exec("DELETE FROM agent WHERE name = 'c'").await;
    assert_eq!(offline(t - 3600).await, (3, names(&["b"])));
    // As many agents as report rows again, one of them the original master's.
    db.exec("INSERT INTO agent (name, ctime, mtime) VALUES ('legacy', 5, 6)")
        .await;
    assert_eq!(offline(t - 3600).await, (4, names(&["b", "legacy"])));
    assert_eq!(offline(0).await, (4, names(&[])));
    assert_eq!(
        offline(t + 3600).await,
        (4, names(&["a", "b", "d", "legacy"]))
    );
}
contract_test!(offline_agents_are_exact_with_and_without_report_rows);

//! Contract test of the bound on reports waiting for the database (issue 14, item 1,
//! `db.max_queued_reports`): with writes held off, reports beyond the bound fail at once with
//! `Overloaded` and write nothing, the others go through once the writes may.

use std::time::Duration;

use masif_store::{StoreError, StoreSettings};
use tokio::task::JoinSet;

use crate::fixtures::*;
use crate::{contract_test, TestStore};

async fn a_full_report_queue_refuses_at_once(db: TestStore) {
    const LIMIT: usize = 3;
    const EXTRA: usize = 2;
    let store = db
        .open_another(&StoreSettings {
            max_queued_reports: LIMIT,
        })
        .await;
    let me = agent("host");
    store.report(&me, &set([install("a", "0")])).await.unwrap();
    let holder = db.hold_writes_of("host").await;
    let mut reports = JoinSet::new();
    for n in 1..=LIMIT + EXTRA {
        let (store, me) = (store.clone(), me.clone());
        let tasks = set([install("a", &n.to_string())]);
        reports.spawn(async move { (n, store.report(&me, &tasks).await) });
    }
    // The reports beyond the bound end first: the others wait for the held writes. (A guard
    // against hanging, not a timing assertion.)
    let mut refused = Vec::new();
    while refused.len() < EXTRA {
        let next = tokio::time::timeout(Duration::from_secs(60), reports.join_next())
            .await
            .expect("reports beyond the bound are refused at once");
        let (n, outcome) = next.expect("a report").unwrap();
        match outcome {
            Err(e @ StoreError::Overloaded { limit: LIMIT }) => {
                assert!(e.is_transient());
                refused.push(n);
            }
            other => panic!("report {n} ended while writes were held: {other:?}"),
        }
    }
    holder.release().await;
    let mut written = Vec::new();
    while let Some(next) = reports.join_next().await {
        let (n, outcome) = next.unwrap();
        outcome.unwrap_or_else(|e| panic!("report {n}: {e}"));
        written.push(n);
    }
    assert_eq!(written.len(), LIMIT);
    // The stored set is one a written report sent, never a refused one's.
    let rows = pending(&db, "host").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let version: usize = rows[0][3].as_deref().unwrap().parse().unwrap();
    assert!(written.contains(&version), "{version} of {written:?}");
    // The queue is free again.
    store.report(&me, &set([install("a", "9")])).await.unwrap();
}
contract_test!(a_full_report_queue_refuses_at_once);

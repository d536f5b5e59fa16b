//! Contract tests of the leases that bound how many of a tag's agents upgrade at once: all or
//! nothing over several tags, renewed, expiring by the caller's clock, released (waking held
//! reports), and never more than the max in flight for two stores racing on one database.

use std::sync::Arc;

use masif_proto::{Tag, TaskSet};
use masif_store::{LeaseOutcome, StoreError, TagSettings};

use crate::fixtures::*;
use crate::tags::{counters, dump_all, report_tagged, tag};
use crate::{contract_test, TestStore};

async fn leases_are_bounded_all_or_nothing_and_expire(db: TestStore) {
    for name in ["a", "b", "c"] {
        report_tagged(&db, name, &TaskSet::new(), &["web", "db"]).await;
    }
    for (name, k) in [("web", 1), ("db", 2)] {
        let settings = TagSettings {
            max_in_flight: Some(k),
            windows: Vec::new(),
        };
        db.store
            .set_tag(&tag(name), &settings, "alice")
            .await
            .unwrap();
    }
    let t0 = 1_000_000;
    let web = &[(tag("web"), 1)][..];
    let both = &[(tag("web"), 1), (tag("db"), 2)][..];
    let db_only = &[(tag("db"), 2)][..];
    let acquire = |name: &'static str, limits: &[(Tag, u32)], now: i64| {
        let (store, limits) = (db.store.clone(), limits.to_vec());
        async move {
            store
                .acquire_leases(&agent(name), &limits, now, 60)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        acquire("a", web, t0).await,
        LeaseOutcome::Granted {
            expires_at: t0 + 60
        }
    );
    assert_eq!(
        acquire("b", web, t0 + 1).await,
        LeaseOutcome::Busy {
            tag: tag("web"),
            free_at: t0 + 60
        }
    );
    // The holder renews by asking again.
    assert_eq!(
        acquire("a", web, t0 + 10).await,
        LeaseOutcome::Granted {
            expires_at: t0 + 70
        }
    );
    // All or nothing: db has room, web has not, so b takes neither.
    let before = dump_all(&db).await;
    assert_eq!(
        acquire("b", both, t0 + 11).await,
        LeaseOutcome::Busy {
            tag: tag("web"),
            free_at: t0 + 70
        }
    );
    assert_eq!(before, dump_all(&db).await);
    // db alone admits two.
    assert!(matches!(
        acquire("b", db_only, t0 + 12).await,
        LeaseOutcome::Granted { .. }
    ));
    assert!(matches!(
        acquire("c", db_only, t0 + 12).await,
        LeaseOutcome::Granted { .. }
    ));
    assert!(matches!(
        acquire("a", db_only, t0 + 12).await,
        LeaseOutcome::Busy { .. }
    ));
    // No limits: granted without a lease.
    assert_eq!(
        db.store
            .acquire_leases(&agent("a"), &[], t0, 30)
            .await
            .unwrap(),
        LeaseOutcome::Granted {
            expires_at: t0 + 30
        }
    );
    let err = db
        .store
        .acquire_leases(&agent("nobody"), web, t0, 30)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("nobody")),
        "{err}"
    );

    // Renewing pushes the live leases; expired ones are lost.
    assert_eq!(
        db.store
            .renew_leases(&agent("a"), t0 + 20, 60)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.int("SELECT expires_at FROM tag_lease WHERE tag = 'web'")
            .await,
        t0 + 80
    );
    assert_eq!(
        db.store
            .renew_leases(&agent("b"), t0 + 20, 60)
            .await
            .unwrap(),
        1
    );
    // a does not renew: past t0 + 80 its web lease is free for b.
    assert_eq!(
        acquire("b", web, t0 + 80).await,
        LeaseOutcome::Granted {
            expires_at: t0 + 140
        }
    );
    assert_eq!(
        db.store
            .renew_leases(&agent("a"), t0 + 80, 60)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        db.int("SELECT COUNT(*) FROM tag_lease WHERE tag = 'web'")
            .await,
        1,
        "the expired lease was deleted"
    );

    // Releasing deletes the agent's leases and wakes held reports.
    let before = counters(&db).await;
    assert_eq!(db.store.release_leases(&agent("b")).await.unwrap(), 2);
    let after = counters(&db).await;
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "leases given back move both counters: {before:?} -> {after:?}"
    );
    assert_eq!(db.store.release_leases(&agent("b")).await.unwrap(), 0);
    assert_eq!(counters(&db).await, after);
    assert_eq!(db.store.release_leases(&agent("nobody")).await.unwrap(), 0);
}
contract_test!(leases_are_bounded_all_or_nothing_and_expire);

/// Two stores on one database (two masters), eight agents taking the only lease of a tag over
/// and over: whoever holds it sees no other live lease before giving it back.
async fn racing_stores_never_exceed_the_max_in_flight(db: TestStore) {
    let other = db.open_another(&Default::default()).await;
    let names: Vec<String> = (0..8).map(|i| format!("host-{i}")).collect();
    for name in &names {
        report_tagged(&db, name, &TaskSet::new(), &["web", "all"]).await;
    }
    for (t, k) in [("web", 1), ("all", 8)] {
        let settings = TagSettings {
            max_in_flight: Some(k),
            windows: Vec::new(),
        };
        db.store.set_tag(&tag(t), &settings, "alice").await.unwrap();
    }
    let now = now();
    let db = Arc::new(db);
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        let (db, name) = (db.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let limits = [(tag("web"), 1), (tag("all"), 8)];
            let mut granted = 0;
            for _ in 0..12 {
                match store
                    .acquire_leases(&agent(&name), &limits, now, 3600)
                    .await
                    .unwrap()
                {
                    LeaseOutcome::Granted { .. } => {
                        granted += 1;
                        let live = db
                            .int(&format!(
                                "SELECT COUNT(*) FROM tag_lease WHERE tag = 'web' AND expires_at > {now}"
                            ))
                            .await;
                        assert_eq!(live, 1, "{name} holds the only lease of web");
                        assert_eq!(store.release_leases(&agent(&name)).await.unwrap(), 2);
                    }
                    LeaseOutcome::Busy { tag, .. } => assert_eq!(tag.as_str(), "web"),
                }
                tokio::task::yield_now().await;
            }
            granted
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    assert!(granted > 0);
    assert_eq!(db.int("SELECT COUNT(*) FROM tag_lease").await, 0);
}
contract_test!(racing_stores_never_exceed_the_max_in_flight);

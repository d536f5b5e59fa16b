//! `MasterClient` over real mutual TLS against a stand-in master: approvals come back,
//! the connection is kept alive, protocol v2 with held reports and run results, the fall-back
//! to v1 on a 404, deferred approvals and lease renewals, and a certificate not matching `master.cn`, a foreign CA and a master that
//! is down each give a clear error.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, StandInMaster, MASTER_CN};
use masif_agent::{LeaseAnswer, MasterClient, MasterError};
use masif_proto::facts::{FactText, Facts, Origin, TaskFacts};
use masif_proto::v2::{DeferReason, LeaseRequest, Outcome, ReportAnswer, Run, RunId, RunOutput};
use masif_proto::{Action, PackageName, Tag, Task, TaskSet, Version};
use masif_testkit::pki::{EphemeralCa, Usage};

fn update(package: &str) -> Task {
    Task::new(
        PackageName::new(package).unwrap(),
        Action::Update,
        Some(Version::new("1.0").unwrap()),
        Some(Version::new("2.0").unwrap()),
    )
    .unwrap()
}

#[tokio::test]
async fn reports_get_the_approved_subset_over_one_kept_alive_connection() {
    let master = StandInMaster::start().await;
    master.approve("alpha", &[Action::Update]);
    let files = master.agent_files("agent.agent-tests.invalid");
    let client = MasterClient::new(&files, &[master.addr.to_string()], MASTER_CN).unwrap();
    let tasks: TaskSet = [update("alpha"), update("beta")].into();
    for _ in 0..3 {
        let approved = client
            .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
            .await
            .unwrap()
            .approved;
        assert_eq!(approved, [update("alpha")].into());
    }
    assert_eq!(master.last_report.lock().unwrap().clone(), Some(tasks));
    // The first report asked for v2 and got a 404; the client speaks v1 from then on.
    assert_eq!(master.requests.load(Ordering::SeqCst), 4);
    assert!(!client.speaks_v2());
    assert_eq!(master.connections.load(Ordering::SeqCst), 1, "kept alive");
    assert!(client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap()
        .approved
        .is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_clear_error() {
    let master = StandInMaster::start().await;
    let files = master.agent_files("agent.agent-tests.invalid");
    let client =
        MasterClient::new(&files, &[master.addr.to_string()], "elsewhere.invalid").unwrap();
    let err = client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(matches!(err, MasterError::NameMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("not valid for \"elsewhere.invalid\" (master.cn)"),
        "{msg}"
    );
    assert_eq!(master.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_master_from_another_ca_is_refused() {
    let master = StandInMaster::start().await;
    let other = EphemeralCa::new("Other CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let issued = other.issue("agent", Usage::Client).unwrap();
    let files = other.write_files(dir.path(), &issued, None).unwrap();
    let client = MasterClient::new(&files, &[master.addr.to_string()], MASTER_CN).unwrap();
    let err = client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(matches!(err, MasterError::Handshake { .. }), "{err:?}");
    assert_eq!(master.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_master_that_is_down_is_a_connect_error_and_later_works() {
    let master = StandInMaster::start().await;
    let files = master.agent_files("agent.agent-tests.invalid");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let client = Arc::new(MasterClient::new(&files, &[addr.to_string()], MASTER_CN).unwrap());
    let err = client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(matches!(err, MasterError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn a_bad_master_cn_is_refused_up_front() {
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(masif_pki::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    );
    let err = MasterClient::with_config(config, &["127.0.0.1:1"], "not a name").unwrap_err();
    assert!(matches!(err, MasterError::BadName(_)), "{err:?}");
}

#[tokio::test]
async fn renewed_certificate_files_are_picked_up_without_a_restart() {
    let master = StandInMaster::start().await;
    let good = master.agent_files("agent.agent-tests.invalid");
    // Start with a certificate from a CA the master does not trust, in the same files.
    let other = EphemeralCa::new("Other CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let foreign = other
        .write_files(
            dir.path(),
            &other.issue("agent", Usage::Client).unwrap(),
            None,
        )
        .unwrap();
    let files = masif_pki::TlsFiles {
        cert: dir.path().join("live.crt"),
        key: dir.path().join("live.key"),
        ca: dir.path().join("live-ca.crt"),
        crl: None,
    };
    let install = |from: &masif_pki::TlsFiles| {
        for (src, dst) in [
            (&from.cert, &files.cert),
            (&from.key, &files.key),
            (&from.ca, &files.ca),
        ] {
            let tmp = dst.with_extension("new");
            std::fs::copy(src, &tmp).unwrap();
            std::fs::rename(tmp, dst).unwrap();
        }
    };
    install(&foreign);
    let client = MasterClient::new(&files, &[master.addr.to_string()], MASTER_CN).unwrap();
    assert!(client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .is_err());
    // "Renewal": new files appear; the next connection uses them.
    std::thread::sleep(std::time::Duration::from_millis(20));
    install(&good);
    client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap();
    // A broken renewal keeps the working configuration, also on new connections.
    master.close_connections.store(true, Ordering::SeqCst);
    client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap();
    std::fs::write(&files.key, "not a key").unwrap();
    let before = master.connections.load(Ordering::SeqCst);
    client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap();
    client
        .report(&TaskSet::new(), &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(master.connections.load(Ordering::SeqCst), before + 2);
}

#[tokio::test]
async fn a_misbehaving_master_gives_clear_errors_and_never_extra_approvals() {
    let master = StandInMaster::start().await;
    let files = master.agent_files("agent.agent-tests.invalid");
    let client = MasterClient::new(&files, &[master.addr.to_string()], MASTER_CN).unwrap();
    let tasks: TaskSet = [update("alpha")].into();
    let answer = |status: u16, body: &[u8]| {
        *master.canned.lock().unwrap() = Some((status, body.to_vec()));
    };

    answer(500, b"database down");
    let err = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(matches!(err, MasterError::Status { .. }), "{err:?}");
    assert!(
        err.to_string().contains("500") && err.to_string().contains("database down"),
        "{err}"
    );

    answer(400, "x".repeat(100_000).as_bytes());
    let err = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("400") && err.len() < 600,
        "{} bytes",
        err.len()
    );

    answer(200, b"{not json");
    let err = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(matches!(err, MasterError::Answer { .. }), "{err:?}");

    answer(200, br#"[{"package":"alpha","action":"update"}]"#);
    let err = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid answer") && err.contains("needs both"),
        "{err}"
    );

    let huge = format!(
        "[{}]",
        vec![r#"{"package":"p","action":"install","to_version":"1"}"#; 40_000].join(",")
    );
    answer(200, huge.as_bytes());
    let err = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("reading the answer"), "{err}");

    // Approvals of tasks that were never reported do not count.
    answer(
        200,
        br#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"},{"package":"rootkit","action":"install","to_version":"6.6.6"}]"#,
    );
    assert_eq!(
        client
            .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
            .await
            .unwrap()
            .approved,
        tasks
    );

    // And it recovers once the master behaves.
    *master.canned.lock().unwrap() = None;
    assert!(client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap()
        .approved
        .is_empty());
}

fn run(id: &str) -> Run {
    Run {
        id: RunId::new(id).unwrap(),
        package: PackageName::new("alpha").unwrap(),
        started_at: 1_764_092_100,
        duration_ms: 250,
        exit_code: None,
        outcome: Outcome::PlanChanged,
        tasks: [update("alpha")].into(),
        output: RunOutput::tail_of("apt's plan changed"),
    }
}

#[tokio::test]
async fn a_v1_master_is_spoken_to_with_v1_after_one_404() {
    let master = StandInMaster::start().await;
    master.approve("alpha", &[Action::Update]);
    let files = master.agent_files("agent.agent-tests.invalid");
    let client = MasterClient::new(&files, &[master.addr.to_string()], MASTER_CN).unwrap();
    let tasks: TaskSet = [update("alpha"), update("beta")].into();
    assert!(client.speaks_v2(), "v2 is tried first");
    let approved = client
        .report(&tasks, &TaskSet::new(), Duration::from_secs(300), None)
        .await
        .unwrap()
        .approved;
    assert_eq!(approved, [update("alpha")].into());
    assert!(!client.speaks_v2());
    assert_eq!(master.requests.load(Ordering::SeqCst), 2, "404, then v1");
    // Held reports are not asked of a v1 master: it answers at once.
    let approved = client
        .report(&tasks, &approved, Duration::from_secs(300), None)
        .await
        .unwrap()
        .approved;
    assert_eq!(approved, [update("alpha")].into());
    assert_eq!(master.requests.load(Ordering::SeqCst), 3);
    // Runs cannot be stored there; nothing is sent.
    let err = client.send_runs(&[run("1-1")]).await.unwrap_err();
    assert!(matches!(err, MasterError::V1Only { .. }), "{err:?}");
    assert_eq!(master.requests.load(Ordering::SeqCst), 3);
    assert_eq!(master.v2_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_v2_master_holds_the_report_until_an_approval_and_stores_runs() {
    let master = StandInMaster::start().await;
    master.v2.store(true, Ordering::SeqCst);
    master.approve("alpha", &[Action::Update]);
    let files = master.agent_files("agent.agent-tests.invalid");
    let client =
        Arc::new(MasterClient::new(&files, &[master.addr.to_string()], MASTER_CN).unwrap());
    let tasks: TaskSet = [update("alpha"), update("beta")].into();
    let facts = Facts {
        kernel: Some(FactText::new("6.1.0-28-amd64").unwrap()),
        reboot_required: true,
        held: [PackageName::new("delta").unwrap()].into(),
        tasks: [(
            update("alpha"),
            TaskFacts {
                origin: Some(Origin::new("Debian-Security:12/stable-security").unwrap()),
                needs: [update("beta")].into(),
            },
        )]
        .into(),
        tags: [Tag::new("web").unwrap(), Tag::new("prod-eu.1").unwrap()].into(),
        ..Facts::default()
    };
    let known = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, Some(&facts))
        .await
        .unwrap()
        .approved;
    assert_eq!(known, [update("alpha")].into());
    let sent = master.last_v2_report.lock().unwrap().clone().unwrap();
    assert_eq!(
        (sent.tasks.clone(), sent.approved.len(), sent.wait_secs),
        (tasks.clone(), 0, 0)
    );
    assert_eq!(
        sent.facts,
        Some(facts),
        "the facts as the master parsed them"
    );
    // Held while nothing changes; answered as soon as beta is approved.
    let held = {
        let (client, tasks, known) = (client.clone(), tasks.clone(), known.clone());
        tokio::spawn(async move {
            client
                .report(&tasks, &known, Duration::from_secs(3000), None)
                .await
        })
    };
    eventually("the report held", || async {
        master.held.load(Ordering::SeqCst) == 1
    })
    .await;
    let sent = master.last_v2_report.lock().unwrap().clone().unwrap();
    assert_eq!((sent.approved, sent.wait_secs), (known, 3000));
    master.approve("beta", &[Action::Update]);
    let approved = tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("answered on the approval")
        .unwrap()
        .unwrap();
    assert_eq!(approved.approved, tasks);
    client.send_runs(&[run("1-1"), run("1-2")]).await.unwrap();
    let stored: Vec<String> = master
        .runs
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.id.as_str().to_owned())
        .collect();
    assert_eq!(stored, ["1-1", "1-2"]);
    assert!(client.speaks_v2());
    assert_eq!(master.requests.load(Ordering::SeqCst), 3);
    assert_eq!(master.v2_requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        master.connections.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
}

#[tokio::test]
async fn deferred_approvals_and_leases_come_through_the_client() {
    let master = StandInMaster::start().await;
    master.v2.store(true, Ordering::SeqCst);
    master.approve("alpha", &[Action::Update]);
    master.defer(Some((DeferReason::Window, Some(1_796_763_600))));
    let files = master.agent_files("agent.agent-tests.invalid");
    let client =
        Arc::new(MasterClient::new(&files, &[master.addr.to_string()], MASTER_CN).unwrap());
    let tasks: TaskSet = [update("alpha"), update("beta")].into();
    let answer = client
        .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(
        answer,
        ReportAnswer {
            approved: TaskSet::new(),
            deferred: [update("alpha")].into(),
            reason: Some(DeferReason::Window),
            not_before: Some(1_796_763_600),
            lease_seconds: None,
        }
    );
    // Held while nothing may run; answered when the window opens, with a lease.
    *master.approvals.lease_seconds.lock().unwrap() = Some(30);
    let held = {
        let (client, tasks) = (client.clone(), tasks.clone());
        tokio::spawn(async move {
            client
                .report(&tasks, &TaskSet::new(), Duration::from_secs(3000), None)
                .await
        })
    };
    eventually("the report held", || async {
        master.held.load(Ordering::SeqCst) == 1
    })
    .await;
    master.defer(None);
    let answer = tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("answered when the window opened")
        .unwrap()
        .unwrap();
    assert_eq!(
        answer,
        ReportAnswer {
            lease_seconds: Some(30),
            ..ReportAnswer::approving([update("alpha")].into())
        }
    );
    // Renew and release over the same connection; a master without leases answers 404.
    let renewed = client.lease(LeaseRequest::Renew).await.unwrap();
    assert_eq!(renewed, LeaseAnswer::Done { leases: 1 });
    let released = client.lease(LeaseRequest::Release).await.unwrap();
    assert_eq!(released, LeaseAnswer::Done { leases: 1 });
    assert_eq!(
        master.leases(),
        [LeaseRequest::Renew, LeaseRequest::Release]
    );
    master.no_leases.store(true, Ordering::SeqCst);
    let none = client.lease(LeaseRequest::Renew).await.unwrap();
    assert_eq!(none, LeaseAnswer::NoLeases);
    assert!(
        client.speaks_v2(),
        "a 404 on leases is no reason to speak v1"
    );
    assert_eq!(master.connections.load(Ordering::SeqCst), 1, "kept alive");
}

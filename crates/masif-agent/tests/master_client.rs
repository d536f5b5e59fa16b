//! `MasterClient` over real mutual TLS against a stand-in master: approvals come back,
//! the connection is kept alive, a certificate not matching `master.cn`, a foreign CA and a
//! master that is down each give a clear error.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{StandInMaster, MASTER_CN};
use masif_agent::{MasterClient, MasterError};
use masif_proto::{Action, PackageName, Task, TaskSet, Version};
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
    let client = MasterClient::new(&files, &master.addr.to_string(), MASTER_CN).unwrap();
    let tasks: TaskSet = [update("alpha"), update("beta")].into();
    for _ in 0..3 {
        let approved = client.report(&tasks).await.unwrap();
        assert_eq!(approved, [update("alpha")].into());
    }
    assert_eq!(master.last_report.lock().unwrap().clone(), Some(tasks));
    assert_eq!(master.requests.load(Ordering::SeqCst), 3);
    assert_eq!(master.connections.load(Ordering::SeqCst), 1, "kept alive");
    assert!(client.report(&TaskSet::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_clear_error() {
    let master = StandInMaster::start().await;
    let files = master.agent_files("agent.agent-tests.invalid");
    let client = MasterClient::new(&files, &master.addr.to_string(), "elsewhere.invalid").unwrap();
    let err = client.report(&TaskSet::new()).await.unwrap_err();
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
    let client = MasterClient::new(&files, &master.addr.to_string(), MASTER_CN).unwrap();
    let err = client.report(&TaskSet::new()).await.unwrap_err();
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
    let client = Arc::new(MasterClient::new(&files, &addr.to_string(), MASTER_CN).unwrap());
    let err = client.report(&TaskSet::new()).await.unwrap_err();
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
    let err = MasterClient::with_config(config, "127.0.0.1:1", "not a name").unwrap_err();
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
    let client = MasterClient::new(&files, &master.addr.to_string(), MASTER_CN).unwrap();
    assert!(client.report(&TaskSet::new()).await.is_err());
    // "Renewal": new files appear; the next connection uses them.
    std::thread::sleep(std::time::Duration::from_millis(20));
    install(&good);
    client.report(&TaskSet::new()).await.unwrap();
    // A broken renewal keeps the working configuration, also on new connections.
    master.close_connections.store(true, Ordering::SeqCst);
    client.report(&TaskSet::new()).await.unwrap();
    std::fs::write(&files.key, "not a key").unwrap();
    let before = master.connections.load(Ordering::SeqCst);
    client.report(&TaskSet::new()).await.unwrap();
    client.report(&TaskSet::new()).await.unwrap();
    assert_eq!(master.connections.load(Ordering::SeqCst), before + 2);
}

#[tokio::test]
async fn a_misbehaving_master_gives_clear_errors_and_never_extra_approvals() {
    let master = StandInMaster::start().await;
    let files = master.agent_files("agent.agent-tests.invalid");
    let client = MasterClient::new(&files, &master.addr.to_string(), MASTER_CN).unwrap();
    let tasks: TaskSet = [update("alpha")].into();
    let answer = |status: u16, body: &[u8]| {
        *master.canned.lock().unwrap() = Some((status, body.to_vec()));
    };

    answer(500, b"database down");
    let err = client.report(&tasks).await.unwrap_err();
    assert!(matches!(err, MasterError::Status { .. }), "{err:?}");
    assert!(
        err.to_string().contains("500") && err.to_string().contains("database down"),
        "{err}"
    );

    answer(400, "x".repeat(100_000).as_bytes());
    let err = client.report(&tasks).await.unwrap_err().to_string();
    assert!(
        err.contains("400") && err.len() < 600,
        "{} bytes",
        err.len()
    );

    answer(200, b"{not json");
    let err = client.report(&tasks).await.unwrap_err();
    assert!(matches!(err, MasterError::Answer { .. }), "{err:?}");

    answer(200, br#"[{"package":"alpha","action":"update"}]"#);
    let err = client.report(&tasks).await.unwrap_err().to_string();
    assert!(
        err.contains("invalid answer") && err.contains("needs both"),
        "{err}"
    );

    let huge = format!(
        "[{}]",
        vec![r#"{"package":"p","action":"install","to_version":"1"}"#; 40_000].join(",")
    );
    answer(200, huge.as_bytes());
    let err = client.report(&tasks).await.unwrap_err().to_string();
    assert!(err.contains("reading the answer"), "{err}");

    // Approvals of tasks that were never reported do not count.
    answer(
        200,
        br#"[{"package":"alpha","action":"update","from_version":"1.0","to_version":"2.0"},{"package":"rootkit","action":"install","to_version":"6.6.6"}]"#,
    );
    assert_eq!(client.report(&tasks).await.unwrap(), tasks);

    // And it recovers once the master behaves.
    *master.canned.lock().unwrap() = None;
    assert!(client.report(&tasks).await.unwrap().is_empty());
}

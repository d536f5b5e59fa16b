//! The master on a real easy-rsa PKI found by discovery (`tls: { discover: easyrsa:DIR }`), and
//! an agent revoked with easy-rsa's revoke + gen-crl (what `masif-pki revoke` and
//! `masif-pki crl` run) refused by the running master without a restart.

mod common;

use std::time::Duration;

use common::{client_config, post_once, Master};
use masif_pki::easyrsa::{EasyRsa, Purpose};
use masif_pki::{Role, TlsSource};
use masif_testkit::db::TestDatabase;

fn source(dir: &std::path::Path, name: &str) -> TlsSource {
    serde_yaml::from_str(&format!(
        "{{ discover: \"easyrsa:{}\", name: {name} }}",
        dir.display()
    ))
    .unwrap()
}

#[tokio::test]
async fn revocation_by_easyrsa_reaches_the_running_master() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let easyrsa = EasyRsa::new(None, &pki_dir).unwrap();
    easyrsa.init("Masif Test CA").unwrap();
    easyrsa.issue(common::MASTER_CN, Purpose::Server).unwrap();
    easyrsa
        .issue("agent1.example.com", Purpose::Client)
        .unwrap();
    easyrsa
        .issue("agent2.example.com", Purpose::Client)
        .unwrap();

    let master_files = source(&pki_dir, common::MASTER_CN)
        .resolve(Role::Master)
        .unwrap();
    assert!(
        master_files.crl.is_some(),
        "easy-rsa's crl.pem is discovered"
    );
    let db = TestDatabase::create("easyrsa").await;
    let master = Master::start_on(&master_files, db, |s| {
        s.reload_interval = Duration::from_millis(200)
    })
    .await;
    // Loaded now: easy-rsa moves a revoked certificate out of issued/, the agent keeps its copy.
    let agent1 = client_config(
        &source(&pki_dir, "agent1.example.com")
            .resolve(Role::Agent)
            .unwrap(),
    );
    let agent2 = client_config(
        &source(&pki_dir, "agent2.example.com")
            .resolve(Role::Agent)
            .unwrap(),
    );
    assert_eq!(
        post_once(master.addr, agent1.clone(), "[]")
            .await
            .unwrap()
            .status,
        200
    );

    easyrsa.revoke("agent1.example.com").unwrap();
    easyrsa.crl().unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if post_once(master.addr, agent1.clone(), "[]").await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the revoked agent is still served");
    assert_eq!(
        post_once(master.addr, agent2, "[]").await.unwrap().status,
        200
    );
    master.stop().await.unwrap();
}

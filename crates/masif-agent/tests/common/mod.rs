//! Shared fixtures of the agent's own integration tests: a stand-in master over mutual TLS
//! ([`StandInMaster`]), an in-process one for the loop ([`FakeMaster`]) with the harness that
//! runs the loop against a sandbox, and waiting helpers. (The real master is exercised in
//! `crates/masif/tests/agent_e2e.rs`; the agent crate must not depend on it.)

#![allow(dead_code)]

mod approvals;
mod fake;
mod stand_in;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use masif_pki::TlsFiles;
use masif_testkit::sandbox::Sandbox;

#[allow(unused_imports)]
pub use fake::{start_loop, Event, FakeMaster, LoopConfig, Running};
pub use stand_in::{StandInMaster, MASTER_CN};

/// Polls `check` until it holds (a generous deadline against hangs under load, not a
/// timing assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1800 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// An agent configuration file for `tls` talking to `master`, planning in `sandbox`, with
/// all intervals `secs` seconds and the monitoring socket at `socket`.
pub fn agent_yaml(
    master: &StandInMaster,
    tls: &TlsFiles,
    sandbox: &Sandbox,
    socket: &Path,
    secs: u64,
) -> String {
    let env: Vec<String> = sandbox
        .apt_env()
        .iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    format!(
        "interval: {{ check: {secs}, report: {secs}, retry: {secs} }}\n\
         master: {{ host: \"{}\", cn: {MASTER_CN} }}\n\
         tls: {{ cert: {}, key: {}, ca: {} }}\n\
         apt: {{ env: {{ {} }} }}\n\
         socket: {}\n\
         log: {{ level: warning }}\n",
        master.addr,
        tls.cert.display(),
        tls.key.display(),
        tls.ca.display(),
        env.join(", "),
        socket.display()
    )
}

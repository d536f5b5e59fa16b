//! The Masif Upgrader agent: plans upgrades with APT, reports what needs approval to the
//! master, and upgrades only packages whose whole plan was approved. Also the local
//! monitoring socket and the master client (reused by load generators).
//!
//! Entry points: [`run`] (what `masif-agent --config FILE` does), [`Agent`] (the loop),
//! [`MasterClient`] (the wire protocol), [`apt::Apt`] (the package manager),
//! [`check::run`] (`masif-agent check`, the monitoring plugin; [`plugin`] its building blocks).

#![warn(unreachable_pub)]

mod agent;
pub mod api;
pub mod apt;
mod audit;
pub mod check;
pub mod cli;
mod config;
mod decide;
pub mod exec;
mod facts;
mod load;
mod master;
pub mod plugin;
mod pm;
mod status;

use std::future::Future;
use std::sync::Arc;

pub use agent::{Agent, Reporter, DEFAULT_MAX_FAILURES};
pub use audit::{Audit, Findings};
pub use config::{AgentConfig, ConfigError, Intervals, LogLevel};
pub use facts::{FactFiles, DEFAULT_REBOOT_REQUIRED_FILE};
pub use master::{LeaseAnswer, MasterClient, MasterError};
pub use pm::{Job, PackageManager, Plan, PlannedTask, RunOutcome};
pub use status::{Activity, LastRun, Monitor, StatusReport};

/// Errors of the agent library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error("{command}: {source}")]
    AptOutput {
        command: String,
        source: apt::ParseError,
    },
    #[error("{command} failed ({status}): {stderr}")]
    AptFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("refusing to pass package name {0:?} to the package manager")]
    BadPackageName(String),
    #[error("refusing to pass version {0:?} to the package manager")]
    BadVersion(String),
    #[error("cannot run the plan of {package}: {reason}")]
    BadJob { package: String, reason: String },
    #[error(transparent)]
    Master(#[from] MasterError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pki(#[from] masif_pki::PkiError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("giving up (retry interval is 0): {0}")]
    GaveUp(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything `masif-agent --config FILE` runs: the TLS files resolved, the master client,
/// APT, the monitoring socket and the loop, until `shutdown` resolves (a running apt/dpkg
/// call is finished first).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tls = config.tls.resolve(masif_pki::Role::Agent)?;
    // The checks of `masif-pki check --role agent`: a CRITICAL finding stops the agent with
    // the message the CLI would print; warnings (e.g. expiry within 30 days) are logged.
    for finding in masif_pki::startup_check(masif_pki::Role::Agent, &tls, None)? {
        tracing::warn!("tls: {finding}");
    }
    let master = MasterClient::new(&tls, &config.master_hosts, &config.master_cn)?;
    let apt = apt::Apt::new(config.apt.clone());
    let monitor = Monitor::new();
    let name = masif_pki::load_certs(&tls.cert)?
        .first()
        .map(masif_pki::common_name)
        .transpose()?
        .flatten();
    monitor.set_identity(name, master.host());
    let listener = api::bind(&config.socket)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api_monitor = monitor.clone();
    let mut api_stop = stop_rx.clone();
    let api = tokio::spawn(api::serve(listener, api_monitor, async move {
        let _ = api_stop.wait_for(|s| *s).await;
    }));
    tracing::info!(
        master = %master.host(),
        masters = %config.master_hosts.join(", "),
        cn = %config.master_cn,
        socket = %config.socket.display(),
        "agent starting"
    );
    let mut agent = Agent::new(Arc::new(apt), Arc::new(master), config.intervals, monitor)
        .with_max_failures(config.max_failures)
        .with_tags(config.tags.clone())
        .with_fact_files(FactFiles {
            reboot_required: config.reboot_required_file.clone(),
            ..FactFiles::default()
        });
    if !config.jitter {
        agent = agent.without_jitter();
    }
    let result = agent.run(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = api.await;
    result
}

/// Problems `--check-config` reports beyond the file itself: TLS files that cannot be
/// resolved or loaded, an apt-get that is not there. Empty when all is well.
pub fn check(config: &AgentConfig) -> Vec<String> {
    let mut problems = Vec::new();
    match config.tls.resolve(masif_pki::Role::Agent) {
        Ok(files) => {
            let checked = masif_pki::startup_check(masif_pki::Role::Agent, &files, None)
                .and_then(|_| masif_pki::client_config(&files));
            if let Err(e) = checked {
                problems.push(format!("tls: {e}"));
            }
        }
        Err(e) => problems.push(format!("tls: {e}")),
    }
    if !config.apt.path.is_file() {
        problems.push(format!(
            "apt.path: {} does not exist",
            config.apt.path.display()
        ));
    }
    problems
}

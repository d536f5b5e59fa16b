//! The demo's agents: one sandbox apt root per agent with fake packages awaiting upgrades, and
//! the agent loop on it with short intervals, talking to the master over mutual TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use masif_agent::{AgentConfig, Intervals, LogLevel};
use masif_pki::{TlsFiles, TlsSource};
use masif_testkit::sandbox::{standard_packages, FakePackage, Sandbox, Stage};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::pki::{DemoPki, MASTER_CN};
use super::{stopped, Components};

/// Agents show up within seconds and re-plan every few seconds; an approval reaches them at
/// once through the held report (protocol v2), so the report interval can be a minute, and a
/// failed run is retried after 5 s (given up after `max_failures` in a row).
const INTERVALS: Intervals = Intervals {
    check: Duration::from_secs(5),
    report: Duration::from_secs(60),
    retry: Duration::from_secs(5),
};

/// Sandboxes copied at once (each copy runs `apt-get update`).
const PARALLEL_COPIES: usize = 4;

/// Creates the sandboxes (fake packages installed at 1.0, the 2.0 versions published, so
/// updates, an install and a removal are pending) and starts one agent per certificate.
pub(super) async fn start(
    dir: &Path,
    pki: &DemoPki,
    master: SocketAddr,
    stop: &watch::Receiver<bool>,
    components: &mut Components,
) -> anyhow::Result<()> {
    tracing::info!(
        agents = pki.agents.len(),
        "building apt sandboxes with fake packages"
    );
    let sandboxes = build_sandboxes(dir, pki, stop).await?;
    if *stop.borrow() {
        anyhow::bail!("stopped while the sandboxes were built");
    }
    for (index, ((name, files), sandbox)) in pki.agents.iter().zip(sandboxes).enumerate() {
        let mut config = agent_config(files, &sandbox, master, dir.join("agents").join(name));
        config.tags = demo_tags(index);
        let name = name.clone();
        let agent_stop = stopped(stop.clone());
        components.spawn(async move {
            let result = masif_agent::run(config, agent_stop)
                .await
                .map_err(anyhow::Error::from);
            (format!("agent {name}"), result)
        });
    }
    Ok(())
}

/// `<dir>/agents/<agent name>/sandbox/` for every agent, in agent order: the first one built
/// (fake packages, repository, 1.0 installed, 2.0 published), the others copied from it a few
/// at a time. Once `stop` turns true no further copy starts; those in flight end first.
async fn build_sandboxes(
    dir: &Path,
    pki: &DemoPki,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<Sandbox>> {
    let place = |name: &str| dir.join("agents").join(name).join("sandbox");
    let Some(((first_name, _), others)) = pki.agents.split_first() else {
        return Ok(Vec::new());
    };
    let first_place = place(first_name);
    let first = build_one(&first_place)
        .await
        .with_context(|| format!("building the apt sandbox {}", first_place.display()))?;
    let slots = Arc::new(Semaphore::new(PARALLEL_COPIES));
    let mut copies = JoinSet::new();
    for (i, (name, _)) in others.iter().enumerate() {
        let (original, place, slots) = (first.clone(), place(name), slots.clone());
        let stop = stop.clone();
        copies.spawn(async move {
            let _slot = slots.acquire_owned().await;
            if *stop.borrow() {
                return (i, Err(anyhow::anyhow!("stopped before copying")));
            }
            let copied = original
                .clone_to(&place)
                .await
                .with_context(|| format!("copying the apt sandbox to {}", place.display()));
            (i, copied)
        });
    }
    // Every copy is awaited, even after a failure: none may still write when the caller
    // removes the directory.
    let mut copied: Vec<Option<Sandbox>> = vec![None; others.len()];
    let mut first_error = None;
    while let Some(joined) = copies.join_next().await {
        match joined {
            Ok((i, Ok(sandbox))) => copied[i] = Some(sandbox),
            Ok((_, Err(e))) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("a sandbox copy panicked: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // The first host needs a reboot, as after a kernel update (copies were made before).
    first
        .require_reboot(&[DEMO_REBOOT_PACKAGE])
        .context("writing the first sandbox's reboot-required file")?;
    Ok(std::iter::once(first)
        .chain(copied.into_iter().flatten())
        .collect())
}

/// The package the first demo host names in its reboot-required file.
const DEMO_REBOOT_PACKAGE: &str = "linux-image-6.1.0-99-amd64";

async fn build_one(place: &Path) -> anyhow::Result<Sandbox> {
    let sandbox = Sandbox::create(place, &demo_packages()).await?;
    sandbox.publish(Stage::V2).await?;
    sandbox.publish_security(Stage::V3).await?;
    Ok(sandbox)
}

/// The test suite's standard packages, and theta, whose 2.0 only the sandbox's security
/// archive publishes: the pending page marks its update as a security update.
fn demo_packages() -> Vec<FakePackage> {
    let mut packages = standard_packages();
    packages.push(FakePackage::new("theta", "1.0"));
    packages.push(FakePackage::new("theta", "2.0").v3());
    packages
}

/// The first host is the canary, the others production: a staged roll-out can be tried
/// (docs/rollouts.md), and every host carries `demo`.
fn demo_tags(index: usize) -> std::collections::BTreeSet<masif_proto::Tag> {
    let ring = if index == 0 { "canary" } else { "prod" };
    ["demo", ring]
        .into_iter()
        .map(|t| masif_proto::Tag::new(t).expect("a valid tag"))
        .collect()
}

fn agent_config(
    files: &TlsFiles,
    sandbox: &Sandbox,
    master: SocketAddr,
    home: PathBuf,
) -> AgentConfig {
    AgentConfig {
        intervals: INTERVALS,
        max_failures: masif_agent::DEFAULT_MAX_FAILURES,
        master_hosts: vec![master.to_string()],
        master_cn: MASTER_CN.to_owned(),
        tls: TlsSource::Files(files.clone()),
        apt: sandbox.apt_settings(),
        socket: home.join("agent.sock"),
        reboot_required_file: sandbox.reboot_required_file(),
        // A few agents on one machine: report at once instead of within the first minute.
        jitter: false,
        log_level: LogLevel::Info,
        tags: Default::default(),
    }
}

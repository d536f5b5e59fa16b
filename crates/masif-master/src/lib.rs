//! The master: the agent-facing HTTPS API (warp over tokio-rustls with mandatory client
//! certificates) in front of the shared database.

#![warn(unreachable_pub)]

mod api;
mod approvals;
pub mod cli;
mod clock;
mod config;
mod gate;
mod metrics;
mod revoked;
mod rollout;
mod server;
mod tls;

pub use api::PeerIdentity;
pub use clock::{Clock, ManualClock};
pub use config::{ConfigError, LogLevel, MasterConfig};
pub use rollout::{RolloutSettings, DEFAULT_LEASE_SECONDS};
pub use server::{
    serve_with_listener, serve_with_listeners, ServeSettings, DEEP_POLL_EVERY,
    DEFAULT_MAX_BODY_BYTES_IN_FLIGHT, DEFAULT_MAX_REPORTS_PER_MINUTE, DEFAULT_MAX_TASKS,
};
pub use tls::{Reload, ReloadingTls};

use std::future::Future;
use std::time::Duration;

use anyhow::Context;

/// Runs the master as configured until `shutdown` completes.
pub async fn run(
    config: MasterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let files = check_tls(&config)?;
    let store_settings = masif_store::StoreSettings {
        max_queued_reports: config.db.max_queued_reports,
    };
    let store = masif_store::open_any(&config.db.urls, &store_settings)
        .await
        .with_context(|| masif_store::describe_urls(&config.db.urls))?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|e| anyhow::anyhow!("api.listen {}: {e}", config.api.listen))?;
    let settings = ServeSettings {
        handshake_timeout: config.handshake_timeout(),
        idle_timeout: Duration::from_secs(config.api.idle_timeout),
        report_timeout: Duration::from_secs(config.api.report_timeout),
        reload_interval: Duration::from_secs(config.api.reload_interval),
        max_connections: config.api.max_connections,
        v2: config.api.v2,
        max_wait: Duration::from_secs(config.api.max_wait),
        retention: config.retention(),
        max_tasks: config.api.max_tasks,
        max_reports_per_minute: config.api.max_reports_per_minute,
        max_body_bytes_in_flight: config.api.max_body_bytes_in_flight,
        max_handshakes_per_source: config.api.max_handshakes_per_source,
        rollout: config.rollout,
        ..ServeSettings::new(files)
    };
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("metrics_listen {addr}: {e}"))?,
        ),
        None => None,
    };
    let purge = tokio::spawn(purge_runs(store.clone(), config.retention()));
    let orphans = tokio::spawn(remove_orphan_packages(store.clone()));
    let served = serve_with_listeners(settings, store.clone(), listener, metrics, shutdown).await;
    purge.abort();
    orphans.abort();
    store.flush().await;
    served
}

/// Deletes run results past their age, at start-up and then hourly (per-agent counts are
/// trimmed as runs arrive). Several masters doing it is harmless.
async fn purge_runs(
    store: std::sync::Arc<dyn masif_store::Store>,
    retention: masif_store::Retention,
) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        match store.purge_runs(&retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "old run results deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting old run results failed"),
        }
    }
}

/// Removes packages no task references any more every 20 to 30 s (jittered, so that several
/// masters spread out), so a package row a stolen agent certificate made up lives under a
/// minute. Safe beside reports, approvals and other masters (see the store).
async fn remove_orphan_packages(store: std::sync::Arc<dyn masif_store::Store>) {
    loop {
        let pause = Duration::from_millis(rand::random_range(20_000..=30_000));
        tokio::time::sleep(pause).await;
        match store.remove_orphan_packages().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "packages no task references deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting packages no task references failed"),
        }
    }
}

/// Resolves the TLS files and runs `masif-pki check`'s validation on them: warnings are logged,
/// a CRITICAL finding is an error carrying the message `masif-pki check` would print.
pub fn check_tls(config: &MasterConfig) -> anyhow::Result<masif_pki::TlsFiles> {
    let files = config.tls.resolve(masif_pki::Role::Master)?;
    let findings =
        masif_pki::startup_check(masif_pki::Role::Master, &files, config.api.name.as_deref())?;
    for finding in findings {
        tracing::warn!("tls: {finding}");
    }
    masif_pki::server_config(&files)?;
    Ok(files)
}

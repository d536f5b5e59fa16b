//! The master's server: the agent routes served by the daemons' serving core over mutual TLS,
//! with the verified client certificate's CN handed to the routes as [`PeerIdentity`].

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use masif_daemon::serve::{self, ClientCert, Limits, OpenConnections, RemoteAddr, Transport};
use masif_pki::TlsFiles;
use masif_store::{Retention, Store};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::api::{self, Admission, Api, PeerIdentity, V2};
use crate::approvals::ApprovalWatch;
use crate::clock::Clock;
use crate::gate::Gate;
use crate::metrics::{MasterExposition, ReportMetrics};
use crate::rollout::{advance_loop, RolloutSettings};
use crate::tls::ReloadingTls;

/// Everything the server needs besides the store and the listener.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub tls: TlsFiles,
    pub handshake_timeout: Duration,
    /// An idle kept-alive connection is closed after this long; also the longest wait for a
    /// request head.
    pub idle_timeout: Duration,
    /// Longest time one report may take, database retries included.
    pub report_timeout: Duration,
    /// How often the TLS files are checked for changes.
    pub reload_interval: Duration,
    pub max_connections: usize,
    /// How long open connections get to finish their requests at shutdown.
    pub shutdown_grace: Duration,
    /// Serve protocol v2 (long-poll, run results); off, `/v2/` paths are 404 as on the
    /// original master and agents fall back to v1.
    pub v2: bool,
    /// Longest a v2 report is held waiting for approvals.
    pub max_wait: Duration,
    /// How often held reports' approvals are checked for changes (a one-row read); every
    /// [`DEEP_POLL_EVERY`]th check also counts the approval rows.
    pub approval_poll: Duration,
    /// How many run results are kept.
    pub retention: Retention,
    /// Most tasks one report may hold (413 beyond).
    pub max_tasks: usize,
    /// Reports one agent may send per minute, in a burst or spread out (429 beyond).
    pub max_reports_per_minute: u32,
    /// Request body bytes held at once across all connections.
    pub max_body_bytes_in_flight: usize,
    /// TLS handshakes in progress from one source address.
    pub max_handshakes_per_source: usize,
    /// Where "now" comes from for maintenance windows, leases and roll-outs (tests set a
    /// manual clock).
    pub clock: Clock,
    /// Leases, slot polls and the roll-out loop.
    pub rollout: RolloutSettings,
}

/// Default of [`ServeSettings::max_tasks`]: a host rarely has a thousand upgrades; a stolen
/// certificate could otherwise insert some 20,000 package names with each report.
pub const DEFAULT_MAX_TASKS: usize = 5000;

/// Default of [`ServeSettings::max_reports_per_minute`]: an agent reports once per report
/// interval, and again after each approval or run.
pub const DEFAULT_MAX_REPORTS_PER_MINUTE: u32 = 60;

/// Default of [`ServeSettings::max_body_bytes_in_flight`]: 64 bodies of the largest size.
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 64 << 20;

/// Largest request head an agent may send: agents send a few short headers, and at this
/// size each kept-alive connection holds an 8 KiB read buffer instead of 16 KiB (about
/// 80 MiB less with 10,000 agents; see the serving core's `Limits::max_head_bytes`).
pub(crate) const MAX_HEAD_BYTES: usize = serve::MIN_HEAD_BYTES;

/// Every how many approval checks the approval rows are counted too (for approvals written
/// straight into the tables): every 4 s with the default `approval_poll`.
pub const DEEP_POLL_EVERY: u32 = 16;

impl ServeSettings {
    /// Defaults as in the configuration file.
    pub fn new(tls: TlsFiles) -> Self {
        Self {
            tls,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            report_timeout: Duration::from_secs(30),
            reload_interval: Duration::from_secs(10),
            max_connections: 20_000,
            shutdown_grace: Duration::from_secs(10),
            v2: true,
            max_wait: Duration::from_secs(900),
            approval_poll: Duration::from_millis(250),
            retention: Retention::default(),
            max_tasks: DEFAULT_MAX_TASKS,
            max_reports_per_minute: DEFAULT_MAX_REPORTS_PER_MINUTE,
            max_body_bytes_in_flight: DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
            max_handshakes_per_source: masif_daemon::serve::DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            clock: Clock::System,
            rollout: RolloutSettings::default(),
        }
    }

    /// The serving core's limits: the master's settings, the core's default for the rest.
    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            header_timeout: self.idle_timeout,
            idle_timeout: self.idle_timeout,
            // The routes bound body and report together by `report_timeout` and answer 408
            // or 503; the core's own bound on the body is a backstop behind it.
            body_timeout: self.report_timeout + Duration::from_secs(5),
            shutdown_grace: self.shutdown_grace,
            max_handshakes_per_source: self.max_handshakes_per_source,
            max_head_bytes: MAX_HEAD_BYTES,
        }
    }
}

/// Serves agents on `listener` until `shutdown` completes, then lets open requests finish
/// (up to `shutdown_grace`). Fails at once if the TLS files cannot be used.
pub async fn serve_with_listener(
    settings: ServeSettings,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_listeners(settings, store, listener, None, shutdown).await
}

/// [`serve_with_listener`], and with `metrics` the Prometheus metrics on that listener
/// (plain HTTP, `GET /metrics`) until the same shutdown.
pub async fn serve_with_listeners(
    settings: ServeSettings,
    store: Arc<dyn Store>,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = Arc::new(ReloadingTls::load(settings.tls.clone())?);
    let watcher = tokio::spawn(tls.clone().watch(settings.reload_interval));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let metrics_closed = closed.clone();
    let v2 = settings.v2.then(|| V2 {
        approvals: ApprovalWatch::start(store.clone(), settings.approval_poll, DEEP_POLL_EVERY),
        max_wait: settings.max_wait,
        retention: settings.retention,
        closing: closed,
        slot_poll: settings.rollout.slot_poll,
    });
    let report_metrics = Arc::new(ReportMetrics::new());
    let connections = OpenConnections::default();
    let metrics = metrics.map(|listener| {
        let exposition = Arc::new(MasterExposition::new(
            &report_metrics,
            connections.clone(),
            store.clone(),
            tls.clone(),
        ));
        let mut closed = metrics_closed;
        tokio::spawn(masif_daemon::metrics::serve(
            listener,
            exposition,
            async move {
                let _ = closed.wait_for(|closed| *closed).await;
            },
        ))
    });
    let rollouts = tokio::spawn(advance_loop(
        store.clone(),
        settings.clock.clone(),
        settings.rollout.advance,
    ));
    let api = Arc::new(Api {
        metrics: report_metrics,
        gate: Gate {
            store: store.clone(),
            clock: settings.clock.clone(),
            lease_secs: settings.rollout.lease_seconds,
        },
        store,
        report_timeout: settings.report_timeout,
        admission: Admission::new(
            settings.max_tasks,
            settings.max_reports_per_minute,
            settings.max_body_bytes_in_flight,
        ),
        v2,
    });
    let service = WithPeerIdentity {
        service: warp::service(api::routes(api)),
        tls: tls.clone(),
    };
    tracing::info!(listen = %listener.local_addr()?, v2 = settings.v2, "master listening");
    let shutdown = async move {
        shutdown.await;
        // Held reports answer at once, so they do not hold up the graceful close.
        let _ = closing.send(true);
    };
    serve::serve_counting(
        listener,
        Transport::Tls(tls),
        settings.limits(),
        service,
        connections,
        shutdown,
    )
    .await;
    watcher.abort();
    rollouts.abort();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(())
}

/// Puts a [`PeerIdentity`] made of the core's connection facts into each request.
/// Also marks a certificate the CRL in force revokes (see [`ReloadingTls::is_revoked`]).
#[derive(Clone)]
struct WithPeerIdentity<S> {
    service: S,
    tls: Arc<ReloadingTls>,
}

impl<S> Service<http::Request<serve::Body>> for WithPeerIdentity<S>
where
    S: Service<http::Request<serve::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<serve::Body>) -> S::Future {
        let extensions = request.extensions();
        let client = extensions.get::<ClientCert>();
        let common_name = client.and_then(|client| client.name.as_deref().map(str::to_owned));
        let revoked = client.is_some_and(|client| self.tls.is_revoked(&client.leaf));
        if let Some(&RemoteAddr(remote)) = extensions.get::<RemoteAddr>() {
            request.extensions_mut().insert(PeerIdentity {
                common_name,
                remote,
                revoked,
            });
        }
        self.service.call(request)
    }
}

//! The serving core of master and UI: accept loop, TLS handshake under a timeout, connection cap, deadlines, graceful shutdown.
//!
//! [`serve`] accepts TCP connections (at most [`Limits::max_connections`] at once; further
//! ones wait in the kernel's backlog), optionally terminates TLS with the acceptor in force
//! when the connection arrives, and serves HTTP/1.1 through hyper (no HTTP/2: see
//! `connection`). TLS handshakes in progress are capped per source address
//! ([`Limits::max_handshakes_per_source`]), so one host cannot hold every connection slot
//! with handshakes it never finishes. Every
//! request carries the connection's facts in its extensions ([`RemoteAddr`], and under mutual
//! TLS [`ClientCert`]) for warp filters to read, and produces one log line.
//!
//! Deadlines, all in [`Limits`]:
//! * `handshake_timeout`: the TLS handshake;
//! * `header_timeout`: a complete request head, counted from when the connection is ready
//!   for a request (opened, or its previous response sent); HTTP/1 only (hyper's timer), so it
//!   also closes HTTP/1 connections that sit idle;
//! * `idle_timeout`: a connection with no request in flight for this long is shut down
//!   gracefully;
//! * `body_timeout`: a request body must be complete this long after its head arrived; a
//!   body that trickles in slower fails with an error for the handler, and the connection is
//!   closed after the response.

mod body;
mod connection;
mod sources;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use body::Body;

/// How many connections a server holds and how long each step may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// Longest TLS handshake before the connection is dropped.
    pub handshake_timeout: Duration,
    /// Longest wait for a complete HTTP/1 request head once the connection is ready for one.
    pub header_timeout: Duration,
    /// A connection with no request in flight is shut down after this long.
    pub idle_timeout: Duration,
    /// A request body must be complete this long after the request's head arrived.
    pub body_timeout: Duration,
    /// How long open connections get to finish their requests at shutdown.
    pub shutdown_grace: Duration,
    /// TLS handshakes in progress from one source address (IPv6: one /64); a connection
    /// beyond them is closed at once.
    pub max_handshakes_per_source: usize,
    /// Largest HTTP/1 request head (request line and headers) in bytes, and the largest
    /// buffer a connection reads into ([`MIN_HEAD_BYTES`] at least; a larger head is refused
    /// with 431). At [`MIN_HEAD_BYTES`] every connection keeps one 8 KiB read buffer; with
    /// more room hyper doubles it to 16 KiB on most connections (it reserves 8 KiB for the
    /// next read while the last request's bytes are still in the buffer), and keeps it.
    pub max_head_bytes: usize,
}

/// Default of [`Limits::max_handshakes_per_source`]: far above what the agents behind one
/// NAT address start at once (a handshake takes milliseconds), far below a connection cap.
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 64;

/// The smallest [`Limits::max_head_bytes`], hyper's initial read buffer size.
pub const MIN_HEAD_BYTES: usize = 8192;

/// hyper's default for [`Limits::max_head_bytes`] (about 408 KiB).
pub const DEFAULT_MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            body_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
        }
    }
}

/// Plain TCP, or TLS with acceptors from a source that may change between connections.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(Arc<dyn Acceptors>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain => "Plain",
            Transport::Tls(_) => "Tls",
        })
    }
}

/// Where TLS connections get their acceptor: a fixed one, or a configuration re-read when
/// its certificate, key or CRL files change.
pub trait Acceptors: Send + Sync + 'static {
    /// The acceptor for the connection that has just arrived.
    fn current(&self) -> TlsAcceptor;

    /// The name of a verified client certificate (e.g. its CN) for the request log line and
    /// [`ClientCert::name`]; computed once per connection. None by default.
    fn client_name(&self, _leaf: &CertificateDer<'_>) -> Option<String> {
        None
    }
}

impl Acceptors for TlsAcceptor {
    fn current(&self) -> TlsAcceptor {
        self.clone()
    }
}

/// The TCP peer of a request (`warp::addr::remote()` is empty under our accept loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// The client certificate verified during the TLS handshake (mutual TLS only).
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The leaf certificate the client presented.
    pub leaf: Arc<CertificateDer<'static>>,
    /// What [`Acceptors::client_name`] called it.
    pub name: Option<Arc<str>>,
}

/// How many connections a server holds open right now (accepted and not yet closed; those
/// waiting in the kernel's backlog are not counted), for a metrics gauge. Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct OpenConnections(Arc<AtomicUsize>);

impl OpenConnections {
    /// The connections open now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one connection as open until the returned guard is dropped.
    fn enter(&self) -> OpenGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.0.clone())
    }
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `service` on `listener` until `shutdown` completes; then stops accepting, lets open
/// requests finish for up to [`Limits::shutdown_grace`] and drops what is left.
///
/// Raises the open-file limit first ([`raise_fd_limit`]).
pub async fn serve<S, B>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let open = OpenConnections::default();
    serve_counting(listener, transport, limits, service, open, shutdown).await;
}

/// [`serve`], keeping `open` up to date with the connections being served.
pub async fn serve_counting<S, B>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    service: S,
    open: OpenConnections,
    shutdown: impl Future<Output = ()>,
) where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match raise_fd_limit() {
        Ok(open_files) if (open_files as usize) < limits.max_connections => tracing::warn!(
            open_files,
            max_connections = limits.max_connections,
            "the open-file limit is below the connection cap"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let shared = Arc::new(connection::Shared::new(transport, limits, service));
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (tcp, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while let Some(ended) = connections.try_join_next() {
            log_panic(ended);
        }
        let shared = shared.clone();
        let stopping = stopping.clone();
        let counted = open.enter();
        connections.spawn(async move {
            shared.run(tcp, remote, stopping).await;
            drop((permit, counted));
        });
    }
    drop(listener);
    let _ = stop.send(true);
    tracing::info!(
        open = connections.len(),
        "shutting down, letting open requests finish"
    );
    let drained = tokio::time::timeout(shared.limits.shutdown_grace, async {
        while let Some(ended) = connections.join_next().await {
            log_panic(ended);
        }
    });
    if drained.await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "some connections did not finish in time"
        );
        connections.shutdown().await;
    }
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::error!(error = %e, "connection task failed");
    }
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit, so the
/// connection cap rather than the default of 1024 bounds a server; returns the soft limit
/// now in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum {
        if limit.current != Some(hard) {
            limit.current = Some(hard);
            setrlimit(Resource::Nofile, limit)?;
        }
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

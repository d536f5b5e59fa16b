//! The accept loop: TLS handshakes under a timeout, the verified client certificate's CN put
//! into each request, HTTP/1.1 and HTTP/2 served by hyper-util, one log line per request, and
//! graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use masif_pki::TlsFiles;
use masif_store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

use crate::api::{self, PeerIdentity};
use crate::tls::ReloadingTls;

/// Everything the server needs besides the store and the listener.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub tls: TlsFiles,
    pub handshake_timeout: Duration,
    /// An idle kept-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// Longest time one report may take, database retries included.
    pub report_timeout: Duration,
    /// How often the TLS files are checked for changes.
    pub reload_interval: Duration,
    pub max_connections: usize,
    /// How long open connections get to finish their requests at shutdown.
    pub shutdown_grace: Duration,
}

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
    let tls = Arc::new(ReloadingTls::load(settings.tls.clone())?);
    let watcher = tokio::spawn(tls.clone().watch(settings.reload_interval));
    let service = warp::service(api::routes(store, settings.report_timeout));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    tracing::info!(listen = %listener.local_addr()?, "master listening");

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
        let connection = Connection {
            acceptor: tls.acceptor(),
            service: service.clone(),
            settings: settings.clone(),
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection.serve(tcp, remote, watcher).await;
            drop(permit);
        });
    }
    drop(listener);
    watcher.abort();
    tracing::info!(
        open = graceful.count(),
        "shutting down, letting open requests finish"
    );
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
    Ok(())
}

struct Connection<S> {
    acceptor: tokio_rustls::TlsAcceptor,
    service: S,
    settings: ServeSettings,
}

impl<S> Connection<S>
where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    async fn serve(
        self,
        tcp: TcpStream,
        remote: std::net::SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _ = tcp.set_nodelay(true);
        let handshake =
            tokio::time::timeout(self.settings.handshake_timeout, self.acceptor.accept(tcp));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::info!(%remote, error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::info!(%remote, "TLS handshake timed out");
                return;
            }
        };
        let common_name = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| masif_pki::common_name(leaf).ok().flatten());
        let identity = PeerIdentity {
            common_name,
            remote,
        };
        let service = self.service;
        let per_request =
            hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(identity.clone());
                let agent = identity.common_name.clone().unwrap_or_default();
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let mut service = service.clone();
                async move {
                    let started = Instant::now();
                    let response = service.call(request).await?;
                    tracing::info!(
                        %agent,
                        %remote,
                        %method,
                        path = %truncate(&path, 100),
                        status = response.status().as_u16(),
                        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "request"
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(self.settings.idle_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.settings.idle_timeout)
            .keep_alive_timeout(self.settings.handshake_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), per_request);
        if let Err(e) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

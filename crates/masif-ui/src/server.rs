//! Serving the UI's routes through the daemons' serving core (connection cap, handshake,
//! header, idle and body deadlines, graceful shutdown), over plain HTTP or HTTPS.

use std::future::Future;
use std::sync::Arc;

use masif_daemon::serve::{self, Limits, Transport};
use tokio::net::TcpListener;
use warp::Filter;

/// The TCP peer of a request, put into every request by the serving core.
pub use masif_daemon::serve::RemoteAddr as ClientAddr;

/// Accepts connections on `listener` until `shutdown` completes, then lets open requests
/// finish (up to `limits.shutdown_grace`).
pub(crate) async fn serve<F>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    filter: F,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    F::Future: Send,
{
    let transport = match tls {
        None => Transport::Plain,
        Some(config) => Transport::Tls(Arc::new(tokio_rustls::TlsAcceptor::from(config))),
    };
    serve::serve(listener, transport, limits, warp::service(filter), shutdown).await;
}

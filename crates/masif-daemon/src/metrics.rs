//! The Prometheus endpoint that master and UI share: a plain-HTTP listener of its own
//! (`metrics_listen`) answering `GET /metrics` with what an [`Exposition`] renders, served by
//! the serving core under small limits so that scrapers cannot hurt the main service.
//!
//! `GET` (or `HEAD`) `/metrics` is 200 in the OpenMetrics text format ([`CONTENT_TYPE`]), or
//! 503 when the exposition cannot be had now (the UI's database is out of reach); another
//! method on `/metrics` is 405, any other path 404. Request bodies are never read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::serve::{self, Body, Limits, Transport};

/// The content type of what [`encode`] writes: OpenMetrics 1.0 text, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the metrics of a scrape come from.
pub trait Exposition: Send + Sync + 'static {
    /// The metrics now, in the OpenMetrics text format (see [`encode`]), or the reason they
    /// cannot be had (answered 503, logged).
    fn render(&self) -> impl Future<Output = Result<String, String>> + Send;
}

/// `registry` in the OpenMetrics text format, `# EOF` included.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an encoder error would be a metric name bug.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "encoding the metrics failed");
    }
    text
}

/// The limits of a metrics listener: a few scrapers at a time, short deadlines.
pub fn limits() -> Limits {
    Limits {
        max_connections: 8,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(2),
        max_handshakes_per_source: 8,
        max_head_bytes: serve::MIN_HEAD_BYTES,
    }
}

/// Serves `exposition` at `/metrics` on `listener` (plain HTTP, [`limits`]) until `shutdown`
/// completes.
pub async fn serve<E: Exposition>(
    listener: TcpListener,
    exposition: Arc<E>,
    shutdown: impl Future<Output = ()>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let service = MetricsService(exposition);
    serve::serve(listener, Transport::Plain, limits(), service, shutdown).await;
}

/// The one route of the metrics listener.
struct MetricsService<E>(Arc<E>);

impl<E> Clone for MetricsService<E> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

impl<E: Exposition> tower_service::Service<Request<Body>> for MetricsService<E> {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        let exposition = self.0.clone();
        let method = request.method().clone();
        let found = request.uri().path() == "/metrics";
        drop(request);
        Box::pin(async move {
            Ok(match (found, method) {
                (false, _) => text(StatusCode::NOT_FOUND, "not found"),
                (true, Method::GET | Method::HEAD) => match exposition.render().await {
                    Ok(body) => {
                        let mut response = Response::new(body);
                        response
                            .headers_mut()
                            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                        response
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "metrics unavailable");
                        text(StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable")
                    }
                },
                (true, _) => {
                    let mut response =
                        text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed here");
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                    response
                }
            })
        })
    }
}

fn text(status: StatusCode, reason: &str) -> Response<String> {
    let mut response = Response::new(format!("{reason}\n"));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

//! One connection: the TLS handshake under its timeout (and under the per-source cap), the
//! client's first bytes awaited before hyper's connection (and its buffers) is made, then
//! HTTP/1.1 with the connection's facts put into each request, the in-flight count that
//! drives the idle deadline, one log line per request, and a graceful close at idle or
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower_service::Service;

use super::sources::Sources;
use super::{Body, ClientCert, Limits, RemoteAddr, Transport};

/// What every connection of one server shares.
pub(crate) struct Shared<S> {
    pub(crate) limits: Limits,
    transport: Transport,
    service: S,
    http: http1::Builder,
    /// Handshakes in progress per source address.
    handshaking: Sources,
}

impl<S, B> Shared<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(transport: Transport, limits: Limits, service: S) -> Self {
        // HTTP/1.1 only: agents and browsers speak it, and over HTTP/2 an answer sent before
        // the request body was read (a 413, a 404) races the stream reset that follows it,
        // which clients such as curl report as a framing error instead of the answer.
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_head_bytes.max(super::MIN_HEAD_BYTES));
        Self {
            handshaking: Sources::new(limits.max_handshakes_per_source),
            limits,
            transport,
            service,
            http,
        }
    }

    /// Serves one accepted connection until it closes.
    pub(crate) async fn run(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
        mut stopping: watch::Receiver<bool>,
    ) {
        let _ = tcp.set_nodelay(true);
        let source = match &self.transport {
            Transport::Plain => {
                let first_deadline = tokio::time::Instant::now() + self.limits.header_timeout;
                if !self
                    .first_bytes(tcp.readable(), first_deadline, remote, &mut stopping)
                    .await
                {
                    return;
                }
                let io = TokioIo::new(tcp);
                return self.http(io, remote, None, first_deadline, stopping).await;
            }
            Transport::Tls(source) => source,
        };
        // The TLS stream goes to the heap, and its local ends with this block: a connection's
        // future then holds neither it nor the handshake while serving (see `http`).
        let (mut io, client) = {
            let Some(_handshaking) = self.handshaking.enter(remote.ip()) else {
                tracing::info!(%remote, "too many TLS handshakes from this address; connection dropped");
                return;
            };
            let handshake = source.current().accept(tcp);
            let stream = match tokio::time::timeout(self.limits.handshake_timeout, handshake).await
            {
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
            let client = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| ClientCert {
                    name: source.client_name(leaf).map(Arc::from),
                    leaf: Arc::new(leaf.clone().into_owned()),
                });
            (Box::pin(TokioIo::new(stream)), client)
        };
        let first_deadline = tokio::time::Instant::now() + self.limits.header_timeout;
        let sent = tls_readable(io.as_mut().get_mut().inner_mut());
        if !self
            .first_bytes(sent, first_deadline, remote, &mut stopping)
            .await
        {
            return;
        }
        self.http(io, remote, client, first_deadline, stopping)
            .await
    }

    /// Waits for `sent`, the client's first bytes after the handshake, before hyper's
    /// connection is made: that takes its read and write buffers (8 KiB each) at once, so a
    /// connection that has sent nothing holds only the socket (and the TLS state). False when
    /// the client sent nothing by `deadline` or the server is stopping.
    async fn first_bytes(
        &self,
        sent: impl std::future::Future<Output = std::io::Result<()>>,
        deadline: tokio::time::Instant,
        remote: SocketAddr,
        stopping: &mut watch::Receiver<bool>,
    ) -> bool {
        tokio::select! {
            // An error shows to hyper's first read, which ends the connection.
            _ = sent => true,
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(%remote, "no request before the header deadline");
                false
            }
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    }

    async fn http<I>(
        &self,
        io: I,
        remote: SocketAddr,
        client: Option<ClientCert>,
        first_deadline: tokio::time::Instant,
        mut stopping: watch::Receiver<bool>,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (busy, mut in_flight) = watch::channel(0usize);
        let busy = Arc::new(busy);
        let service = self.service.clone();
        let body_timeout = self.limits.body_timeout;
        let per_request = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let guard = InFlight::enter(busy.clone());
            let started = Instant::now();
            let method = request.method().clone();
            let path = truncate(request.uri().path(), 100).to_owned();
            let mut request = request.map(|body| Body::new(body, body_timeout));
            detach_head(&mut request);
            request.extensions_mut().insert(RemoteAddr(remote));
            let name = client.as_ref().and_then(|c| c.name.clone());
            if let Some(client) = &client {
                request.extensions_mut().insert(client.clone());
            }
            let mut service = service.clone();
            async move {
                let response = service.call(request).await?;
                tracing::info!(
                    %method,
                    %path,
                    status = response.status().as_u16(),
                    duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                    %remote,
                    client = name.as_deref(),
                    "request"
                );
                drop(guard);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        // On the heap, as is the TLS stream (see `run`): an async fn's state keeps room for its
        // arguments, and for a local it has moved out of or borrowed, across every later await,
        // so inline they were held twice. Each connection's task was 10.3 KiB with them inline,
        // and is 1.6 KiB beside the two boxes (about 3 KiB together) now.
        let mut connection = Box::pin(self.http.serve_connection(io, per_request));
        // The first request's deadline is kept here too, whenever hyper starts its header
        // timer: a connection that never sends a byte is closed on time.
        let mut first_request = in_flight.clone();
        let mut first_deadline = std::pin::pin!(tokio::time::sleep_until(first_deadline));
        let mut requested = false;
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = first_request.changed(), if !requested => requested = true,
                _ = &mut first_deadline, if !requested => {
                    tracing::debug!(%remote, "no request before the header deadline");
                    return;
                }
                _ = idle(&mut in_flight, self.limits.idle_timeout), if !closing => {
                    tracing::debug!(%remote, "closing an idle connection");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = stopping.wait_for(|stop| *stop), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Completes once the TLS client has sent something after the handshake: a record read with
/// the handshake and decrypted now, or more bytes (or the end) on the socket.
async fn tls_readable(
    stream: &mut tokio_rustls::server::TlsStream<TcpStream>,
) -> std::io::Result<()> {
    let (tcp, tls) = stream.get_mut();
    match tls.process_new_packets() {
        Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {
            tcp.readable().await
        }
        _ => Ok(()),
    }
}

/// Completes once no request has been in flight for `limit`.
async fn idle(in_flight: &mut watch::Receiver<usize>, limit: Duration) {
    loop {
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(limit) => return,
            _ = in_flight.changed() => {}
        }
    }
}

/// Counts a request as in flight until its response is ready.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn enter(busy: Arc<watch::Sender<usize>>) -> Self {
        busy.send_modify(|n| *n += 1);
        Self(busy)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Copies the request's target and header values out of hyper's read buffer, of which they
/// are slices: a request held for minutes (a long-poll) would otherwise keep that buffer
/// alive while hyper reads into a new one, two 8 KiB buffers per waiting connection instead of
/// one. A few small copies per request.
fn detach_head<B>(request: &mut http::Request<B>) {
    if let Ok(uri) = request.uri().to_string().parse::<http::Uri>() {
        *request.uri_mut() = uri;
    }
    let shared = std::mem::take(request.headers_mut());
    let mut owned = http::HeaderMap::with_capacity(shared.len());
    let mut name = None;
    for (next, value) in shared {
        name = next.or(name);
        let Some(name) = &name else { continue };
        let mut copy =
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        owned.append(name.clone(), copy);
    }
    *request.headers_mut() = owned;
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_head_is_the_same_head() {
        let mut request = http::Request::builder()
            .method("POST")
            .uri("/v2/report?x=1")
            .header("host", "master.test")
            .header("x-repeat", "1")
            .header("x-repeat", "2")
            .header("content-length", "2")
            .body(())
            .unwrap();
        request
            .headers_mut()
            .get_mut("host")
            .unwrap()
            .set_sensitive(true);
        let before = format!("{request:?}");
        let sensitive = |r: &http::Request<()>| r.headers()["host"].is_sensitive();
        detach_head(&mut request);
        assert_eq!(format!("{request:?}"), before);
        assert!(sensitive(&request));
        let repeated: Vec<_> = request.headers().get_all("x-repeat").iter().collect();
        assert_eq!(repeated, ["1", "2"]);
    }
}

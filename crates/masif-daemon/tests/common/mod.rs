//! The serving core's test harness: a test service, a core running it on a loopback port,
//! requests written and read by hand, and a CA for mutual TLS.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use masif_daemon::serve::{self, Acceptors, ClientCert, Limits, RemoteAddr, Transport};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Longest any expected event may take before a test fails (never reached when it passes).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The test service: `GET /who` names the connection's facts, `POST /echo` reads the whole
/// body, `GET /hold` answers once released. Reports what it saw on `events`.
#[derive(Clone)]
struct App {
    events: mpsc::UnboundedSender<String>,
    release: watch::Receiver<bool>,
}

impl tower_service::Service<http::Request<serve::Body>> for App {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<serve::Body>) -> Self::Future {
        let app = self.clone();
        Box::pin(async move {
            let reply = |status: u16, text: String| {
                let mut response = http::Response::new(Full::new(Bytes::from(text)));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok(response)
            };
            match request.uri().path() {
                "/who" => {
                    let remote = request.extensions().get::<RemoteAddr>().unwrap().0;
                    let client = request.extensions().get::<ClientCert>().map(|c| {
                        let name = c.name.as_deref().unwrap_or("-").to_owned();
                        format!("{name} ({} bytes)", c.leaf.len())
                    });
                    reply(200, format!("{remote} {}", client.unwrap_or_default()))
                }
                "/echo" => match request.into_body().collect().await {
                    Ok(body) => {
                        let n = body.to_bytes().len();
                        app.events.send(format!("body {n}")).unwrap();
                        reply(200, format!("{n}"))
                    }
                    Err(e) => {
                        app.events.send(format!("body error: {e}")).unwrap();
                        reply(408, "too slow".into())
                    }
                },
                "/hold" => {
                    app.events.send("held".into()).unwrap();
                    let mut release = app.release.clone();
                    let _ = release.wait_for(|r| *r).await;
                    reply(200, "released".into())
                }
                _ => reply(404, String::new()),
            }
        })
    }
}

/// A running core on a loopback port.
pub struct Server {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<String>,
    pub release: watch::Sender<bool>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(transport: Transport, limits: Limits) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        let app = App {
            events: events_tx,
            release: released,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::serve(listener, transport, limits, app, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            events,
            release,
            stop: Some(stop),
            task,
        }
    }

    pub async fn plain(limits: Limits) -> Self {
        Self::start(Transport::Plain, limits).await
    }

    pub async fn event(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("the service saw nothing")
            .unwrap()
    }

    pub fn shut_down(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }

    pub async fn stopped(self) {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the server did not stop")
            .unwrap();
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

/// Writes `raw` and reads one response: (status, body). Needs a Content-Length response.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    raw: &str,
) -> (u16, String) {
    stream.write_all(raw.as_bytes()).await.unwrap();
    tokio::time::timeout(PATIENCE, read_response(stream))
        .await
        .expect("no response")
}

pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if buf.len() >= end + 4 + length {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the server closes the connection (EOF or reset) and returns what came first.
pub async fn until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server kept the connection open");
    seen
}

pub const GET_WHO: &str = "GET /who HTTP/1.1\r\nHost: t\r\n\r\n";

pub fn limits() -> Limits {
    Limits {
        max_connections: 100,
        handshake_timeout: Duration::from_secs(60),
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(60),
        ..Limits::default()
    }
}

/// A CA with a server certificate for `serve.test` and a client certificate for `agent-1`.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl Pki {
    pub fn new() -> Self {
        use masif_testkit::pki::{EphemeralCa, Usage};
        let dir = tempfile::tempdir().unwrap();
        let ca = EphemeralCa::new("Serve Test CA").unwrap();
        let server = ca.issue("serve.test", Usage::Server).unwrap();
        let client = ca.issue("agent-1", Usage::Client).unwrap();
        let server = ca
            .write_files(&dir.path().join("s"), &server, None)
            .unwrap();
        let client = ca
            .write_files(&dir.path().join("c"), &client, None)
            .unwrap();
        Self {
            server: Arc::new(masif_pki::server_config(&server).unwrap()),
            client: Arc::new(masif_pki::client_config(&client).unwrap()),
            _dir: dir,
        }
    }

    /// Mutual TLS, naming clients by their certificate's CN.
    pub fn transport(&self) -> Transport {
        struct ByCommonName(tokio_rustls::TlsAcceptor);
        impl Acceptors for ByCommonName {
            fn current(&self) -> tokio_rustls::TlsAcceptor {
                self.0.clone()
            }
            fn client_name(&self, leaf: &CertificateDer<'_>) -> Option<String> {
                masif_pki::common_name(leaf).ok().flatten()
            }
        }
        Transport::Tls(Arc::new(ByCommonName(self.server.clone().into())))
    }

    pub async fn connect(&self, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
        self.handshake(TcpStream::connect(addr).await.unwrap())
            .await
    }

    /// A connection from the loopback address `source` (e.g. 127.0.0.2).
    pub async fn connect_from(
        &self,
        source: &str,
        addr: SocketAddr,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        self.handshake(socket.connect(addr).await.unwrap()).await
    }

    pub async fn handshake(&self, tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
        let name = rustls::pki_types::ServerName::try_from("serve.test").unwrap();
        tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await
            .unwrap()
    }
}

//! Shared fixtures of the master's integration tests: a throwaway PKI, a master on a loopback
//! port with a fresh MariaDB database, and a TLS client that can misbehave on purpose.

#![allow(dead_code)]

pub mod gated;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use masif_pki::TlsFiles;
use masif_testkit::db::TestDatabase;
use masif_testkit::pki::{EphemeralCa, Issued, Usage};
use rustls::pki_types::ServerName;
use tokio::sync::oneshot;

pub const MASTER_CN: &str = "master.test";

/// A PKI with a master certificate and a CRL (initially listing nothing).
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: EphemeralCa,
    pub master: TlsFiles,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = EphemeralCa::new("Masif Test CA").unwrap();
        let crl = ca.crl_pem(&[], 30).unwrap();
        let master_cert = ca.issue(MASTER_CN, Usage::Server).unwrap();
        let master = ca
            .write_files(&dir.path().join("master"), &master_cert, Some(&crl))
            .unwrap();
        Self { dir, ca, master }
    }

    /// Client files for a new agent certificate with this CN.
    pub fn agent(&self, cn: &str) -> (Issued, TlsFiles) {
        let issued = self.ca.issue(cn, Usage::Client).unwrap();
        let files = self
            .ca
            .write_files(&self.dir.path().join(format!("agent-{cn}")), &issued, None)
            .unwrap();
        (issued, files)
    }

    /// Writes a new CRL revoking `revoked` where the master reads it.
    pub fn revoke(&self, revoked: &[&Issued]) {
        let crl = self.ca.crl_pem(revoked, 30).unwrap();
        let path = self.master.crl.clone().unwrap();
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, crl).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }
}

/// A running master with its own database.
pub struct Master {
    pub addr: SocketAddr,
    /// Its metrics listener (plain HTTP, `GET /metrics`).
    pub metrics: SocketAddr,
    pub db: TestDatabase,
    pub store: Arc<dyn masif_store::Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Master {
    pub async fn start(pki: &Pki, tune: impl FnOnce(&mut masif_master::ServeSettings)) -> Self {
        let db = TestDatabase::create("master").await;
        Self::start_on(&pki.master, db, tune).await
    }

    pub async fn start_on(
        files: &TlsFiles,
        db: TestDatabase,
        tune: impl FnOnce(&mut masif_master::ServeSettings),
    ) -> Self {
        let store = masif_store::open(&db.url().parse().unwrap()).await.unwrap();
        Self::start_with_store(files, db, store, tune).await
    }

    /// A master on `store` (a store on `db` opened with options of the test's own).
    pub async fn start_with_store(
        files: &TlsFiles,
        db: TestDatabase,
        store: Arc<dyn masif_store::Store>,
        tune: impl FnOnce(&mut masif_master::ServeSettings),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = metrics_listener.local_addr().unwrap();
        let mut settings = masif_master::ServeSettings::new(files.clone());
        tune(&mut settings);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(masif_master::serve_with_listeners(
            settings,
            store.clone(),
            listener,
            Some(metrics_listener),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            metrics,
            db,
            store,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A keep-alive client presenting a new certificate for agent `cn`.
    pub async fn agent_client(&self, pki: &Pki, cn: &str) -> Client {
        let (_, files) = pki.agent(cn);
        Client::connect(self.addr, client_config(&files))
            .await
            .unwrap()
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.take().unwrap().send(()).ok();
        self.task.take().unwrap().await.unwrap()
    }
}

/// A client TLS configuration presenting `files`' certificate.
pub fn client_config(files: &TlsFiles) -> Arc<rustls::ClientConfig> {
    Arc::new(masif_pki::client_config(files).unwrap())
}

/// A client TLS configuration that trusts the CA but presents no certificate.
pub fn anonymous_client_config(ca: &TlsFiles) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in masif_pki::load_certs(&ca.ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One kept-alive HTTP/1.1 connection to the master.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

impl Client {
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        Self::over(tcp, config).await
    }

    /// The TLS handshake and HTTP/1.1 connection over `tcp`, connected by the caller (from a
    /// source address of its choice, say).
    pub async fn over(
        tcp: tokio::net::TcpStream,
        config: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = connector
            .connect(ServerName::try_from(MASTER_CN).unwrap(), tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        self.request_within(method, path, body, Duration::from_secs(30))
            .await
    }

    /// A request whose answer may take up to `within` (a held v2 report).
    pub async fn request_within(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
        within: Duration,
    ) -> anyhow::Result<Reply> {
        self.sender.ready().await?;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", MASTER_CN)
            .body(Full::new(body.into()))?;
        let response = tokio::time::timeout(within, self.sender.send_request(request)).await??;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            retry_after,
        })
    }

    pub async fn report(&mut self, body: &str) -> anyhow::Result<Reply> {
        self.request("POST", "/v1/pending-tasks", body.to_owned())
            .await
    }

    /// Whether the server has closed this connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// A TLS connection presenting `files`' certificate, for writing raw HTTP/1.1 by hand.
pub async fn raw_connection(
    addr: SocketAddr,
    files: &TlsFiles,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(client_config(files))
        .connect(ServerName::try_from(MASTER_CN).unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads from a raw connection until `marker` has arrived (or the connection ends) and
/// returns all that came.
pub async fn read_until<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, marker: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        while !String::from_utf8_lossy(&seen).contains(marker) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("nothing arrived");
    String::from_utf8_lossy(&seen).into_owned()
}

/// One request on a fresh connection (the handshake error, if any, surfaces here).
pub async fn post_once(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    body: &str,
) -> anyhow::Result<Reply> {
    let mut client = Client::connect(addr, config).await?;
    client.report(body).await
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

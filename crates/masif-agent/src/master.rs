//! The agent's side of the wire protocol: `POST /v1/pending-tasks` over mutual TLS to the
//! master. One kept-alive HTTP/1.1 connection (reopened when the master closed it), the
//! master's certificate checked against `master.cn` (which may differ from the dialled host),
//! and a clear error when it does not match.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use masif_pki::TlsFiles;
use masif_proto::{parse_task_list, render_task_list, ProtocolError, TaskSet, PENDING_TASKS_PATH};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a whole report (connect, request, answer) may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes of an error answer quoted in a message.
const MAX_QUOTED_BODY: usize = 300;

/// Why a report did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("master.cn {0:?} is not a valid certificate name")]
    BadName(String),
    #[error("tls: {0}")]
    Tls(#[from] masif_pki::PkiError),
    #[error("connecting to the master at {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("the master at {host} presented a certificate that is not valid for {cn:?} (master.cn): {detail}")]
    NameMismatch {
        host: String,
        cn: String,
        detail: String,
    },
    #[error("TLS handshake with the master at {host}: {detail}")]
    Handshake { host: String, detail: String },
    #[error("talking to the master at {host}: {detail}")]
    Http { host: String, detail: String },
    #[error("the master at {host} answered {status}: {body}")]
    Status {
        host: String,
        status: StatusCode,
        body: String,
    },
    #[error("the master at {host} sent an invalid answer: {source}")]
    Answer { host: String, source: ProtocolError },
    #[error("the master at {host} did not answer within {} s", .timeout.as_secs())]
    Timeout { host: String, timeout: Duration },
}

/// A client of one master. Cheap to share (`Arc`); reports through it are serialised on its
/// one connection.
pub struct MasterClient {
    host: String,
    cn: String,
    server_name: ServerName<'static>,
    connector: std::sync::Mutex<TlsConnector>,
    /// The files the configuration came from and their newest modification time: a renewed
    /// certificate or new CRL is picked up by the next connection, without a restart.
    files: Option<(TlsFiles, std::sync::Mutex<SystemTime>)>,
    sender: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for MasterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterClient")
            .field("host", &self.host)
            .field("cn", &self.cn)
            .finish_non_exhaustive()
    }
}

impl MasterClient {
    /// A client presenting the certificate of `tls`, dialling `host` (`name:port`) and
    /// requiring the master's certificate to be valid for `cn`.
    pub fn new(tls: &TlsFiles, host: &str, cn: &str) -> Result<Self, MasterError> {
        let modified = tls.newest_modification()?;
        let config = masif_pki::client_config(tls)?;
        let mut client = Self::with_config(Arc::new(config), host, cn)?;
        client.files = Some((tls.clone(), std::sync::Mutex::new(modified)));
        Ok(client)
    }

    /// The same with a ready rustls configuration.
    pub fn with_config(
        config: Arc<rustls::ClientConfig>,
        host: &str,
        cn: &str,
    ) -> Result<Self, MasterError> {
        let server_name =
            ServerName::try_from(cn.to_owned()).map_err(|_| MasterError::BadName(cn.into()))?;
        Ok(Self {
            host: host.to_owned(),
            cn: cn.to_owned(),
            server_name,
            connector: std::sync::Mutex::new(TlsConnector::from(config)),
            files: None,
            sender: tokio::sync::Mutex::new(None),
        })
    }

    /// The `host:port` dialled.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Reports the pending `tasks` and returns those the master says are approved (only
    /// tasks that were reported count).
    pub async fn report(&self, tasks: &TaskSet) -> Result<TaskSet, MasterError> {
        let body = render_task_list(tasks);
        let approved = tokio::time::timeout(REPORT_TIMEOUT, self.exchange(body))
            .await
            .map_err(|_| MasterError::Timeout {
                host: self.host.clone(),
                timeout: REPORT_TIMEOUT,
            })??;
        Ok(approved.into_iter().filter(|t| tasks.contains(t)).collect())
    }

    async fn exchange(&self, body: String) -> Result<TaskSet, MasterError> {
        let mut slot = self.sender.lock().await;
        let reused = match slot.as_mut() {
            Some(sender) => !sender.is_closed() && sender.ready().await.is_ok(),
            None => false,
        };
        if !reused {
            *slot = Some(self.connect().await?);
        }
        let sender = slot.as_mut().expect("just connected");
        let response = match sender.send_request(self.request(&body)).await {
            Ok(r) => r,
            Err(e) if reused => {
                // The master closed the kept-alive connection under us; a report is
                // idempotent, so one fresh attempt is safe.
                tracing::debug!(error = %e, "kept-alive connection failed; reconnecting");
                *slot = Some(self.connect().await?);
                let sender = slot.as_mut().expect("just connected");
                sender
                    .send_request(self.request(&body))
                    .await
                    .map_err(|e| self.http_error(e))?
            }
            Err(e) => {
                *slot = None;
                return Err(self.http_error(e));
            }
        };
        let status = response.status();
        let bytes = Limited::new(response.into_body(), masif_proto::MAX_BODY_BYTES as usize)
            .collect()
            .await
            .map_err(|e| {
                *slot = None;
                MasterError::Http {
                    host: self.host.clone(),
                    detail: format!("reading the answer: {e}"),
                }
            })?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes);
            let body: String = text.chars().take(MAX_QUOTED_BODY).collect();
            return Err(MasterError::Status {
                host: self.host.clone(),
                status,
                body,
            });
        }
        parse_task_list(&bytes).map_err(|source| MasterError::Answer {
            host: self.host.clone(),
            source,
        })
    }

    fn request(&self, body: &str) -> Request<Full<Bytes>> {
        Request::post(PENDING_TASKS_PATH)
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("masif-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("static request parts")
    }

    fn http_error(&self, e: hyper::Error) -> MasterError {
        // A rejected client certificate shows up here, as a TLS alert after the handshake.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        MasterError::Http {
            host: self.host.clone(),
            detail,
        }
    }

    /// The connector for a new connection, rebuilt first if the TLS files changed (a
    /// broken new set is logged and the old one kept).
    fn connector(&self) -> TlsConnector {
        if let Some((files, seen)) = &self.files {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            match files.newest_modification() {
                Ok(modified) if modified != *seen => match masif_pki::client_config(files) {
                    Ok(config) => {
                        tracing::info!(cert = %files.cert.display(), "TLS files changed; reloaded");
                        *self.connector.lock().unwrap_or_else(|e| e.into_inner()) =
                            TlsConnector::from(Arc::new(config));
                        *seen = modified;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be used; keeping the previous ones")
                    }
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the TLS files"),
            }
        }
        self.connector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, MasterError> {
        let connector = self.connector();
        let connect = async {
            let tcp =
                TcpStream::connect(&self.host)
                    .await
                    .map_err(|source| MasterError::Connect {
                        host: self.host.clone(),
                        source,
                    })?;
            let _ = tcp.set_nodelay(true);
            connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| self.handshake_error(e))
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| MasterError::Timeout {
                host: self.host.clone(),
                timeout: CONNECT_TIMEOUT,
            })??;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.http_error(e))?;
        let host = self.host.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%host, error = %e, "connection to the master ended");
            }
        });
        tracing::debug!(host = %self.host, cn = %self.cn, "connected to the master");
        Ok(sender)
    }

    fn handshake_error(&self, e: std::io::Error) -> MasterError {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(
            cert @ (rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. }),
        )) = rustls_error
        {
            let err = MasterError::NameMismatch {
                host: self.host.clone(),
                cn: self.cn.clone(),
                detail: format!("{cert:?}"),
            };
            tracing::error!("{err}; check master.cn or the master's certificate");
            return err;
        }
        MasterError::Handshake {
            host: self.host.clone(),
            detail: e.to_string(),
        }
    }
}

//! The connection under [`MasterClient`]: one kept-alive HTTP/1.1 connection over mutual TLS
//! to the master in use, reopened when the master closed it or another master is asked, the TLS files reloaded when they changed, and errors
//! that say whether the name, the handshake or the exchange failed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{MasterClient, MasterError};

/// Longest a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most bytes of an error answer quoted in a message.
const MAX_QUOTED_BODY: usize = 300;
/// Longest `Retry-After` taken as it is (the loop caps it further).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl MasterClient {
    /// POSTs the JSON `body` to `path` on master `m` and returns the body of a 200 answer; any
    /// other status is [`MasterError::Status`]. The whole exchange, connecting included, may
    /// take `timeout`.
    pub(super) async fn post(
        &self,
        m: usize,
        path: &'static str,
        body: String,
        timeout: Duration,
    ) -> Result<Bytes, MasterError> {
        let mut slot = self.sender.lock().await;
        if slot.as_ref().is_some_and(|(to, _)| *to != m) {
            // Another master is asked now: the connection to the previous one is closed.
            *slot = None;
        }
        let exchange = self.exchange(&mut slot, m, path, body);
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                // A request may be in flight on it: never reuse that connection.
                *slot = None;
                Err(MasterError::Timeout {
                    host: self.host_of(m).to_owned(),
                    timeout,
                })
            }
        }
    }

    fn host_of(&self, m: usize) -> &str {
        &self.masters.get(m).host
    }

    async fn exchange(
        &self,
        slot: &mut Option<(usize, SendRequest<Full<Bytes>>)>,
        m: usize,
        path: &'static str,
        body: String,
    ) -> Result<Bytes, MasterError> {
        let reused = match slot.as_mut() {
            Some((_, sender)) => !sender.is_closed() && sender.ready().await.is_ok(),
            None => false,
        };
        if !reused {
            *slot = Some((m, self.connect(m).await?));
        }
        let (_, sender) = slot.as_mut().expect("just connected");
        let response = match sender.send_request(self.request(m, path, &body)).await {
            Ok(r) => r,
            Err(e) if reused => {
                // The master closed the kept-alive connection under us; reports and runs are
                // idempotent, so one fresh attempt is safe.
                tracing::debug!(error = %e, "kept-alive connection failed; reconnecting");
                *slot = None;
                *slot = Some((m, self.connect(m).await?));
                let (_, sender) = slot.as_mut().expect("just connected");
                sender
                    .send_request(self.request(m, path, &body))
                    .await
                    .map_err(|e| self.http_error(m, e))?
            }
            Err(e) => {
                *slot = None;
                return Err(self.http_error(m, e));
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = Limited::new(response.into_body(), masif_proto::MAX_BODY_BYTES as usize)
            .collect()
            .await
            .map_err(|e| {
                *slot = None;
                MasterError::Http {
                    host: self.host_of(m).to_owned(),
                    detail: format!("reading the answer: {e}"),
                }
            })?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes);
            let body: String = text.chars().take(MAX_QUOTED_BODY).collect();
            return Err(MasterError::Status {
                host: self.host_of(m).to_owned(),
                status,
                body,
                retry_after,
            });
        }
        Ok(bytes)
    }

    fn request(&self, m: usize, path: &'static str, body: &str) -> Request<Full<Bytes>> {
        Request::post(path)
            .header(http::header::HOST, self.host_of(m))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("masif-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("static request parts")
    }

    fn http_error(&self, m: usize, e: hyper::Error) -> MasterError {
        // A rejected client certificate shows up here, as a TLS alert after the handshake.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        MasterError::Http {
            host: self.host_of(m).to_owned(),
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

    async fn connect(&self, m: usize) -> Result<SendRequest<Full<Bytes>>, MasterError> {
        let connector = self.connector();
        let host = self.host_of(m);
        let connect = async {
            let tcp = TcpStream::connect(host)
                .await
                .map_err(|source| MasterError::Connect {
                    host: host.to_owned(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| self.handshake_error(m, e))
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| MasterError::Timeout {
                host: host.to_owned(),
                timeout: CONNECT_TIMEOUT,
            })??;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.http_error(m, e))?;
        let owned = host.to_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(host = %owned, error = %e, "connection to the master ended");
            }
        });
        tracing::debug!(%host, cn = %self.cn, "connected to the master");
        Ok(sender)
    }

    fn handshake_error(&self, m: usize, e: std::io::Error) -> MasterError {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(
            cert @ (rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. }),
        )) = rustls_error
        {
            let err = MasterError::NameMismatch {
                host: self.host_of(m).to_owned(),
                cn: self.cn.clone(),
                detail: format!("{cert:?}"),
            };
            tracing::error!("{err}; check master.cn or the master's certificate");
            return err;
        }
        MasterError::Handshake {
            host: self.host_of(m).to_owned(),
            detail: e.to_string(),
        }
    }
}

/// A `Retry-After` header in delay-seconds (the HTTP-date form is ignored: the retry interval
/// applies then), at most [`MAX_RETRY_AFTER`].
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = value.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let with = |value: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::RETRY_AFTER, value.parse().unwrap());
            retry_after(&h)
        };
        assert_eq!(with("7"), Some(Duration::from_secs(7)));
        assert_eq!(with(" 0 "), Some(Duration::ZERO));
        assert_eq!(with("99999999999999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(with("-3"), None);
        assert_eq!(retry_after(&http::HeaderMap::new()), None);
    }
}

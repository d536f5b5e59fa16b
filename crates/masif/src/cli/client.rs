//! The client of the UI's JSON API: one HTTP/1.1 request per connection over plain TCP or
//! TLS (verified against a CA bundle), a bearer token, a deadline on the whole exchange, a
//! bound on the answer's size, and errors that say what failed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

/// Most bytes of an answer read: more is an error.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Most characters of a non-JSON error answer quoted in a message.
const MAX_QUOTED: usize = 200;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error status; `message` is its `{"error"}` text.
    #[error("{message} (HTTP {status})")]
    Status { status: StatusCode, message: String },
    #[error("cannot connect to {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("no answer from {host} within {} s", timeout.as_secs())]
    Timeout { host: String, timeout: Duration },
    #[error("HTTP exchange with {host} failed: {detail}")]
    Http { host: String, detail: String },
    #[error("the answer from {host} is not what the API sends: {detail}")]
    BadAnswer { host: String, detail: String },
}

/// Where the API is and how to reach it.
pub struct ApiClient {
    /// The UI's base URL, ending in `/`.
    base: Url,
    /// `host:port` to dial.
    address: String,
    server_name: Option<ServerName<'static>>,
    tls: Option<TlsConnector>,
    token: String,
    timeout: Duration,
}

impl ApiClient {
    /// A client of the UI at `base` (`http://` or `https://`, optionally with a path prefix);
    /// `tls` verifies an `https://` server. Fails on a URL it cannot use.
    pub fn new(
        base: &str,
        token: String,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut base = Url::parse(base).map_err(|e| format!("--url {base:?}: {e}"))?;
        let https = match base.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("--url: scheme {other:?}: expected http or https")),
        };
        if base.query().is_some() || base.fragment().is_some() || !base.username().is_empty() {
            return Err("--url: expected no user name, query or fragment".into());
        }
        let host = base.host_str().ok_or("--url: no host")?.to_owned();
        let port = base.port_or_known_default().ok_or("--url: no port")?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        // IPv6 literals are bracketed in the URL, not in a server name.
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let (server_name, tls) = match https {
            false => (None, None),
            true => {
                let name =
                    ServerName::try_from(bare).map_err(|e| format!("--url: host {host:?}: {e}"))?;
                let config = tls.ok_or("--url: https needs a CA bundle")?;
                (Some(name), Some(TlsConnector::from(config)))
            }
        };
        if token.is_empty() || http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err("the token is empty or holds characters a header cannot carry".into());
        }
        Ok(Self {
            address: format!("{host}:{port}"),
            base,
            server_name,
            tls,
            token,
            timeout,
        })
    }

    /// The URL of the API path below `/api/v1/` made of `segments` (each percent-encoded as one
    /// segment, so an agent name holding `/` or `?` stays one) with the query `pairs`.
    pub fn url(&self, segments: &[&str], pairs: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have paths")
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url
    }

    /// GETs `url` and returns its JSON.
    pub async fn get(&self, url: &Url) -> Result<Value, ApiError> {
        self.call(Method::GET, url, None).await
    }

    /// POSTs the JSON `body` to `url` and returns the JSON answer.
    pub async fn post(&self, url: &Url, body: &Value) -> Result<Value, ApiError> {
        self.call(Method::POST, url, Some(body.to_string())).await
    }

    /// PUTs the JSON `body` to `url` and returns the JSON answer.
    pub async fn put(&self, url: &Url, body: &Value) -> Result<Value, ApiError> {
        self.call(Method::PUT, url, Some(body.to_string())).await
    }

    /// DELETEs `url` and returns the JSON answer.
    pub async fn delete(&self, url: &Url) -> Result<Value, ApiError> {
        self.call(Method::DELETE, url, None).await
    }

    /// An answer that is JSON but not of the shape the API documents.
    pub(crate) fn unexpected(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::BadAnswer {
            host: self.address.clone(),
            detail: e.to_string(),
        }
    }

    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<String>,
    ) -> Result<Value, ApiError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, url, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(ApiError::Timeout {
                host: self.address.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        body: Option<String>,
    ) -> Result<Value, ApiError> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| ApiError::Connect {
                host: self.address.clone(),
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let request = self.request(method, url, body);
        let (status, bytes) = match (&self.tls, &self.server_name) {
            (Some(connector), Some(name)) => {
                let tls =
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| ApiError::Tls {
                            host: self.address.clone(),
                            detail: chain(&e),
                        })?;
                self.send(tls, request).await?
            }
            _ => self.send(tcp, request).await?,
        };
        self.decode(status, &bytes)
    }

    fn request(&self, method: Method, url: &Url, body: Option<String>) -> Request<Full<Bytes>> {
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(target)
            .header(http::header::HOST, url_authority(url))
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(
                http::header::USER_AGENT,
                concat!("masif/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("checked request parts")
    }

    async fn send<S>(
        &self,
        stream: S,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), ApiError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http_error = |e: hyper::Error| ApiError::Http {
            host: self.address.clone(),
            detail: chain(&e),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        let connection = tokio::spawn(conn);
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ApiError::Http {
                host: self.address.clone(),
                detail: format!("reading the answer: {e}"),
            })?
            .to_bytes();
        connection.abort();
        Ok((status, bytes))
    }

    fn decode(&self, status: StatusCode, bytes: &[u8]) -> Result<Value, ApiError> {
        let json = serde_json::from_slice::<Value>(bytes);
        if !status.is_success() {
            let message = match &json {
                Ok(v) => v.get("error").and_then(Value::as_str).map(str::to_owned),
                Err(_) => None,
            }
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(bytes);
                let quoted: String = text.chars().take(MAX_QUOTED).collect();
                format!("no API error message: {quoted:?}")
            });
            return Err(ApiError::Status { status, message });
        }
        json.map_err(|e| ApiError::BadAnswer {
            host: self.address.clone(),
            detail: format!("not JSON: {e}"),
        })
    }
}

/// `host[:port]` as the `Host` header carries it.
fn url_authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// An error and its sources, `: `-separated (rustls' reason is a source of the I/O error).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<ApiClient, String> {
        ApiClient::new(url, "t0ken".into(), None, Duration::from_secs(5))
    }

    #[test]
    fn urls_keep_the_path_prefix_and_encode_queries() {
        let c = client("http://ui.example:8080/masif").unwrap();
        assert_eq!(c.address, "ui.example:8080");
        let url = c.url(&["pending"], &[("package", "a b&c=d".into())]);
        assert_eq!(
            url.as_str(),
            "http://ui.example:8080/masif/api/v1/pending?package=a+b%26c%3Dd"
        );
        assert_eq!(
            client("http://ui.example/")
                .unwrap()
                .url(&["agents", "we/ird?"], &[])
                .path(),
            "/api/v1/agents/we%2Fird%3F"
        );
        assert_eq!(client("http://[::1]:9/").unwrap().address, "[::1]:9");
    }

    #[test]
    fn unusable_urls_and_tokens_are_refused() {
        for (url, needle) in [
            ("ftp://x/", "expected http or https"),
            ("not a url", "--url"),
            ("http://u:p@x/", "no user name"),
            ("http://x/?a=b", "no user name, query"),
            ("https://x/", "needs a CA bundle"),
        ] {
            let e = client(url).err().unwrap();
            assert!(e.contains(needle), "{url}: {e}");
        }
        for token in ["", "a\nb", "a\rb"] {
            let e = ApiClient::new("http://x/", token.into(), None, Duration::from_secs(1));
            assert!(e.err().unwrap().contains("token"), "{token:?}");
        }
    }

    /// A hostile server on loopback: reads the request head, then writes `head` and `body_len`
    /// bytes of `x` (or nothing more when `head` is empty: a server that never answers).
    async fn hostile_server(head: &'static str, body_len: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            if head.is_empty() {
                std::future::pending::<()>().await;
            }
            tcp.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = body_len;
            while left > 0 {
                let n = left.min(chunk.len());
                if tcp.write_all(&chunk[..n]).await.is_err() {
                    return; // the client gave up reading, as it should
                }
                left -= n;
            }
        });
        url
    }

    #[tokio::test]
    async fn answers_over_the_size_cap_are_refused() {
        let too_big = MAX_ANSWER_BYTES + 1024;
        let head: &'static str = Box::leak(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {too_big}\r\n\r\n").into_boxed_str(),
        );
        let url = hostile_server(head, too_big).await;
        let c = client(&url).unwrap();
        let e = c.get(&c.url(&["agents"], &[])).await.unwrap_err();
        assert!(matches!(e, ApiError::Http { .. }), "{e}");
        assert!(e.to_string().contains("reading the answer"), "{e}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_non_json_answer_is_refused() {
        let url = hostile_server("", 0).await;
        let c = ApiClient::new(&url, "t".into(), None, Duration::from_millis(300)).unwrap();
        let e = c.get(&c.url(&["agents"], &[])).await.unwrap_err();
        assert!(matches!(e, ApiError::Timeout { .. }), "{e}");
        let url = hostile_server("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>", 0).await;
        let c = client(&url).unwrap();
        let e = c.get(&c.url(&["agents"], &[])).await.unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn error_answers_give_the_api_message_or_a_short_quote() {
        let c = client("http://x/").unwrap();
        let e = c
            .decode(StatusCode::NOT_FOUND, br#"{"error":"no agent web-9"}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "no agent web-9 (HTTP 404 Not Found)");
        let html = "<html>".repeat(1000);
        let e = c
            .decode(StatusCode::BAD_GATEWAY, html.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no API error message: \"<html>"), "{e}");
        assert!(e.len() < 300, "{e}");
        assert!(matches!(
            c.decode(StatusCode::OK, b"nope"),
            Err(ApiError::BadAnswer { .. })
        ));
        assert_eq!(
            c.decode(StatusCode::OK, br#"{"a":1}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
    }
}

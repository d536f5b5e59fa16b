//! The local monitoring API on a Unix socket (mode 0660): `GET /v1/load` (the original's
//! operation counters) and `GET /v1/status` (what the agent is doing, last report, last
//! error). Nothing here listens on the network.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::status::Monitor;
use crate::{Error, Result};

/// The JSON answers of the monitoring API.
pub use serde_json::Value as Json;

/// Mode of the socket file: owner and group may ask.
pub const SOCKET_MODE: u32 = 0o660;

/// Binds the socket at `path`: creates the parent directory, replaces a stale socket left by
/// a dead agent (never a live one, never a file that is not a socket), sets mode 0660.
pub fn bind(path: &Path) -> Result<UnixListener> {
    let io = |context: String| move |source| Error::Io { context, source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::Io {
                    context: format!("socket {}", path.display()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another agent is listening on it",
                    ),
                });
            }
            std::fs::remove_file(path)
                .map_err(io(format!("removing stale socket {}", path.display())))?;
        }
        Ok(_) => {
            return Err(Error::Io {
                context: format!("socket {}", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                ),
            })
        }
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).map_err(io(format!("binding socket {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(io(format!("setting mode of {}", path.display())))?;
    Ok(listener)
}

/// Serves the monitoring API until `shutdown` resolves, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    monitor: Monitor,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let path: Option<PathBuf> = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "monitoring socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let monitor = monitor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let monitor = monitor.clone();
                        async move { Ok::<_, Infallible>(handle(&monitor, &req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .max_buf_size(16 * 1024)
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = tokio::time::timeout(Duration::from_secs(60), conn).await {
                        tracing::debug!(error = %e, "monitoring connection timed out");
                    }
                });
            }
        }
    }
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Asks a running agent: `GET path` on its monitoring socket, the JSON answer (for tests,
/// monitoring plugins and `masif` admin commands), within 30 seconds.
pub async fn query(socket: &Path, path: &str) -> Result<Json> {
    query_within(socket, path, Duration::from_secs(30)).await
}

/// [`query`] with the whole exchange (connect, request, a body of at most 1 MiB) bounded by
/// `timeout`.
pub async fn query_within(socket: &Path, path: &str, timeout: Duration) -> Result<Json> {
    let fail = |detail: String| Error::Io {
        context: format!("monitoring socket {}", socket.display()),
        source: std::io::Error::other(detail),
    };
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(conn);
        let request = Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(fail(format!("GET {path}: {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("GET {path}: {e}")))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {} s", timeout.as_secs_f64())))?
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn handle(monitor: &Monitor, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match req.uri().path() {
        "/v1/load" => monitor.load_json().to_string(),
        "/v1/status" => serde_json::to_string(&monitor.status()).expect("status serialises"),
        _ => return json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into()),
    };
    if req.method() != Method::GET {
        let mut r = json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"only GET"}"#.into(),
        );
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return r;
    }
    json(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    async fn ask(path: &Path, request: &[u8]) -> String {
        let mut s = UnixStream::connect(path).await.unwrap();
        // The server may hang up before reading everything of a hostile request.
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    fn body(response: &str) -> serde_json::Value {
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn load_and_status_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/agent.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let monitor = Monitor::new();
        monitor.error("boom");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, monitor, async {
            let _ = rx.await;
        }));

        let load = ask(
            &path,
            b"GET /v1/load HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(load.starts_with("HTTP/1.1 200"), "{load}");
        let load = body(&load);
        for key in [
            "query",
            "install",
            "update",
            "configure",
            "remove",
            "purge",
            "error",
        ] {
            assert_eq!(load[key].as_array().unwrap().len(), 3, "{key}");
        }
        assert_eq!(load["error"], serde_json::json!([1.0, 1.0, 1.0]));

        let status = query(&path, "/v1/status").await.unwrap();
        assert_eq!(status["activity"], "starting");
        assert_eq!(status["last_error"]["message"], "boom");

        let r = ask(
            &path,
            b"POST /v1/load HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        let r = ask(
            &path,
            b"GET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = ask(&path, b"\x00\x01garbage\r\n\r\n").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        let huge = format!(
            "GET /v1/load HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(100_000)
        );
        let r = ask(&path, huge.as_bytes()).await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{r}");

        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(!path.exists(), "socket removed at shutdown");
        assert!(query(&path, "/v1/status").await.is_err());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_but_never_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let live = bind(&path).unwrap();
        let err = bind(&path).unwrap_err().to_string();
        assert!(err.contains("another agent is listening"), "{err}");
        drop(live);
        bind(&path).expect("stale socket replaced");

        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        let err = bind(&file).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}

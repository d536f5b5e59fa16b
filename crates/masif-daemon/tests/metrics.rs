//! The metrics listener over real sockets: `/metrics` with its content type, 404 elsewhere,
//! 405 for other methods, 503 when the exposition fails, junk and oversized requests refused
//! without harm; and the serving core's open-connection count.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use masif_daemon::metrics::{self, Exposition, CONTENT_TYPE};
use masif_daemon::serve::{self, Limits, OpenConnections, Transport};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const PATIENCE: Duration = Duration::from_secs(10);

/// A registry with one counter; `failing` makes the render fail.
struct Fixed {
    registry: Registry,
    failing: AtomicBool,
}

impl Exposition for Fixed {
    async fn render(&self) -> Result<String, String> {
        if self.failing.load(Ordering::Relaxed) {
            return Err("database out of reach".into());
        }
        Ok(metrics::encode(&self.registry))
    }
}

struct Server {
    addr: std::net::SocketAddr,
    exposition: Arc<Fixed>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc_by(7);
        registry.register("test_things", "Things seen", counter);
        let exposition = Arc::new(Fixed {
            registry,
            failing: AtomicBool::new(false),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(metrics::serve(listener, exposition.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            exposition,
            stop: Some(stop),
            task,
        }
    }

    /// Sends `raw` on a new connection and returns everything the server sent until it closed.
    async fn raw(&self, raw: &[u8]) -> String {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.write_all(raw).await.unwrap();
        let mut seen = Vec::new();
        tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut seen))
            .await
            .expect("the server did not close the connection")
            .ok();
        String::from_utf8_lossy(&seen).into_owned()
    }

    async fn request(&self, method: &str, path: &str) -> String {
        self.raw(
            format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn metrics_are_served_in_the_openmetrics_text_format() {
    let server = Server::start().await;
    let response = server.request("GET", "/metrics").await;
    assert_eq!(status(&response), "200", "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("content-type: {CONTENT_TYPE}")),
        "{response}"
    );
    assert!(
        response.contains("\r\n\r\n# HELP test_things Things seen.\n"),
        "{response}"
    );
    assert!(response.contains("\ntest_things_total 7\n"), "{response}");
    assert!(response.ends_with("# EOF\n"), "{response}");
    // A query string does not matter.
    let response = server.request("GET", "/metrics?x=1").await;
    assert_eq!(status(&response), "200", "{response}");
    let response = server.request("HEAD", "/metrics").await;
    assert_eq!(status(&response), "200", "{response}");
    assert!(!response.contains("test_things_total"), "{response}");
    server.stop().await;
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let server = Server::start().await;
    for path in ["/", "/metrics/", "/metricsx", "/v1/pending-tasks", "/%00"] {
        let response = server.request("GET", path).await;
        assert_eq!(status(&response), "404", "{path}: {response}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "BREW"] {
        let response = server.request(method, "/metrics").await;
        assert_eq!(status(&response), "405", "{method}: {response}");
        assert!(
            response.to_ascii_lowercase().contains("allow: get, head"),
            "{response}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_failing_exposition_is_503_and_the_next_scrape_recovers() {
    let server = Server::start().await;
    server.exposition.failing.store(true, Ordering::Relaxed);
    let response = server.request("GET", "/metrics").await;
    assert_eq!(status(&response), "503", "{response}");
    assert!(
        !response.contains("database"),
        "no reason leaks: {response}"
    );
    server.exposition.failing.store(false, Ordering::Relaxed);
    let response = server.request("GET", "/metrics").await;
    assert_eq!(status(&response), "200", "{response}");
    server.stop().await;
}

#[tokio::test]
async fn junk_and_oversized_requests_are_refused_and_the_listener_keeps_serving() {
    let server = Server::start().await;
    let huge_header = format!(
        "GET /metrics HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let cases: Vec<Vec<u8>> = vec![
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), // a TLS ClientHello
        b"hello\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n".to_vec(),
        vec![0xff; 300],
        huge_header.into_bytes(),
        b"POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
            .to_vec(),
    ];
    for raw in cases {
        let response = server.raw(&raw).await;
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 4"),
            "{:?} got {response:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(40)])
        );
    }
    let response = server.request("GET", "/metrics").await;
    assert_eq!(status(&response), "200", "{response}");
    server.stop().await;
}

#[tokio::test]
async fn open_connections_are_counted_while_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = OpenConnections::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve::serve_counting(
        listener,
        Transport::Plain,
        Limits::default(),
        NoContent,
        open.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let wait_for = |n: usize| {
        let open = open.clone();
        async move {
            tokio::time::timeout(PATIENCE, async {
                while open.get() != n {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("open connections stayed {} instead of {n}", open.get()));
        }
    };
    let mut first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    wait_for(2).await;
    drop(second);
    wait_for(1).await;
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    first.read_to_end(&mut seen).await.unwrap();
    wait_for(0).await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// A service answering every request with 204.
#[derive(Clone)]
struct NoContent;

impl tower_service::Service<http::Request<serve::Body>> for NoContent {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<http::Response<String>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<serve::Body>) -> Self::Future {
        let mut response = http::Response::new(String::new());
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        std::future::ready(Ok(response))
    }
}

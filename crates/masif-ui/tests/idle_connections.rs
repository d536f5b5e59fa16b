//! The UI keeps the master's protections: with 500 idle TCP connections held open against it,
//! a real headless Chromium still logs in, and the server's header deadline closes the idle
//! connections afterwards.

mod common;

use std::time::Duration;

use common::browser::{self, Driver};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE_CONNECTIONS: usize = 500;

/// Short enough for the test, long enough for a login on a busy machine.
const HEADER_DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_while_500_idle_connections_are_open() {
    let fx = Fixture::new("ui_idle_connections").await;
    fx.seed().await;
    // The browser first, so its start-up does not count against the deadline.
    let driver = Driver::start();
    let client = driver.client().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let limits = masif_ui::Limits {
        header_timeout: HEADER_DEADLINE,
        ..masif_ui::Limits::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(masif_ui::serve_with_limits(
        settings(),
        limits,
        fx.store.clone(),
        listener,
        async {
            stopped.await.ok();
        },
    ));
    // Serving: one answered request (the core has raised the open-file limit by then).
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    probe.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));

    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }

    browser::log_in(&client, &base, USER, PASSWORD).await;
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/", "the login did not land on the overview");
    assert!(
        client.source().await.unwrap().contains("perl"),
        "the overview lists no pending update"
    );

    // Every idle connection is still open: nothing to read yet, and no EOF.
    for (i, connection) in idle.iter().enumerate() {
        let mut byte = [0u8; 1];
        match connection.try_read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("idle connection {i} ended before the login finished: {other:?}"),
        }
    }

    // Then the header deadline closes them all (EOF, or a reset).
    let closing = idle.into_iter().map(|mut connection| async move {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(HEADER_DEADLINE * 3, connection.read_to_end(&mut rest)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    });
    let closed = futures_util::future::join_all(closing).await;
    let still_open = closed.iter().filter(|closed| !**closed).count();
    assert_eq!(
        still_open, 0,
        "idle connections outlived the header deadline"
    );

    client.close().await.unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

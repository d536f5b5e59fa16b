//! The UI served for real on a loopback port (the serving core, not `warp::test`), and raw
//! HTTP/1.1 requests to it, for what `warp::test` cannot send (e.g. a repeated header).

use std::net::SocketAddr;
use std::sync::Arc;

use masif_store::Store;
use masif_ui::{UiError, UiSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Served {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), UiError>>,
}

impl Served {
    pub async fn start(settings: UiSettings, store: Arc<dyn Store>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(masif_ui::serve_with_listener(
            settings,
            store,
            listener,
            async {
                stopped.await.ok();
            },
        ));
        Self { addr, stop, task }
    }

    /// Sends `head` (request line and headers, `\r\n`-separated, without the blank line) with
    /// `Connection: close` and returns the whole answer.
    pub async fn raw(&self, head: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        tcp.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

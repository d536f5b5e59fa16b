//! Shared fixtures of the agent's own integration tests: a stand-in master that speaks
//! `POST /v1/pending-tasks` over mutual TLS and approves by (package, action) patterns, with a
//! throwaway PKI. (The real master is exercised in `crates/masif/tests/agent_e2e.rs`; the
//! agent crate must not depend on it.)

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use masif_pki::TlsFiles;
use masif_proto::{parse_task_list, render_task_list, Action, TaskSet};
use masif_testkit::pki::{EphemeralCa, Usage};
use masif_testkit::sandbox::Sandbox;
use tokio::sync::oneshot;

pub const MASTER_CN: &str = "master.agent-tests.invalid";

/// A fixed answer: HTTP status and body.
pub type Canned = Arc<Mutex<Option<(u16, Vec<u8>)>>>;

/// Approves reported tasks whose (package, action) matches a pattern.
pub struct StandInMaster {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ca: EphemeralCa,
    approvals: Arc<Mutex<Vec<(String, Action)>>>,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    pub last_report: Arc<Mutex<Option<TaskSet>>>,
    /// Answer with `Connection: close`, so every report needs a new connection.
    pub close_connections: Arc<AtomicBool>,
    /// A fixed answer (status, body) instead of the approvals: a misbehaving master.
    pub canned: Canned,
    stop: Option<oneshot::Sender<()>>,
}

impl StandInMaster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = EphemeralCa::new("Agent Tests CA").unwrap();
        let cert = ca.issue(MASTER_CN, Usage::Server).unwrap();
        let files = ca
            .write_files(&dir.path().join("master"), &cert, None)
            .unwrap();
        let config = Arc::new(masif_pki::server_config(&files).unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let approvals: Arc<Mutex<Vec<(String, Action)>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let last_report: Arc<Mutex<Option<TaskSet>>> = Arc::default();
        let close_connections = Arc::new(AtomicBool::new(false));
        let canned: Canned = Arc::default();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (a, c, r, l, close, can) = (
            approvals.clone(),
            connections.clone(),
            requests.clone(),
            last_report.clone(),
            close_connections.clone(),
            canned.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let (acceptor, a, r, l, close, can) = (
                    acceptor.clone(),
                    a.clone(),
                    r.clone(),
                    l.clone(),
                    close.clone(),
                    can.clone(),
                );
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let (a, r, l, close, can) =
                            (a.clone(), r.clone(), l.clone(), close.clone(), can.clone());
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            let body = Limited::new(req.into_body(), 1 << 20)
                                .collect()
                                .await
                                .unwrap()
                                .to_bytes();
                            let tasks = parse_task_list(&body).unwrap();
                            *l.lock().unwrap() = Some(tasks.clone());
                            let approvals = a.lock().unwrap().clone();
                            let approved: TaskSet = tasks
                                .into_iter()
                                .filter(|t| {
                                    approvals.iter().any(|(p, act)| {
                                        t.package().as_str() == p && t.action() == *act
                                    })
                                })
                                .collect();
                            let mut response = match can.lock().unwrap().clone() {
                                Some((status, body)) => {
                                    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                                    r
                                }
                                None => hyper::Response::new(Full::new(Bytes::from(
                                    render_task_list(&approved),
                                ))),
                            };
                            if close.load(Ordering::SeqCst) {
                                response.headers_mut().insert(
                                    hyper::header::CONNECTION,
                                    hyper::header::HeaderValue::from_static("close"),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            dir,
            ca,
            approvals,
            connections,
            requests,
            last_report,
            close_connections,
            canned,
            stop: Some(stop),
        }
    }

    /// Client certificate files for an agent named `cn`.
    pub fn agent_files(&self, cn: &str) -> TlsFiles {
        let issued = self.ca.issue(cn, Usage::Client).unwrap();
        self.ca
            .write_files(&self.dir.path().join(cn), &issued, None)
            .unwrap()
    }

    pub fn approve(&self, package: &str, actions: &[Action]) {
        let mut a = self.approvals.lock().unwrap();
        for action in actions {
            a.push((package.into(), *action));
        }
    }
}

impl Drop for StandInMaster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` until it holds (a generous deadline against hangs under load, not a
/// timing assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1800 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// An agent configuration file for `tls` talking to `master`, planning in `sandbox`, with
/// all intervals `secs` seconds and the monitoring socket at `socket`.
pub fn agent_yaml(
    master: &StandInMaster,
    tls: &TlsFiles,
    sandbox: &Sandbox,
    socket: &Path,
    secs: u64,
) -> String {
    let env: Vec<String> = sandbox
        .apt_env()
        .iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    format!(
        "interval: {{ check: {secs}, report: {secs}, retry: {secs} }}\n\
         master: {{ host: \"{}\", cn: {MASTER_CN} }}\n\
         tls: {{ cert: {}, key: {}, ca: {} }}\n\
         apt: {{ env: {{ {} }} }}\n\
         socket: {}\n\
         log: {{ level: warning }}\n",
        master.addr,
        tls.cert.display(),
        tls.key.display(),
        tls.ca.display(),
        env.join(", "),
        socket.display()
    )
}

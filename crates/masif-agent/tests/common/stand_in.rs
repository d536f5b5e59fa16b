//! A stand-in master over real mutual TLS with a throwaway PKI: `POST /v1/pending-tasks`
//! always, `POST /v2/report` (held until an approval changes), `POST /v2/runs` and
//! `POST /v2/lease` once v2 is switched on (before that they answer 404, as the original
//! master does). It approves by (package, action) patterns, and can defer what it approves
//! (as maintenance windows and max in flight do) or give a lease with it. Several stand-ins
//! may share one CA (masters behind one name); one can be killed, its connections closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use masif_pki::TlsFiles;
use masif_proto::v2::{self, DeferReason, LeaseRequest, Report, ReportAnswer, Run};
use masif_proto::{parse_task_list, render_task_list, Action, TaskSet, PENDING_TASKS_PATH};
use masif_testkit::pki::{EphemeralCa, Usage};
use tokio::sync::{oneshot, Notify};

use super::approvals::Approvals;

pub const MASTER_CN: &str = "master.agent-tests.invalid";

/// What the stand-in holds and counts; its fields are read through [`StandInMaster`].
#[derive(Default)]
pub struct Shared {
    pub approvals: Approvals,
    changed: Notify,
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    /// Requests on `/v2/…` paths answered as v2 (not 404).
    pub v2_requests: AtomicUsize,
    /// Reports being held right now.
    pub held: AtomicUsize,
    pub last_report: Mutex<Option<TaskSet>>,
    pub last_v2_report: Mutex<Option<Report>>,
    pub runs: Mutex<Vec<Run>>,
    /// Answer with `Connection: close`, so every report needs a new connection.
    pub close_connections: AtomicBool,
    /// Serve `/v2/…` (else 404 there).
    pub v2: AtomicBool,
    /// A fixed answer (status, body) on `/v1/pending-tasks` instead of the approvals: a
    /// misbehaving master.
    pub canned: Mutex<Option<(u16, Vec<u8>)>>,
    /// Every request answered with this status and `Retry-After: SECONDS`: an overloaded
    /// master (ours answers 429 to too many reports from one agent, 503 when its queue is full).
    pub overloaded: Mutex<Option<(u16, u64)>>,
    /// When each request arrived, and whether it was answered as overloaded.
    pub arrivals: Mutex<Vec<(std::time::Instant, bool)>>,
    /// `/v2/lease` answers 404 (a master without leases).
    pub no_leases: AtomicBool,
    /// Every lease request, in order.
    pub leases: Mutex<Vec<LeaseRequest>>,
}

impl Shared {
    async fn handle(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_owned();
        let body = Limited::new(req.into_body(), 1 << 20)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let v2 = self.v2.load(Ordering::SeqCst);
        let overloaded = *self.overloaded.lock().unwrap();
        self.arrivals
            .lock()
            .unwrap()
            .push((std::time::Instant::now(), overloaded.is_some()));
        if let Some((status, secs)) = overloaded {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"busy")));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(secs),
            );
            return response;
        }
        let (status, body) = match path.as_str() {
            PENDING_TASKS_PATH => {
                let tasks = parse_task_list(&body).unwrap();
                *self.last_report.lock().unwrap() = Some(tasks.clone());
                match self.canned.lock().unwrap().clone() {
                    Some(canned) => canned,
                    None => (
                        200,
                        render_task_list(&self.approvals.answer(&tasks)).into_bytes(),
                    ),
                }
            }
            v2::REPORT_PATH if v2 => {
                self.v2_requests.fetch_add(1, Ordering::SeqCst);
                let report = Report::parse(&body).unwrap();
                *self.last_report.lock().unwrap() = Some(report.tasks.clone());
                *self.last_v2_report.lock().unwrap() = Some(report.clone());
                (200, self.held_answer(&report).await.render().into_bytes())
            }
            v2::LEASE_PATH if v2 && !self.no_leases.load(Ordering::SeqCst) => {
                self.v2_requests.fetch_add(1, Ordering::SeqCst);
                let request = LeaseRequest::parse(&body).unwrap();
                self.leases.lock().unwrap().push(request);
                let answer = match request {
                    LeaseRequest::Renew => r#"{"held":1,"lease_seconds":30}"#,
                    LeaseRequest::Release => r#"{"released":1}"#,
                };
                (200, answer.as_bytes().to_vec())
            }
            v2::RUNS_PATH if v2 => {
                self.v2_requests.fetch_add(1, Ordering::SeqCst);
                let runs = v2::parse_runs(&body).unwrap();
                self.runs.lock().unwrap().extend(runs);
                (200, b"{}".to_vec())
            }
            _ => (404, b"not found".to_vec()),
        };
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        if self.close_connections.load(Ordering::SeqCst) {
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        response
    }

    /// The answer to `report`, once what may run differs from what the agent knows or its
    /// wait is over.
    async fn held_answer(&self, report: &Report) -> ReportAnswer {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(report.wait_secs);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let answer = self.approvals.gated(&report.tasks);
            if report.wait_secs == 0 || answer.approved != report.approved {
                return answer;
            }
            self.held.fetch_add(1, Ordering::SeqCst);
            let woken = tokio::time::timeout_at(deadline, notified).await.is_ok();
            self.held.fetch_sub(1, Ordering::SeqCst);
            if !woken {
                return self.approvals.gated(&report.tasks);
            }
        }
    }
}

/// The stand-in, serving until dropped.
pub struct StandInMaster {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ca: Arc<EphemeralCa>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::ops::Deref for StandInMaster {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl StandInMaster {
    /// A master speaking v1 only, as the original does.
    pub async fn start() -> Self {
        Self::start_with(Arc::new(EphemeralCa::new("Agent Tests CA").unwrap())).await
    }

    /// Another master with a certificate for the same name from the same CA as `other`.
    pub async fn start_beside(other: &StandInMaster) -> Self {
        Self::start_with(other.ca.clone()).await
    }

    async fn start_with(ca: Arc<EphemeralCa>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = ca.issue(MASTER_CN, Usage::Server).unwrap();
        let files = ca
            .write_files(&dir.path().join("master"), &cert, None)
            .unwrap();
        let config = Arc::new(masif_pki::server_config(&files).unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let (stop, mut stopped) = oneshot::channel::<()>();
        let state = shared.clone();
        tokio::spawn(async move {
            // Dropped when the stand-in stops: every connection is closed with it.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                while connections.try_join_next().is_some() {}
                state.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, state) = (acceptor.clone(), state.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(state.handle(req).await) }
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
            shared,
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
        self.shared.approvals.approve(package, actions);
        self.shared.changed.notify_waiters();
    }

    /// Defers approved tasks from now on (`None`: approves them again), answering held
    /// reports whose outcome changed.
    pub fn defer(&self, deferral: Option<(DeferReason, Option<i64>)>) {
        self.shared.approvals.defer(deferral);
        self.shared.changed.notify_waiters();
    }

    pub fn leases(&self) -> Vec<LeaseRequest> {
        self.shared.leases.lock().unwrap().clone()
    }

    /// Stops it as a crash would: no more connections accepted, the open ones (a held
    /// report's too) closed without an answer.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
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

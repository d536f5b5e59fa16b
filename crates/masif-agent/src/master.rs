//! The agent's side of the wire protocol over mutual TLS (see `docs/protocol.md`): protocol v2
//! (`POST /v2/report`, which the master may hold until an approval changes, `POST /v2/runs`
//! and `POST /v2/lease`, renewing and releasing max-in-flight leases), and v1 (`POST /v1/pending-tasks`) for a master that answers 404 on v2.
//! The master's certificate is checked against `master.cn`, which may differ from the
//! dialled host.

mod conn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use masif_pki::TlsFiles;
use masif_proto::facts::Facts;
use masif_proto::v2::{self, LeaseRequest, Report, ReportAnswer, Run};
use masif_proto::{parse_task_list, render_task_list, ProtocolError, TaskSet, PENDING_TASKS_PATH};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Longest a report may take beyond the wait the master was allowed (connect, request,
/// answer), and longest a delivery of runs may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a lease renewal or release may take.
const LEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a master that answered 404 on v2 is spoken to with v1 before v2 is tried again.
const V1_RECHECK: Duration = Duration::from_secs(3600);

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
        /// Its `Retry-After` header in seconds, if it sent one.
        retry_after: Option<Duration>,
    },
    #[error("the master at {host} sent an invalid answer: {source}")]
    Answer { host: String, source: ProtocolError },
    #[error("the master at {host} did not answer within {} s", .timeout.as_secs())]
    Timeout { host: String, timeout: Duration },
    #[error("the master at {host} speaks protocol v1 only and cannot store run results")]
    V1Only { host: String },
}

impl MasterError {
    fn is_not_found(&self) -> bool {
        matches!(self, MasterError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// How long the master asked to be left alone: the `Retry-After` of a 429 (too many
    /// requests) or 503 (overloaded) answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MasterError::Status {
                status,
                retry_after,
                ..
            } if *status == StatusCode::TOO_MANY_REQUESTS
                || *status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                *retry_after
            }
            _ => None,
        }
    }
}

/// What the master said to a [`LeaseRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// Done: this many leases renewed (0: none left, they expired) or released.
    Done { leases: u64 },
    /// The master keeps no leases (it answered 404): stop asking.
    NoLeases,
}

/// A client of one master. Cheap to share (`Arc`); requests through it are serialised on its
/// one connection.
pub struct MasterClient {
    host: String,
    cn: String,
    server_name: ServerName<'static>,
    connector: Mutex<TlsConnector>,
    /// The files the configuration came from and their newest modification time: a renewed
    /// certificate or new CRL is picked up by the next connection, without a restart.
    files: Option<(TlsFiles, Mutex<SystemTime>)>,
    sender: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
    /// Until when the master is spoken to with v1 (it answered 404 on v2 before that).
    v1_until: Mutex<Option<Instant>>,
    /// The fall-back to v1 was logged at info (later ones go to debug).
    fallback_logged: AtomicBool,
}

impl std::fmt::Debug for MasterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterClient")
            .field("host", &self.host)
            .field("cn", &self.cn)
            .field("v2", &self.speaks_v2())
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
        client.files = Some((tls.clone(), Mutex::new(modified)));
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
            connector: Mutex::new(TlsConnector::from(config)),
            files: None,
            sender: tokio::sync::Mutex::new(None),
            v1_until: Mutex::new(None),
            fallback_logged: AtomicBool::new(false),
        })
    }

    /// The `host:port` dialled.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the next request uses protocol v2: always, unless the master answered 404 on
    /// v2 within the last hour.
    pub fn speaks_v2(&self) -> bool {
        let until = self.v1_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_none_or(|t| Instant::now() >= t)
    }

    /// Reports the pending `tasks` and returns the master's answer: those approved to run
    /// now and those approved but deferred by the roll-out controls (only tasks that were
    /// reported count). With v2 the master may hold the answer up to `wait` while its
    /// approvals equal `known` (those of `known` not in `tasks` are left out), and `facts`
    /// go with the report; a master that answers 404 gets the v1 report instead (no facts,
    /// nothing deferred), at once.
    pub async fn report(
        &self,
        tasks: &TaskSet,
        known: &TaskSet,
        wait: Duration,
        facts: Option<&Facts>,
    ) -> Result<ReportAnswer, MasterError> {
        if self.speaks_v2() {
            match self.report_v2(tasks, known, wait, facts).await {
                Err(e) if e.is_not_found() => self.fall_back(v2::REPORT_PATH),
                answer => {
                    if answer.is_ok() {
                        self.v2_answered();
                    }
                    return answer;
                }
            }
        }
        self.report_v1(tasks).await
    }

    /// Delivers run results (at most [`v2::MAX_RUNS`]). A master speaking v1 only cannot
    /// store them: [`MasterError::V1Only`].
    pub async fn send_runs(&self, runs: &[Run]) -> Result<(), MasterError> {
        if !self.speaks_v2() {
            return Err(self.v1_only());
        }
        let body = v2::render_runs(runs);
        match self.post(v2::RUNS_PATH, body, REPORT_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                self.fall_back(v2::RUNS_PATH);
                Err(self.v1_only())
            }
            Err(e) => Err(e),
        }
    }

    /// Renews or releases this agent's max-in-flight leases (`POST /v2/lease`). A 404 is
    /// [`LeaseAnswer::NoLeases`], not a reason to speak v1.
    pub async fn lease(&self, request: LeaseRequest) -> Result<LeaseAnswer, MasterError> {
        let bytes = match self
            .post(v2::LEASE_PATH, request.render(), LEASE_TIMEOUT)
            .await
        {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(LeaseAnswer::NoLeases),
            Err(e) => return Err(e),
        };
        let field = match request {
            LeaseRequest::Renew => "held",
            LeaseRequest::Release => "released",
        };
        let leases = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|answer| answer.get(field)?.as_u64())
            .ok_or_else(|| {
                self.invalid(ProtocolError::Field {
                    field: field.into(),
                    reason: "is missing or not a non-negative integer".into(),
                })
            })?;
        Ok(LeaseAnswer::Done { leases })
    }

    async fn report_v2(
        &self,
        tasks: &TaskSet,
        known: &TaskSet,
        wait: Duration,
        facts: Option<&Facts>,
    ) -> Result<ReportAnswer, MasterError> {
        let wait_secs = wait.as_secs().min(v2::MAX_WAIT_SECS);
        let report = Report {
            tasks: tasks.clone(),
            approved: known.intersection(tasks).cloned().collect(),
            wait_secs,
            facts: facts.cloned(),
        };
        let timeout = Duration::from_secs(wait_secs) + REPORT_TIMEOUT;
        let bytes = self.post(v2::REPORT_PATH, report.render(), timeout).await?;
        let answer = ReportAnswer::parse(&bytes).map_err(|source| self.invalid(source))?;
        Ok(only_reported(answer, tasks))
    }

    async fn report_v1(&self, tasks: &TaskSet) -> Result<ReportAnswer, MasterError> {
        let body = render_task_list(tasks);
        let bytes = self.post(PENDING_TASKS_PATH, body, REPORT_TIMEOUT).await?;
        let approved = parse_task_list(&bytes).map_err(|source| self.invalid(source))?;
        Ok(only_reported(ReportAnswer::approving(approved), tasks))
    }

    /// The master answered 404 on `path`: speak v1 for an hour, saying so once at info.
    fn fall_back(&self, path: &str) {
        *self.v1_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + V1_RECHECK);
        if self.fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(host = %self.host, path, "the master still speaks protocol v1 only");
        } else {
            tracing::info!(
                host = %self.host,
                path,
                "the master answered 404: it speaks protocol v1 only; reporting to {PENDING_TASKS_PATH} \
                 without waiting for approvals or sending run results, trying v2 again in an hour"
            );
        }
    }

    /// A v2 report was answered: if the master spoke v1 before, say that it speaks v2 now.
    fn v2_answered(&self) {
        let before = self
            .v1_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if before.is_some() {
            tracing::info!(host = %self.host, "the master speaks protocol v2 now");
            self.fallback_logged.store(false, Ordering::Relaxed);
        }
    }

    fn v1_only(&self) -> MasterError {
        MasterError::V1Only {
            host: self.host.clone(),
        }
    }

    fn invalid(&self, source: ProtocolError) -> MasterError {
        MasterError::Answer {
            host: self.host.clone(),
            source,
        }
    }
}

/// Approvals of tasks that were never reported do not count, and a task both approved and
/// deferred counts as approved. With nothing deferred, no reason or time is kept.
fn only_reported(mut answer: ReportAnswer, tasks: &TaskSet) -> ReportAnswer {
    answer.approved.retain(|t| tasks.contains(t));
    let approved = &answer.approved;
    answer
        .deferred
        .retain(|t| tasks.contains(t) && !approved.contains(t));
    if answer.deferred.is_empty() {
        answer.reason = None;
        answer.not_before = None;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> MasterClient {
        let config = rustls::ClientConfig::builder_with_provider(masif_pki::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        MasterClient::with_config(Arc::new(config), "127.0.0.1:1", "master.invalid").unwrap()
    }

    #[test]
    fn only_reported_tasks_count_and_approved_wins_over_deferred() {
        let task = |p: &str| {
            let package = masif_proto::PackageName::new(p).unwrap();
            let to = masif_proto::Version::new("2").unwrap();
            masif_proto::Task::new(package, masif_proto::Action::Install, None, Some(to)).unwrap()
        };
        let (a, b, c) = (task("a"), task("b"), task("c"));
        let answer = ReportAnswer {
            approved: [a.clone(), c.clone()].into(),
            deferred: [a.clone(), b.clone()].into(),
            reason: Some(v2::DeferReason::Window),
            not_before: Some(7),
            lease_seconds: Some(60),
        };
        let kept = only_reported(answer.clone(), &[a.clone(), b.clone()].into());
        assert_eq!(kept.approved, [a.clone()].into());
        assert_eq!(kept.deferred, [b].into());
        assert_eq!((kept.reason, kept.not_before), (answer.reason, Some(7)));
        // Nothing deferred among the reported tasks: no reason, no time; the lease stays.
        let kept = only_reported(answer, &[a.clone()].into());
        assert_eq!((kept.approved, kept.deferred.len()), ([a].into(), 0));
        assert_eq!(
            (kept.reason, kept.not_before, kept.lease_seconds),
            (None, None, Some(60))
        );
    }

    #[test]
    fn a_v1_master_is_asked_for_v2_again_after_an_hour() {
        let c = client();
        assert!(c.speaks_v2(), "v2 first");
        c.fall_back(v2::REPORT_PATH);
        assert!(!c.speaks_v2());
        let until = c.v1_until.lock().unwrap().unwrap();
        assert!(until > Instant::now() + V1_RECHECK - Duration::from_secs(60));
        // An hour later:
        *c.v1_until.lock().unwrap() = Some(Instant::now());
        assert!(c.speaks_v2());
        c.v2_answered();
        assert!(c.v1_until.lock().unwrap().is_none());
    }
}

//! The agent's side of the wire protocol over mutual TLS (see `docs/protocol.md`): protocol v2
//! (`POST /v2/report`, which the master may hold until an approval changes, `POST /v2/runs`
//! and `POST /v2/lease`, renewing and releasing max-in-flight leases), and v1 (`POST /v1/pending-tasks`) for a master that answers 404 on v2.
//! The master's certificate is checked against `master.cn`, which may differ from the
//! dialled host. With several masters (`master.hosts`), a request the master in use cannot
//! answer goes to the next one (`hosts`).

mod conn;
mod hosts;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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

use hosts::{switch_pause, Masters, MAX_SWITCH_PAUSE};

/// Longest a report may take beyond the wait the master was allowed (connect, request,
/// answer), and longest a delivery of runs may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a lease renewal or release may take.
const LEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a report did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("master.cn {0:?} is not a valid certificate name")]
    BadName(String),
    #[error("no master to talk to (master.hosts is empty)")]
    NoMasters,
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
    /// Several masters were tried and none answered; each error names its master.
    #[error("no master answered: {}", list(.0))]
    NoneAnswered(Vec<MasterError>),
}

fn list(errors: &[MasterError]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

impl MasterError {
    fn is_not_found(&self) -> bool {
        matches!(self, MasterError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// Whether the master could not answer at all and the next one should be asked: it
    /// could not be reached or failed the TLS handshake, the connection broke (a held report
    /// included) or timed out, or a proxy in front of it said so (502, 503, 504).
    pub fn is_unavailable(&self) -> bool {
        match self {
            MasterError::Connect { .. }
            | MasterError::NameMismatch { .. }
            | MasterError::Handshake { .. }
            | MasterError::Http { .. }
            | MasterError::Timeout { .. } => true,
            MasterError::Status { status, .. } => matches!(
                *status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            _ => false,
        }
    }

    /// How long the master asked to be left alone: the `Retry-After` of a 429 (too many
    /// requests) or 503 (overloaded) answer; when no master answered, the shortest any of
    /// them asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MasterError::NoneAnswered(errors) => {
                errors.iter().filter_map(MasterError::retry_after).min()
            }
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

/// A client of the masters. Cheap to share (`Arc`); requests through it are serialised on its
/// one connection, to the master in use.
pub struct MasterClient {
    masters: Masters,
    cn: String,
    server_name: ServerName<'static>,
    connector: Mutex<TlsConnector>,
    /// The files the configuration came from and their newest modification time: a renewed
    /// certificate or new CRL is picked up by the next connection, without a restart.
    files: Option<(TlsFiles, Mutex<SystemTime>)>,
    /// The kept-alive connection and the index of the master it goes to.
    sender: tokio::sync::Mutex<Option<(usize, SendRequest<Full<Bytes>>)>>,
    /// Longest random pause before a request goes to the next master.
    switch_pause: Duration,
}

impl std::fmt::Debug for MasterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterClient")
            .field("hosts", &self.masters.hosts().collect::<Vec<_>>())
            .field("in_use", &self.host())
            .field("cn", &self.cn)
            .field("v2", &self.speaks_v2())
            .finish_non_exhaustive()
    }
}

impl MasterClient {
    /// A client presenting the certificate of `tls`, dialling one of `hosts` (`name:port`
    /// each, at least one; the first one used is drawn at random) and requiring the masters'
    /// certificates to be valid for `cn`.
    pub fn new(tls: &TlsFiles, hosts: &[impl AsRef<str>], cn: &str) -> Result<Self, MasterError> {
        let modified = tls.newest_modification()?;
        let config = masif_pki::client_config(tls)?;
        let mut client = Self::with_config(Arc::new(config), hosts, cn)?;
        client.files = Some((tls.clone(), Mutex::new(modified)));
        Ok(client)
    }

    /// The same with a ready rustls configuration.
    pub fn with_config(
        config: Arc<rustls::ClientConfig>,
        hosts: &[impl AsRef<str>],
        cn: &str,
    ) -> Result<Self, MasterError> {
        let server_name =
            ServerName::try_from(cn.to_owned()).map_err(|_| MasterError::BadName(cn.into()))?;
        if hosts.is_empty() {
            return Err(MasterError::NoMasters);
        }
        let hosts: Vec<&str> = hosts.iter().map(AsRef::as_ref).collect();
        Ok(Self {
            masters: Masters::new(&hosts, &mut rand::rng()),
            cn: cn.to_owned(),
            server_name,
            connector: Mutex::new(TlsConnector::from(config)),
            files: None,
            sender: tokio::sync::Mutex::new(None),
            switch_pause: MAX_SWITCH_PAUSE,
        })
    }

    /// Pauses at most `max` (instead of a few seconds) before a request goes to the next
    /// master; the pause is random in `0..=max`.
    pub fn with_switch_pause(mut self, max: Duration) -> Self {
        self.switch_pause = max;
        self
    }

    /// The `host:port` of the master in use.
    pub fn host(&self) -> &str {
        &self.masters.get(self.masters.in_use()).host
    }

    /// Whether the next request uses protocol v2: always, unless the master in use answered
    /// 404 on v2 within the last hour.
    pub fn speaks_v2(&self) -> bool {
        self.masters.get(self.masters.in_use()).speaks_v2()
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
        self.on_a_master(|m| self.report_to(m, tasks, known, wait, facts))
            .await
    }

    /// Delivers run results (at most [`v2::MAX_RUNS`]). A master speaking v1 only cannot
    /// store them: [`MasterError::V1Only`].
    pub async fn send_runs(&self, runs: &[Run]) -> Result<(), MasterError> {
        let body = v2::render_runs(runs);
        self.on_a_master(|m| self.send_runs_to(m, body.clone()))
            .await
    }

    /// Renews or releases this agent's max-in-flight leases (`POST /v2/lease`). A 404 is
    /// [`LeaseAnswer::NoLeases`], not a reason to speak v1.
    pub async fn lease(&self, request: LeaseRequest) -> Result<LeaseAnswer, MasterError> {
        self.on_a_master(|m| self.lease_to(m, request)).await
    }

    /// Runs `request` on the master in use; while a master cannot answer
    /// ([`MasterError::is_unavailable`]), on the next one after a random pause, each master
    /// at most once. The last master that answered stays in use. With one master its error
    /// is returned as it is; with several, [`MasterError::NoneAnswered`] lists them all.
    async fn on_a_master<T, F, Fut>(&self, mut request: F) -> Result<T, MasterError>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, MasterError>>,
    {
        let mut tried = vec![false; self.masters.len()];
        let mut errors = Vec::new();
        let mut m = self.masters.in_use();
        loop {
            tried[m] = true;
            let error = match request(m).await {
                Err(e) if e.is_unavailable() => e,
                answer => return answer,
            };
            let Some(next) = self.masters.next(m, &tried) else {
                errors.push(error);
                return Err(match errors.len() {
                    1 => errors.remove(0),
                    _ => MasterError::NoneAnswered(errors),
                });
            };
            let pause = switch_pause(self.switch_pause, &mut rand::rng());
            tracing::warn!(
                error = %error,
                next = %self.masters.get(next).host,
                pause_ms = pause.as_millis() as u64,
                "the master did not answer; switching to the next one"
            );
            errors.push(error);
            tokio::time::sleep(pause).await;
            m = next;
        }
    }

    async fn report_to(
        &self,
        m: usize,
        tasks: &TaskSet,
        known: &TaskSet,
        wait: Duration,
        facts: Option<&Facts>,
    ) -> Result<ReportAnswer, MasterError> {
        let master = self.masters.get(m);
        if master.speaks_v2() {
            match self.report_v2(m, tasks, known, wait, facts).await {
                Err(e) if e.is_not_found() => master.fall_back(v2::REPORT_PATH),
                answer => {
                    if answer.is_ok() {
                        master.v2_answered();
                    }
                    return answer;
                }
            }
        }
        self.report_v1(m, tasks).await
    }

    async fn send_runs_to(&self, m: usize, body: String) -> Result<(), MasterError> {
        let master = self.masters.get(m);
        if !master.speaks_v2() {
            return Err(self.v1_only(m));
        }
        match self.post(m, v2::RUNS_PATH, body, REPORT_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                master.fall_back(v2::RUNS_PATH);
                Err(self.v1_only(m))
            }
            Err(e) => Err(e),
        }
    }

    async fn lease_to(&self, m: usize, request: LeaseRequest) -> Result<LeaseAnswer, MasterError> {
        let bytes = match self
            .post(m, v2::LEASE_PATH, request.render(), LEASE_TIMEOUT)
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
                self.invalid(
                    m,
                    ProtocolError::Field {
                        field: field.into(),
                        reason: "is missing or not a non-negative integer".into(),
                    },
                )
            })?;
        Ok(LeaseAnswer::Done { leases })
    }

    async fn report_v2(
        &self,
        m: usize,
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
        let bytes = self
            .post(m, v2::REPORT_PATH, report.render(), timeout)
            .await?;
        let answer = ReportAnswer::parse(&bytes).map_err(|source| self.invalid(m, source))?;
        Ok(only_reported(answer, tasks))
    }

    async fn report_v1(&self, m: usize, tasks: &TaskSet) -> Result<ReportAnswer, MasterError> {
        let body = render_task_list(tasks);
        let bytes = self
            .post(m, PENDING_TASKS_PATH, body, REPORT_TIMEOUT)
            .await?;
        let approved = parse_task_list(&bytes).map_err(|source| self.invalid(m, source))?;
        Ok(only_reported(ReportAnswer::approving(approved), tasks))
    }

    fn v1_only(&self, m: usize) -> MasterError {
        MasterError::V1Only {
            host: self.masters.get(m).host.clone(),
        }
    }

    fn invalid(&self, m: usize, source: ProtocolError) -> MasterError {
        MasterError::Answer {
            host: self.masters.get(m).host.clone(),
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

    fn client(hosts: &[&str]) -> MasterClient {
        let config = rustls::ClientConfig::builder_with_provider(masif_pki::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        MasterClient::with_config(Arc::new(config), hosts, "master.invalid").unwrap()
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
    fn the_fall_back_to_v1_is_decided_per_master() {
        let c = client(&["127.0.0.1:1", "127.0.0.1:2"]);
        let first = c.masters.in_use();
        c.masters.get(first).fall_back(v2::REPORT_PATH);
        assert!(!c.speaks_v2());
        assert!(c.masters.next(first, &[true, true]).is_none());
        let mut tried = [false, false];
        tried[first] = true;
        let other = c.masters.next(first, &tried).unwrap();
        assert_eq!(c.host(), format!("127.0.0.1:{}", other + 1));
        assert!(c.speaks_v2(), "the other master was never asked");
    }

    #[test]
    fn an_empty_list_of_masters_is_refused() {
        let config = rustls::ClientConfig::builder_with_provider(masif_pki::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let none: [&str; 0] = [];
        let err = MasterClient::with_config(Arc::new(config), &none, "m.invalid").unwrap_err();
        assert!(matches!(err, MasterError::NoMasters), "{err:?}");
    }
}

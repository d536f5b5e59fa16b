//! The agent's observable state, shared between the loop and the monitoring socket: what it
//! is doing now, the last report and error, and the operation counters.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::load::{Load, OpKind};
use masif_proto::v2::DeferReason;

/// What the agent is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "activity", rename_all = "snake_case")]
pub enum Activity {
    Starting,
    Planning,
    Reporting,
    Executing {
        package: String,
    },
    WaitingForLock {
        package: String,
    },
    /// A report the master holds until an approval changes, or `until`.
    WaitingForApproval {
        until: i64,
    },
    Sleeping {
        until: i64,
    },
    Stopping,
}

/// The last error seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastError {
    pub time: i64,
    pub message: String,
}

/// The last run of an approved plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRun {
    pub id: String,
    pub package: String,
    /// `succeeded`, `failed` or `plan-changed`.
    pub outcome: String,
    /// Unix seconds.
    pub started_at: i64,
    pub duration_ms: u64,
    /// apt-get's exit code; `None` if it did not run or was killed by a signal.
    pub exit_code: Option<i32>,
}

/// Why approved tasks wait, as the master said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deferral {
    pub(crate) reason: Option<DeferReason>,
    /// When the maintenance window opens (unix seconds, the master's clock).
    pub(crate) not_before: Option<i64>,
}

/// The body of `GET /v1/status` (read back by `masif-agent check`; fields added after the
/// first release are optional there, so a check still reads an agent not yet restarted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// This agent's name: the CN of its client certificate.
    pub agent: Option<String>,
    /// The `host:port` of the master in use (with several masters, the one the last report
    /// went to).
    pub master: Option<String>,
    #[serde(flatten)]
    pub activity: Activity,
    /// When the current activity began (unix seconds).
    pub since: i64,
    /// When the agent started (unix seconds).
    #[serde(default)]
    pub started_at: Option<i64>,
    /// Last successful report to the master (unix seconds).
    pub last_report: Option<i64>,
    /// Last report attempt, successful or not (unix seconds).
    pub last_report_attempt: Option<i64>,
    pub last_error: Option<LastError>,
    /// Tasks waiting for an approval (as last reported).
    pub pending_tasks: usize,
    /// Tasks known to be approved and not yet done.
    pub approved_tasks: usize,
    /// Since when `approved_tasks` has not been 0 (unix seconds); `None` while it is 0.
    #[serde(default)]
    pub approved_since: Option<i64>,
    /// Tasks approved but deferred by the master's roll-out controls: not run until it says
    /// so (not counted in `approved_tasks` or `pending_tasks`).
    #[serde(default)]
    pub deferred_tasks: usize,
    /// Why they wait: `window` (outside every maintenance window of the host's tags) or
    /// `max-in-flight` (a tag has its most hosts upgrading); `None` when none wait.
    #[serde(default)]
    pub deferred_reason: Option<String>,
    /// When the maintenance window opens (unix seconds, the master's clock), if known.
    #[serde(default)]
    pub not_before: Option<i64>,
    /// Packages whose last upgrade failed (retried after the retry interval).
    pub failed_packages: BTreeSet<String>,
    /// Of those, the ones given up after `max_failures` failed runs in a row (tried again
    /// once approved anew or when their plan changes).
    pub given_up_packages: BTreeSet<String>,
    pub last_run: Option<LastRun>,
    /// Upgrade runs that changed the system since start.
    pub upgrades_done: u64,
    /// Successful reports since start.
    pub reports: u64,
    /// The protocol version the last successful report used: 2, or 1 against a master that
    /// speaks v1 only (the original, or ours with `api.v2: false`).
    pub protocol: Option<u8>,
    /// Whether the reboot-required file exists (the agent never reboots).
    pub reboot_required: bool,
    /// Packages dpkg holds: never upgraded, even if approved.
    pub held: BTreeSet<String>,
    /// What `dpkg --audit` last reported (packages left unfinished, e.g. by an interrupted
    /// dpkg); `None` when it found nothing.
    pub dpkg_audit: Option<String>,
}

#[derive(Debug)]
struct Inner {
    report: StatusReport,
    load: Load,
}

/// A cloneable handle on the agent's state.
#[derive(Debug, Clone)]
pub struct Monitor {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new()
    }
}

/// Now, in unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Monitor {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                report: StatusReport {
                    agent: None,
                    master: None,
                    activity: Activity::Starting,
                    since: unix_now(),
                    started_at: Some(unix_now()),
                    last_report: None,
                    last_report_attempt: None,
                    last_error: None,
                    pending_tasks: 0,
                    approved_tasks: 0,
                    approved_since: None,
                    deferred_tasks: 0,
                    deferred_reason: None,
                    not_before: None,
                    failed_packages: BTreeSet::new(),
                    given_up_packages: BTreeSet::new(),
                    last_run: None,
                    upgrades_done: 0,
                    reports: 0,
                    protocol: None,
                    reboot_required: false,
                    held: BTreeSet::new(),
                    dpkg_audit: None,
                },
                load: Load::default(),
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// Who this agent is and whom it reports to, for `/v1/status`.
    pub fn set_identity(&self, agent: Option<String>, master: &str) {
        self.with(|i| {
            i.report.agent = agent;
            i.report.master = Some(master.to_owned());
        });
    }

    /// The master in use now.
    pub(crate) fn set_master(&self, master: &str) {
        self.with(|i| {
            if i.report.master.as_deref() != Some(master) {
                i.report.master = Some(master.to_owned());
            }
        });
    }

    pub fn set_activity(&self, activity: Activity) {
        self.with(|i| {
            if i.report.activity != activity {
                i.report.activity = activity;
                i.report.since = unix_now();
            }
        });
    }

    /// A report ended: `protocol` is the version a successful one used, `None` for a failure.
    pub fn report_attempted(&self, protocol: Option<u8>, pending: usize) {
        self.with(|i| {
            let now = unix_now();
            i.report.last_report_attempt = Some(now);
            if protocol.is_some() {
                i.report.last_report = Some(now);
                i.report.pending_tasks = pending;
                i.report.reports += 1;
                i.report.protocol = protocol;
            }
        });
    }

    pub fn set_counts(
        &self,
        approved: usize,
        failed: impl IntoIterator<Item = String>,
        given_up: impl IntoIterator<Item = String>,
    ) {
        self.with(|i| {
            i.report.approved_since = match approved {
                0 => None,
                _ => i.report.approved_since.or(Some(unix_now())),
            };
            i.report.approved_tasks = approved;
            i.report.failed_packages = failed.into_iter().collect();
            i.report.given_up_packages = given_up.into_iter().collect();
        });
    }

    /// The approved tasks the master deferred, and why.
    pub(crate) fn set_deferred(&self, count: usize, deferral: Deferral) {
        self.with(|i| {
            i.report.deferred_tasks = count;
            let shown = (count > 0).then_some(deferral);
            i.report.deferred_reason = shown.and_then(|d| d.reason).map(|r| r.as_str().to_owned());
            i.report.not_before = shown.and_then(|d| d.not_before);
        });
    }

    /// The host's facts shown on `/v1/status`.
    pub(crate) fn set_facts(&self, reboot_required: bool, held: impl IntoIterator<Item = String>) {
        self.with(|i| {
            i.report.reboot_required = reboot_required;
            i.report.held = held.into_iter().collect();
        });
    }

    /// What `dpkg --audit` reports now (`None`: nothing).
    pub(crate) fn set_dpkg_audit(&self, findings: Option<String>) {
        self.with(|i| i.report.dpkg_audit = findings);
    }

    pub(crate) fn last_run(&self, run: &masif_proto::v2::Run) {
        self.with(|i| {
            i.report.last_run = Some(LastRun {
                id: run.id.as_str().to_owned(),
                package: run.package.to_string(),
                outcome: run.outcome.to_string(),
                started_at: run.started_at,
                duration_ms: run.duration_ms,
                exit_code: run.exit_code,
            })
        });
    }

    pub fn upgrade_done(&self) {
        self.with(|i| i.report.upgrades_done += 1);
    }

    /// Records an error: last error, and one `error` operation.
    pub fn error(&self, message: impl Into<String>) {
        let now = Instant::now();
        self.with(|i| {
            i.report.last_error = Some(LastError {
                time: unix_now(),
                message: message.into(),
            });
            i.load.record(OpKind::Error, now, now);
        });
    }

    pub fn record(&self, kind: OpKind, start: Instant, end: Instant) {
        self.with(|i| i.load.record(kind, start, end));
    }

    pub fn status(&self) -> StatusReport {
        self.with(|i| i.report.clone())
    }

    pub fn load_json(&self) -> serde_json::Value {
        let snap = self.with(|i| i.load.snapshot(Instant::now()));
        serde_json::to_value(snap).expect("plain numbers serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_names_the_activity_and_the_last_error() {
        let m = Monitor::new();
        m.set_activity(Activity::Executing {
            package: "alpha".into(),
        });
        m.error("upgrading zeta failed");
        let json = serde_json::to_value(m.status()).unwrap();
        assert_eq!(json["activity"], "executing");
        assert_eq!(json["package"], "alpha");
        assert_eq!(json["last_error"]["message"], "upgrading zeta failed");
        assert_eq!(json["last_report"], serde_json::Value::Null);
        assert_eq!(m.load_json()["error"][0], 1.0);
    }

    #[test]
    fn approved_since_is_kept_while_approved_tasks_wait() {
        let m = Monitor::new();
        assert!(m.status().started_at.is_some());
        assert_eq!(m.status().approved_since, None);
        m.set_counts(2, [], []);
        let since = m
            .status()
            .approved_since
            .expect("set with the first approved task");
        m.inner.lock().unwrap().report.approved_since = Some(since - 100);
        m.set_counts(1, ["alpha".to_owned()], []);
        assert_eq!(m.status().approved_since, Some(since - 100));
        m.set_counts(0, [], []);
        assert_eq!(m.status().approved_since, None);
    }

    #[test]
    fn status_reads_back_from_its_json() {
        let m = Monitor::new();
        m.set_identity(Some("web01".into()), "master:8150");
        m.set_activity(Activity::WaitingForApproval { until: 42 });
        m.set_counts(3, ["alpha".to_owned()], []);
        let json = serde_json::to_string(&m.status()).unwrap();
        let back: StatusReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.activity, Activity::WaitingForApproval { until: 42 });
        assert_eq!(back.approved_tasks, 3);
        assert_eq!(back.failed_packages.len(), 1);
        // An agent of the first release leaves the newer fields out.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("started_at");
        old.as_object_mut().unwrap().remove("approved_since");
        old.as_object_mut().unwrap().remove("deferred_tasks");
        let back: StatusReport = serde_json::from_value(old).unwrap();
        assert_eq!((back.started_at, back.approved_since), (None, None));
        assert_eq!(back.deferred_tasks, 0);
    }

    #[test]
    fn deferral_shows_while_tasks_wait() {
        let m = Monitor::new();
        let window = Deferral {
            reason: Some(DeferReason::Window),
            not_before: Some(1_796_763_600),
        };
        m.set_deferred(3, window);
        let json = serde_json::to_value(m.status()).unwrap();
        assert_eq!(
            (
                &json["deferred_tasks"],
                &json["deferred_reason"],
                &json["not_before"]
            ),
            (&3.into(), &"window".into(), &1_796_763_600.into())
        );
        m.set_deferred(0, window);
        let json = serde_json::to_value(m.status()).unwrap();
        assert_eq!(json["deferred_tasks"], 0);
        assert!(json["deferred_reason"].is_null() && json["not_before"].is_null());
    }
}

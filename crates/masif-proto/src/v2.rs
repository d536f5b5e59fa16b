//! The v2 wire format: a report that may wait for a change of approvals (long-poll), and the
//! results of package runs. Bodies are JSON objects. Known fields are checked as strictly as
//! v1's tasks; unknown fields are ignored, because v2 only ever gains optional fields (anything
//! incompatible gets new `/v3/` paths).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::facts::Facts;
use crate::task::{quote, PackageName, TaskSet, MAX_QUOTE_CHARS};
use crate::wire::{parse_tasks, wire_tasks, ProtocolError, WireTask};

/// Agents POST a [`Report`] here and get a [`ReportAnswer`]; a 404 means the master speaks v1 only.
pub const REPORT_PATH: &str = "/v2/report";
/// Agents POST a [`Runs`] body here.
pub const RUNS_PATH: &str = "/v2/runs";
/// Agents POST a [`LeaseRequest`] here: renew or release their max-in-flight leases.
pub const LEASE_PATH: &str = "/v2/lease";
/// Longest wait an agent may ask for (seconds); the master may answer sooner.
pub const MAX_WAIT_SECS: u64 = 3600;
/// Most bytes of a run's output (its last lines).
pub const MAX_OUTPUT_BYTES: usize = 4096;
/// Most runs in one [`Runs`] body.
pub const MAX_RUNS: usize = 50;
/// Most characters of a run id.
pub const MAX_RUN_ID_CHARS: usize = 64;
/// Longest run duration accepted (milliseconds): 30 days.
const MAX_DURATION_MS: u64 = 30 * 24 * 3600 * 1000;
/// Latest start time accepted (unix seconds): the year 9999.
const MAX_STARTED_AT: i64 = 253_402_300_799;

/// A v2 report: every task the agent's plan needs, the subset it holds as approved, and how
/// long it may wait for that subset to change before the answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub tasks: TaskSet,
    /// The approvals the agent knows of; each must be one of `tasks`.
    pub approved: TaskSet,
    /// Seconds the master may hold the answer while the approvals equal `approved`
    /// (0: answer at once). At most [`MAX_WAIT_SECS`].
    pub wait_secs: u64,
    /// The host's facts (an agent of issue 12's version sends none).
    pub facts: Option<Facts>,
}

impl Report {
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let fields = object(body)?;
        let tasks = tasks_field(&fields, "tasks")?.unwrap_or_default();
        let approved = tasks_field(&fields, "approved")?.unwrap_or_default();
        if let Some(stray) = approved.iter().find(|t| !tasks.contains(t)) {
            return Err(field(
                "approved",
                format!(
                    "lists {} which is not in tasks",
                    quote(stray.package().as_str(), MAX_QUOTE_CHARS)
                ),
            ));
        }
        let wait_secs = match fields.get("wait") {
            None => 0,
            Some(v) => v.as_u64().filter(|w| *w <= MAX_WAIT_SECS).ok_or_else(|| {
                field("wait", format!("not an integer from 0 to {MAX_WAIT_SECS}"))
            })?,
        };
        let facts =
            match fields.get("facts") {
                None | Some(Value::Null) => None,
                Some(v) => Some(Facts::parse(v, &tasks).map_err(|(name, reason)| {
                    ProtocolError::Field {
                        field: name,
                        reason,
                    }
                })?),
            };
        Ok(Self {
            tasks,
            approved,
            wait_secs,
            facts,
        })
    }

    pub fn render(&self) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            tasks: Vec<WireTask<'a>>,
            approved: Vec<WireTask<'a>>,
            wait: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            facts: Option<Value>,
        }
        serde_json::to_string(&Wire {
            tasks: wire_tasks(&self.tasks),
            approved: wire_tasks(&self.approved),
            wait: self.wait_secs,
            facts: self.facts.as_ref().map(Facts::to_wire),
        })
        .expect("serialising plain values cannot fail")
    }
}

/// The master's answer to a [`Report`]: the reported tasks approved for this agent now, and
/// those approved but held back by the roll-out controls (a closed maintenance window, no
/// free slot of a tag's max in flight). Agents that predate the controls ignore the extra
/// fields and run only `approved`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportAnswer {
    /// Approved tasks the agent may run now.
    pub approved: TaskSet,
    /// Approved tasks the agent may not run yet.
    pub deferred: TaskSet,
    /// Why `deferred` waits (`None` when nothing is deferred).
    pub reason: Option<DeferReason>,
    /// When the maintenance window opens (unix seconds, the master's clock); `None` when
    /// deferred for another reason or when no window opens again.
    pub not_before: Option<i64>,
    /// Seconds of the lease that came with `approved` (max in flight): the agent renews it
    /// within this time while it runs (`POST` [`LEASE_PATH`]) and releases it when done.
    pub lease_seconds: Option<u64>,
}

/// Why approved tasks are deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeferReason {
    /// Outside every maintenance window of the agent's tags.
    Window,
    /// A tag of the agent has its max in flight of agents upgrading.
    MaxInFlight,
}

impl DeferReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeferReason::Window => "window",
            DeferReason::MaxInFlight => "max-in-flight",
        }
    }
}

impl ReportAnswer {
    /// An answer with `approved` and nothing deferred.
    pub fn approving(approved: TaskSet) -> Self {
        Self {
            approved,
            ..Self::default()
        }
    }

    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let fields = object(body)?;
        let approved = tasks_field(&fields, "approved")?.ok_or(ProtocolError::Field {
            field: "approved".into(),
            reason: "is missing".into(),
        })?;
        let deferred = tasks_field(&fields, "deferred")?.unwrap_or_default();
        let reason = match fields.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "window" => Some(DeferReason::Window),
            Some(Value::String(s)) if s == "max-in-flight" => Some(DeferReason::MaxInFlight),
            Some(_) => {
                return Err(field(
                    "reason",
                    "must be \"window\" or \"max-in-flight\"".into(),
                ))
            }
        };
        let integer = |name: &str| -> Result<Option<i64>, ProtocolError> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .filter(|v| (0..=MAX_STARTED_AT).contains(v))
                    .map(Some)
                    .ok_or_else(|| field(name, "not a non-negative integer".into())),
            }
        };
        Ok(Self {
            approved,
            deferred,
            reason,
            not_before: integer("not_before")?,
            lease_seconds: integer("lease_seconds")?.map(|s| s as u64),
        })
    }

    pub fn render(&self) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            approved: Vec<WireTask<'a>>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            deferred: Vec<WireTask<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<DeferReason>,
            #[serde(skip_serializing_if = "Option::is_none")]
            not_before: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            lease_seconds: Option<u64>,
        }
        serde_json::to_string(&Wire {
            approved: wire_tasks(&self.approved),
            deferred: wire_tasks(&self.deferred),
            reason: self.reason,
            not_before: self.not_before,
            lease_seconds: self.lease_seconds,
        })
        .expect("serialising plain values cannot fail")
    }
}

/// What an agent asks of its leases (`POST` [`LEASE_PATH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRequest {
    /// Still running: extend every lease the agent holds.
    Renew,
    /// Done: give every lease back.
    Release,
}

impl LeaseRequest {
    /// Parses `{"renew": true}` or `{"release": true}`.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let fields = object(body)?;
        let flag = |name: &str| match fields.get(name) {
            None => Ok(false),
            Some(Value::Bool(true)) => Ok(true),
            Some(_) => Err(field(name, "must be true when given".into())),
        };
        match (flag("renew")?, flag("release")?) {
            (true, false) => Ok(LeaseRequest::Renew),
            (false, true) => Ok(LeaseRequest::Release),
            _ => Err(field(
                "renew",
                "give exactly one of \"renew\": true and \"release\": true".into(),
            )),
        }
    }

    pub fn render(self) -> String {
        match self {
            LeaseRequest::Renew => r#"{"renew":true}"#.to_owned(),
            LeaseRequest::Release => r#"{"release":true}"#.to_owned(),
        }
    }
}

/// How a package run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// apt ran and a new plan shows every task of the run done.
    Succeeded,
    /// apt could not run, or a new plan still shows tasks of the run.
    Failed,
    /// Not run: apt's plan for the run no longer matched the approved plan.
    PlanChanged,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Succeeded, Outcome::Failed, Outcome::PlanChanged];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::PlanChanged => "plan-changed",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s).ok_or(())
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An agent's name for one run, unique per agent: resending a run stores it once.
/// 1 to [`MAX_RUN_ID_CHARS`] characters of `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if value.is_empty() || value.len() > MAX_RUN_ID_CHARS || !value.chars().all(allowed) {
            return Err(format!(
                "must be 1 to {MAX_RUN_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The last lines of a run's apt/dpkg output: at most [`MAX_OUTPUT_BYTES`] bytes, no control
/// characters but newline and tab, no bidirectional-text overrides. Plain text, never markup.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct RunOutput(String);

impl RunOutput {
    /// Checks output received from an agent.
    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        if value.len() > MAX_OUTPUT_BYTES {
            return Err(format!("longer than {MAX_OUTPUT_BYTES} bytes"));
        }
        if value.chars().any(is_refused_char) {
            return Err("holds a control character".into());
        }
        Ok(Self(value))
    }

    /// The tail of `text` that fits, with refused characters replaced by U+FFFD (the agent's
    /// side: apt's output is whatever the maintainer scripts printed).
    pub fn tail_of(text: &str) -> Self {
        let clean: String = text
            .chars()
            .map(|c| if is_refused_char(c) { '\u{fffd}' } else { c })
            .collect();
        let mut start = clean.len().saturating_sub(MAX_OUTPUT_BYTES);
        while !clean.is_char_boundary(start) {
            start += 1;
        }
        Self(clean[start..].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_refused_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// What one package run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub id: RunId,
    /// The package the run upgraded (its plan may touch others: see `tasks`).
    pub package: PackageName,
    /// Unix seconds.
    pub started_at: i64,
    pub duration_ms: u64,
    /// apt-get's exit code; `None` (an omitted key) when it did not run or was killed by a
    /// signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub outcome: Outcome,
    /// The tasks of the plan the run executed (or, for `plan-changed`, was to execute).
    #[serde(serialize_with = "serialize_tasks")]
    pub tasks: TaskSet,
    pub output: RunOutput,
}

fn serialize_tasks<S: serde::Serializer>(tasks: &TaskSet, s: S) -> Result<S::Ok, S::Error> {
    wire_tasks(tasks).serialize(s)
}

/// Parses a `POST /v2/runs` body: `{"runs": [RUN, …]}`, 1 to [`MAX_RUNS`] runs with distinct ids.
pub fn parse_runs(body: &[u8]) -> Result<Vec<Run>, ProtocolError> {
    let fields = object(body)?;
    let Some(Value::Array(items)) = fields.get("runs") else {
        return Err(field("runs", "is missing or not an array".into()));
    };
    if items.is_empty() || items.len() > MAX_RUNS {
        return Err(field("runs", format!("must hold 1 to {MAX_RUNS} runs")));
    }
    let mut ids = BTreeSet::new();
    let mut runs = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let run = parse_run(item)
            .map_err(|(name, reason)| field(&format!("runs[{index}].{name}"), reason))?;
        if !ids.insert(run.id.clone()) {
            return Err(field(
                &format!("runs[{index}].id"),
                "repeats an earlier run's id".into(),
            ));
        }
        runs.push(run);
    }
    Ok(runs)
}

/// Renders a `POST /v2/runs` body.
pub fn render_runs(runs: &[Run]) -> String {
    #[derive(Serialize)]
    struct Wire<'a> {
        runs: &'a [Run],
    }
    serde_json::to_string(&Wire { runs }).expect("serialising plain values cannot fail")
}

type FieldError = (&'static str, String);

fn parse_run(item: &Value) -> Result<Run, FieldError> {
    let Value::Object(fields) = item else {
        return Err(("", "not a JSON object".into()));
    };
    let text = |name: &'static str| -> Result<&str, FieldError> {
        fields
            .get(name)
            .and_then(Value::as_str)
            .ok_or((name, "is missing or not a string".into()))
    };
    let integer = |name: &'static str, max: i64| -> Result<i64, FieldError> {
        fields
            .get(name)
            .and_then(Value::as_i64)
            .filter(|v| (0..=max).contains(v))
            .ok_or((
                name,
                format!("is missing or not an integer from 0 to {max}"),
            ))
    };
    let id = RunId::new(text("id")?).map_err(|e| ("id", e))?;
    let package = PackageName::new(text("package")?).map_err(|e| ("package", e.to_string()))?;
    let started_at = integer("started_at", MAX_STARTED_AT)?;
    let duration_ms = integer("duration_ms", MAX_DURATION_MS as i64)? as u64;
    let exit_code = match fields.get("exit_code") {
        // Absent; an older agent of ours rendered it as null.
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .ok_or(("exit_code", "not a 32-bit integer".to_string()))?,
        ),
    };
    let outcome = text("outcome")?.parse::<Outcome>().map_err(|()| {
        (
            "outcome",
            "must be succeeded, failed or plan-changed".to_string(),
        )
    })?;
    let tasks = fields
        .get("tasks")
        .ok_or(("tasks", "is missing".to_string()))
        .and_then(|v| parse_tasks(v).map_err(|e| ("tasks", e.to_string())))?;
    if tasks.is_empty() {
        return Err(("tasks", "is empty".into()));
    }
    let output = match fields.get("output") {
        None => RunOutput::default(),
        Some(Value::String(s)) => RunOutput::new(s.as_str()).map_err(|e| ("output", e))?,
        Some(_) => return Err(("output", "not a string".into())),
    };
    Ok(Run {
        id,
        package,
        started_at,
        duration_ms,
        exit_code,
        outcome,
        tasks,
        output,
    })
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ProtocolError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ProtocolError::NotObjectBody),
        Err(e) => Err(ProtocolError::Json(e.to_string())),
    }
}

fn tasks_field(
    fields: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<TaskSet>, ProtocolError> {
    fields
        .get(name)
        .map(|v| parse_tasks(v).map_err(|e| field(name, e.to_string())))
        .transpose()
}

fn field(name: &str, reason: String) -> ProtocolError {
    ProtocolError::Field {
        field: name.trim_end_matches('.').to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;

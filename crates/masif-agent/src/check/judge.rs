//! The verdict of `masif-agent check` from what the socket answered: each check's state, the
//! summary naming every problem (worst first), and the performance data.

use std::collections::BTreeMap;

use super::args::{kinds, CheckArgs, Verdict, WINDOWS};
use crate::plugin::{Perf, Range, Status, Threshold};
use crate::status::StatusReport;

/// What `/v1/load` says: for each kind, the counts of the last 1, 5 and 15 minutes.
pub(crate) type LoadFigures = BTreeMap<String, [f64; 3]>;

/// The thresholds in force, defaults resolved.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    report_age: Threshold,
    failed: Threshold,
    approved: Threshold,
    approved_age: Threshold,
    reboot_required: Verdict,
    dpkg_audit: Verdict,
    resptime: Threshold,
    /// `[kind][window]`.
    load: [[Threshold; 3]; 7],
}

impl Limits {
    /// The flags' thresholds; where one is not given, our default, or none with
    /// `--original` (the original judged only the answer, its time and the load).
    pub(crate) fn from_args(args: &CheckArgs) -> Self {
        let ours = |given: &Option<Range>, default: &str| -> Option<Range> {
            given.clone().or_else(|| {
                (!args.original).then(|| default.parse().expect("default ranges parse"))
            })
        };
        let verdict = |given: Option<Verdict>| {
            given.unwrap_or(match args.original {
                true => Verdict::Ok,
                false => Verdict::Warning,
            })
        };
        let mut load: [[Threshold; 3]; 7] = Default::default();
        for t in &args.load {
            let slot = &mut load[t.kind][t.window];
            match t.critical {
                true => slot.crit = Some(t.range.clone()),
                false => slot.warn = Some(t.range.clone()),
            }
        }
        Self {
            report_age: Threshold {
                warn: ours(&args.report_warn, "1800"),
                crit: ours(&args.report_crit, "7200"),
            },
            failed: Threshold {
                warn: ours(&args.failed_warn, "0"),
                crit: args.failed_crit.clone(),
            },
            approved: Threshold {
                warn: args.approved_warn.clone(),
                crit: args.approved_crit.clone(),
            },
            approved_age: Threshold {
                warn: ours(&args.approved_age_warn, "3600"),
                crit: args.approved_age_crit.clone(),
            },
            reboot_required: verdict(args.reboot_required),
            dpkg_audit: verdict(args.dpkg_audit),
            resptime: Threshold {
                warn: args.resptime_warn.clone(),
                crit: args.resptime_crit.clone(),
            },
            load,
        }
    }
}

/// The plugin's result before rendering.
#[derive(Debug)]
pub(crate) struct Judgement {
    pub(crate) status: Status,
    pub(crate) summary: String,
    pub(crate) perf: Vec<Perf>,
    pub(crate) details: Vec<String>,
}

/// Judges the answers: `status` and `load` from the socket, `resptime` the seconds both
/// took, `now` in unix seconds. Errs (UNKNOWN) if `load` lacks a figure.
pub(crate) fn judge(
    status: &StatusReport,
    load: &LoadFigures,
    resptime: f64,
    now: i64,
    limits: &Limits,
) -> Result<Judgement, String> {
    let mut problems: Vec<(Status, String)> = Vec::new();
    let mut perf = Vec::new();
    let mut details = Vec::new();
    let mut judged = |status: Status, text: String| {
        if status != Status::Ok {
            problems.push((status, text));
        }
    };

    let reported = status
        .last_report
        .or(status.started_at)
        .unwrap_or(status.since);
    let report_age = (now - reported).max(0) as f64;
    let age_text = match status.last_report {
        Some(_) => format!("last report {} ago", duration(report_age)),
        None => format!("no report for {} since the start", duration(report_age)),
    };
    judged(limits.report_age.status(report_age), age_text.clone());
    perf.push(seconds("report_age", report_age, &limits.report_age));

    let failed = status.failed_packages.len() as f64;
    if !status.failed_packages.is_empty() {
        let names: Vec<&str> = status.failed_packages.iter().map(String::as_str).collect();
        let given_up = status.given_up_packages.len();
        judged(
            limits.failed.status(failed),
            format!(
                "{} failed ({}{})",
                plural(status.failed_packages.len(), "package"),
                names.join(", "),
                match given_up {
                    0 => String::new(),
                    n => format!("; {n} given up"),
                }
            ),
        );
    }
    perf.push(Perf::count("failed_packages", failed).with_threshold(limits.failed.clone()));
    perf.push(Perf::count(
        "given_up_packages",
        status.given_up_packages.len() as f64,
    ));

    let approved = status.approved_tasks as f64;
    let approved_age = status
        .approved_since
        .filter(|_| status.approved_tasks > 0)
        .map_or(0.0, |since| (now - since).max(0) as f64);
    let approved_text = format!(
        "{} approved, not yet done, for {}",
        plural(status.approved_tasks, "task"),
        duration(approved_age)
    );
    let approved_state = limits
        .approved
        .status(approved)
        .max(limits.approved_age.status(approved_age));
    judged(approved_state, approved_text);
    perf.push(Perf::count("approved_tasks", approved).with_threshold(limits.approved.clone()));
    perf.push(seconds("approved_age", approved_age, &limits.approved_age));
    perf.push(Perf::count("pending_tasks", status.pending_tasks as f64));
    // Deferred tasks wait for the master's roll-out controls, not for this agent: never a
    // problem here (they are not among the approved tasks above).
    perf.push(Perf::count("deferred_tasks", status.deferred_tasks as f64));
    if status.deferred_tasks > 0 {
        let why = match (status.deferred_reason.as_deref(), status.not_before) {
            (Some("window"), Some(t)) => format!(
                "the maintenance window, opening in {}",
                duration((t - now).max(0) as f64)
            ),
            (Some("window"), None) => "a maintenance window".into(),
            (Some("max-in-flight"), _) => "a free slot (max in flight)".into(),
            _ => "the master".into(),
        };
        details.push(format!(
            "{} approved, deferred: waiting for {why}",
            plural(status.deferred_tasks, "task")
        ));
    }

    if status.reboot_required {
        judged(state(limits.reboot_required), "reboot required".into());
    }
    perf.push(Perf::count(
        "reboot_required",
        u8::from(status.reboot_required).into(),
    ));
    if let Some(audit) = &status.dpkg_audit {
        judged(
            state(limits.dpkg_audit),
            "dpkg --audit reports unfinished packages".into(),
        );
        details.extend(audit.lines().take(5).map(|l| format!("dpkg --audit: {l}")));
    }

    judged(
        limits.resptime.status(resptime),
        format!("socket answered in {resptime:.3} s"),
    );
    perf.push(seconds("resptime", resptime, &limits.resptime));

    for (k, kind) in kinds().iter().enumerate() {
        let figures = load
            .get(*kind)
            .ok_or_else(|| format!("/v1/load has no {kind:?} figures"))?;
        for (w, window) in WINDOWS.iter().enumerate() {
            let threshold = &limits.load[k][w];
            let value = figures[w];
            judged(threshold.status(value), format!("{kind} {window}: {value}"));
            perf.push(
                Perf::count(format!("{kind}_{window}"), value).with_threshold(threshold.clone()),
            );
        }
    }

    if let Some(error) = &status.last_error {
        details.push(format!(
            "last error ({} ago): {}",
            duration((now - error.time).max(0) as f64),
            error.message
        ));
    }
    problems.sort_by_key(|(s, _)| std::cmp::Reverse(*s));
    let who = status.agent.as_deref().unwrap_or("agent");
    let worst = problems.first().map_or(Status::Ok, |(s, _)| *s);
    let summary = match problems.is_empty() {
        true => format!(
            "{who}: {age_text}, {} pending, {} approved, no failed runs",
            status.pending_tasks, status.approved_tasks
        ),
        false => {
            let texts: Vec<&str> = problems.iter().map(|(_, t)| t.as_str()).collect();
            format!("{who}: {}", texts.join("; "))
        }
    };
    Ok(Judgement {
        status: worst,
        summary,
        perf,
        details,
    })
}

fn state(verdict: Verdict) -> Status {
    match verdict {
        Verdict::Ok => Status::Ok,
        Verdict::Warning => Status::Warning,
        Verdict::Critical => Status::Critical,
    }
}

fn seconds(label: &str, value: f64, threshold: &Threshold) -> Perf {
    Perf::count(label, value)
        .with_uom("s")
        .with_threshold(threshold.clone())
}

fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// `42 s`, `5 min`, `3 h`, `2 d`: rounded down, for the summary.
fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests;

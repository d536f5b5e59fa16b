//! Valid protocol values to render: tasks, v2 reports with host facts, answers and runs.

use std::collections::BTreeMap;

use masif_proto::facts::{FactText, Facts, Origin, TaskFacts};
use masif_proto::v2::{
    DeferReason, Outcome, Report, ReportAnswer, Run, RunId, RunOutput, MAX_WAIT_SECS,
};
use masif_proto::{Action, PackageName, Tag, Task, TaskSet, Version, MAX_FIELD_CHARS, MAX_TAGS};
use proptest::prelude::*;

/// Visible text as names and versions may hold it: quotes, markup, non-ASCII, no control or
/// format characters; now and then as long as allowed.
pub fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => visible(40),
        1 => "[a-z0-9.+~:-]{1,191}",
        1 => Just("é".repeat(MAX_FIELD_CHARS)),
    ]
}

/// 1 to `max` characters of any plane that names accept (cheaper than a regular expression
/// over Unicode classes).
fn visible(max: usize) -> impl Strategy<Value = String> {
    let char = any::<char>().prop_map(|c| {
        // Names refuse control and format characters.
        if PackageName::new(c.to_string()).is_ok() {
            c
        } else {
            '~'
        }
    });
    proptest::collection::vec(char, 1..=max).prop_map(String::from_iter)
}

pub fn task() -> impl Strategy<Value = Task> {
    (
        field(),
        proptest::sample::select(Action::ALL.to_vec()),
        field(),
        field(),
        any::<bool>(),
    )
        .prop_map(|(package, action, from, to, flag)| {
            let (from, to) = (Some(from), Some(to));
            // Exactly the versions each action may carry.
            let (from, to) = match action {
                Action::Install => (None, to),
                Action::Update => (from, to),
                Action::Configure if flag => (from, None),
                Action::Configure => (None, to),
                Action::Remove | Action::Purge => (from, if flag { to } else { None }),
            };
            let version = |v: Option<String>| v.map(|v| Version::new(v).unwrap());
            Task::new(
                PackageName::new(package).unwrap(),
                action,
                version(from),
                version(to),
            )
            .unwrap()
        })
}

pub fn tasks(max: usize) -> impl Strategy<Value = TaskSet> {
    proptest::collection::btree_set(task(), 0..max)
}

fn fact_text() -> impl Strategy<Value = FactText> {
    visible(60).prop_map(|s| FactText::new(s).unwrap())
}

fn package() -> impl Strategy<Value = PackageName> {
    field().prop_map(|s| PackageName::new(s).unwrap())
}

/// A tag: short, or as long as allowed.
fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        8 => "[A-Za-z0-9][A-Za-z0-9._-]{0,12}",
        1 => "[A-Za-z0-9][A-Za-z0-9._-]{63}",
    ]
    .prop_map(|s| Tag::new(s).unwrap())
}

/// None, a few, or now and then as many tags as allowed.
fn tags() -> impl Strategy<Value = std::collections::BTreeSet<Tag>> {
    prop_oneof![
        8 => proptest::collection::btree_set(tag(), 0..4),
        1 => proptest::collection::btree_set(tag(), MAX_TAGS),
    ]
}

/// A v2 answer: approved tasks, and maybe deferred ones with a reason and a time, or a lease.
pub fn answer() -> impl Strategy<Value = ReportAnswer> {
    let reason = proptest::option::of(proptest::sample::select(vec![
        DeferReason::Window,
        DeferReason::MaxInFlight,
    ]));
    (
        tasks(6),
        tasks(4),
        reason,
        proptest::option::of(0..=4_102_444_800i64),
        proptest::option::of(1..=3600u64),
    )
        .prop_map(
            |(approved, deferred, reason, not_before, lease_seconds)| ReportAnswer {
                approved,
                deferred,
                reason,
                not_before,
                lease_seconds,
            },
        )
}

/// Facts of a report whose tasks are `tasks` (task facts name only those).
pub fn facts(reported: TaskSet) -> impl Strategy<Value = Facts> {
    let task_list: Vec<Task> = reported.into_iter().collect();
    let task_facts = proptest::sample::subsequence(task_list.clone(), 0..=task_list.len())
        .prop_flat_map(|chosen| {
            let n = chosen.len();
            (
                Just(chosen),
                proptest::collection::vec((proptest::option::of(visible(80)), tasks(4)), n),
            )
        })
        .prop_map(|(chosen, details)| {
            chosen
                .into_iter()
                .zip(details)
                .map(|(task, (origin, needs))| {
                    let origin = origin.map(|o| Origin::new(o).unwrap());
                    (task, TaskFacts { origin, needs })
                })
                .collect::<BTreeMap<_, _>>()
        });
    (
        proptest::option::of(fact_text()),
        proptest::option::of(fact_text()),
        proptest::option::of(fact_text()),
        any::<bool>(),
        proptest::collection::btree_set(package(), 0..5),
        proptest::collection::btree_set(package(), 0..5),
        task_facts,
        tags(),
    )
        .prop_map(
            |(os, kernel, agent_version, reboot_required, reboot_packages, held, tasks, tags)| {
                Facts {
                    os,
                    kernel,
                    agent_version,
                    reboot_required,
                    reboot_packages,
                    held,
                    tasks,
                    tags,
                }
            },
        )
}

/// A report: tasks, a subset of them approved, a wait, and facts or none.
pub fn report() -> impl Strategy<Value = Report> {
    tasks(8).prop_flat_map(|tasks| {
        let list: Vec<Task> = tasks.iter().cloned().collect();
        (
            proptest::sample::subsequence(list.clone(), 0..=list.len()),
            prop_oneof![Just(0), Just(MAX_WAIT_SECS), 0..=MAX_WAIT_SECS],
            proptest::option::of(facts(tasks.clone())),
            Just(tasks),
        )
            .prop_map(|(approved, wait_secs, facts, tasks)| Report {
                tasks,
                approved: approved.into_iter().collect(),
                wait_secs,
                facts,
            })
    })
}

fn run(id: usize) -> impl Strategy<Value = Run> {
    (
        "[A-Za-z0-9._:-]{0,40}",
        package(),
        prop_oneof![Just(0), Just(253_402_300_799), 0..253_402_300_799i64],
        prop_oneof![Just(0), Just(30 * 24 * 3600 * 1000), 0..2_592_000_000u64],
        proptest::option::of(any::<i32>()),
        proptest::sample::select(Outcome::ALL.to_vec()),
        proptest::collection::btree_set(task(), 1..4),
        "\\PC{0,200}|[\\s\\S]{0,80}",
    )
        .prop_map(
            move |(id_tail, package, started_at, duration_ms, exit_code, outcome, tasks, out)| {
                Run {
                    // Distinct ids, as the parser demands.
                    id: RunId::new(
                        format!("{id}{id_tail}")
                            .chars()
                            .take(64)
                            .collect::<String>(),
                    )
                    .unwrap(),
                    package,
                    started_at,
                    duration_ms,
                    exit_code,
                    outcome,
                    tasks,
                    output: RunOutput::tail_of(&out),
                }
            },
        )
}

/// One to four runs with distinct ids.
pub fn runs() -> impl Strategy<Value = Vec<Run>> {
    (1..5usize).prop_flat_map(|n| (0..n).map(run).collect::<Vec<_>>())
}

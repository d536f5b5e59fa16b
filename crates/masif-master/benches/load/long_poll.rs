//! The long-poll benchmark: every agent registers (its connection then kept alive and idle for
//! a while, measured too), then waits in a v2 report (`wait` seconds) on its own kept-alive
//! connection; the master's memory and CPU (and MariaDB's) are read while they wait, then one
//! task every agent has is approved for all agents through the store, as the UI does, and each
//! held answer is timed; then tasks are approved for one agent at a time while all others stay
//! parked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use masif_proto::v2::REPORT_PATH;
use masif_proto::{Action, AgentName, PackageName, Version};
use masif_store::{ApprovalScope, Store, TaskKey};
use tokio::task::JoinHandle;

use crate::common::Reply;
use crate::fleet::{agent_name, connect_all, report_body, run_phase, Agents, Fleet, Master};
use crate::fleet::{PhaseResult, Variant};
use crate::measure::{mib, percentile, Cpu};
use crate::Options;

pub fn print_header() {
    println!("| agents | master | step | count | errors | p50 ms | p99 ms | max ms | seconds | master CPU s | MariaDB CPU s | master RSS MiB | master peak MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

/// One line of the table.
struct Row<'a> {
    size: usize,
    label: &'a str,
    pid: u32,
}

impl Row<'_> {
    fn print(&self, step: &str, count: usize, errors: usize, r: &mut PhaseResult, cpu: Cpu) {
        r.latencies.sort();
        // Steps that time nothing leave the latency columns empty.
        let ms = |p: f64| match r.latencies.is_empty() {
            true => String::new(),
            false => format!("{:.1}", percentile(&r.latencies, p)),
        };
        println!(
            "| {:>6} | {} | {step} | {count} | {errors} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} |",
            self.size,
            self.label,
            ms(0.50),
            ms(0.99),
            ms(1.0),
            r.elapsed.as_secs_f64(),
            cpu.master,
            cpu.db,
            mib(self.pid, "VmRSS:"),
            mib(self.pid, "VmHWM:"),
        );
    }
}

/// A parked report's outcome and when it arrived.
struct Held {
    at: Instant,
    reply: anyhow::Result<Reply>,
}

/// Sends a v2 report that the master may hold for `wait` seconds, on the agent's connection.
fn park(fleet: &Arc<Fleet>, agent: usize, body: String, wait: u64) -> JoinHandle<Held> {
    let fleet = fleet.clone();
    tokio::spawn(async move {
        let mut slot = fleet.clients[agent].lock().await;
        let reply = match slot.as_mut() {
            Some(client) => {
                let within = Duration::from_secs(wait + 60);
                client
                    .request_within("POST", REPORT_PATH, body, within)
                    .await
            }
            None => Err(anyhow::anyhow!("not connected")),
        };
        let at = Instant::now();
        if reply.is_err() {
            *slot = None;
        }
        Held { at, reply }
    })
}

fn v2_body(tasks: &str, approved: &str, wait: u64) -> String {
    format!(r#"{{"tasks":{tasks},"approved":{approved},"wait":{wait}}}"#)
}

/// The `approved` array of an answer, as JSON.
fn approved_of(body: &str) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    answer.get("approved").map(|a| a.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until `expected` agents have reported since `since` (unix seconds), as their
/// `last_seen` shows (written at most a second behind the report, which the master stores
/// before it holds the answer); returns how many have.
async fn wait_parked(master: &Master, since: u64, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = master
            .db
            .query_u64(&format!(
                "SELECT COUNT(*) FROM agent_report WHERE last_seen >= {since}"
            ))
            .await;
        if seen >= expected || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn update_key(package: &str) -> TaskKey {
    TaskKey {
        package: PackageName::new(package).unwrap(),
        action: Action::Update,
        to_version: Some(Version::new("2.0").unwrap()),
    }
}

/// The fleet's state between steps: each agent's tasks, what it was last told, its held report.
struct Agentry {
    fleet: Arc<Fleet>,
    tasks: Vec<String>,
    told: Vec<String>,
    held: Vec<Option<JoinHandle<Held>>>,
    wait: u64,
}

impl Agentry {
    fn park(&mut self, agent: usize) {
        let body = v2_body(&self.tasks[agent], &self.told[agent], self.wait);
        self.held[agent] = Some(park(&self.fleet, agent, body, self.wait));
    }

    fn answered_early(&self) -> usize {
        self.held
            .iter()
            .filter(|h| h.as_ref().is_some_and(|h| h.is_finished()))
            .count()
    }

    /// Waits (until `deadline`) for `agent`'s held answer; it must approve `package` now.
    /// Returns when it arrived.
    async fn answer(
        &mut self,
        agent: usize,
        package: &str,
        deadline: tokio::time::Instant,
    ) -> Option<Instant> {
        let handle = self.held[agent].take()?;
        let held = tokio::time::timeout_at(deadline, handle).await.ok()?.ok()?;
        let reply = held.reply.ok().filter(|r| r.status == 200)?;
        let approved = approved_of(&reply.body)?;
        let needle = format!(r#""package":"{package}""#);
        approved.contains(&needle).then(|| {
            self.told[agent] = approved;
            held.at
        })
    }
}

/// Latencies of answers that arrived at `arrivals`, from `from`.
fn since(from: Instant, arrivals: &[Instant]) -> PhaseResult {
    PhaseResult {
        latencies: arrivals
            .iter()
            .map(|at| at.saturating_duration_since(from))
            .collect(),
        ..PhaseResult::default()
    }
}

pub async fn bench(size: usize, o: &Options, agents: &Agents, variant: &Variant) {
    let master = Master::start(&agents.pki, variant, o.concurrency).await;
    let fleet = Fleet::new(agents, master.addr, o.source_addresses);
    let (pid, db_pid) = (master.pid, master.db_pid);
    let row = Row {
        size,
        label: &variant.label,
        pid,
    };
    let cpu = || Cpu::now(&[pid], db_pid.as_slice());
    row.print(
        "started",
        0,
        0,
        &mut PhaseResult::default(),
        cpu().since(cpu()),
    );

    let before = cpu();
    let mut r = connect_all(&fleet, o.concurrency).await;
    let connected = r.latencies.len();
    row.print(
        "connected (TLS handshake, no request)",
        connected,
        r.errors,
        &mut r,
        cpu().since(before),
    );

    let tasks: Arc<Vec<String>> = Arc::new((0..size).map(|a| report_body(a, o.tasks, 0)).collect());
    let before = cpu();
    let bodies = tasks.clone();
    let mut r = run_phase(
        &fleet,
        0..size,
        o.concurrency,
        REPORT_PATH,
        true,
        move |a| v2_body(&bodies[a], "[]", 0),
    )
    .await;
    let mut state = Agentry {
        fleet: fleet.clone(),
        tasks: tasks.to_vec(),
        told: vec!["[]".to_owned(); size],
        held: (0..size).map(|_| None).collect(),
        wait: o.wait,
    };
    for (agent, body) in std::mem::take(&mut r.replies) {
        state.told[agent] = approved_of(&body).unwrap_or_else(|| "[]".into());
    }
    let registered = r.latencies.len();
    row.print(
        "registration (v2, wait 0)",
        registered,
        r.errors,
        &mut r,
        cpu().since(before),
    );

    let kept = o.idle.min(KEPT_ALIVE_IDLE);
    let (mut r, used) = idle(kept, &cpu).await;
    row.print(
        &format!("registered, kept alive, {kept} s idle"),
        registered,
        0,
        &mut r,
        used,
    );

    park_all(&row, &master, &mut state, size, o.wait).await;

    let (mut r, used) = idle(o.idle, &cpu).await;
    let early = state.answered_early();
    row.print(
        &format!("all parked, {} s idle", o.idle),
        size - early,
        early,
        &mut r,
        used,
    );

    let ui: Arc<dyn Store> = masif_store::open(&master.db.url().parse().unwrap())
        .await
        .expect("a second store on the master's database");
    approve_all(&row, &mut state, ui.as_ref(), size, &cpu).await;
    park_all(&row, &master, &mut state, size, o.wait).await;
    approve_singles(&row, &mut state, ui.as_ref(), size, o.single, &cpu).await;

    for handle in state.held.iter().flatten() {
        handle.abort();
    }
    drop(state);
    drop(fleet);
    master.stop();
}

/// Idle spell of the kept-alive connections after registration: well within the master's
/// `api.idle_timeout` (90 s by default), which is also its wait for the next request head.
const KEPT_ALIVE_IDLE: u64 = 20;

/// Waits `seconds` with no request sent; returns the wait and the CPU used meanwhile.
async fn idle(seconds: u64, cpu: &impl Fn() -> Cpu) -> (PhaseResult, Cpu) {
    let before = cpu();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let waited = PhaseResult {
        elapsed: started.elapsed(),
        ..PhaseResult::default()
    };
    (waited, cpu().since(before))
}

async fn park_all(row: &Row<'_>, master: &Master, state: &mut Agentry, size: usize, wait: u64) {
    // `last_seen` has a resolution of a second: start on a fresh one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let since = unix_now();
    let before = Cpu::now(&[master.pid], master.db_pid.as_slice());
    let started = Instant::now();
    for agent in 0..size {
        state.park(agent);
    }
    let parked = wait_parked(master, since, size as u64).await as usize;
    let early = state.answered_early();
    let mut r = PhaseResult {
        elapsed: started.elapsed(),
        ..PhaseResult::default()
    };
    row.print(
        &format!("parking (v2, wait {wait})"),
        parked.saturating_sub(early),
        size - parked + early,
        &mut r,
        Cpu::now(&[master.pid], master.db_pid.as_slice()).since(before),
    );
}

/// Approves `pkg0`, which every agent has, for all agents, and times every held answer.
async fn approve_all(
    row: &Row<'_>,
    state: &mut Agentry,
    ui: &dyn Store,
    size: usize,
    cpu: &impl Fn() -> Cpu,
) {
    let before = cpu();
    let called = Instant::now();
    ui.approve(&[update_key("pkg0")], &ApprovalScope::AllAgents, "bench")
        .await
        .expect("approve for all agents");
    let returned = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut arrivals = Vec::with_capacity(size);
    for agent in 0..size {
        if let Some(at) = state.answer(agent, "pkg0", deadline).await {
            arrivals.push(at);
        }
    }
    let used = cpu().since(before);
    let errors = size - arrivals.len();
    let last = arrivals.iter().max().copied().unwrap_or(returned);
    for (step, from) in [
        ("approve all: answers after approve returned", returned),
        ("approve all: answers after approve was called", called),
    ] {
        let mut r = since(from, &arrivals);
        r.elapsed = last.saturating_duration_since(from);
        row.print(step, arrivals.len(), errors, &mut r, used);
    }
    let mut r = PhaseResult {
        latencies: vec![returned - called],
        elapsed: returned - called,
        ..PhaseResult::default()
    };
    row.print("approve all: the approve call", 1, 0, &mut r, used);
}

/// Approves `pkg1` for one agent at a time, `count` times, while every other agent stays
/// parked, and times that agent's answer.
async fn approve_singles(
    row: &Row<'_>,
    state: &mut Agentry,
    ui: &dyn Store,
    size: usize,
    count: usize,
    cpu: &impl Fn() -> Cpu,
) {
    if count == 0 {
        return;
    }
    let chosen: Vec<usize> = (0..count.min(size))
        .map(|k| k * size / count.min(size))
        .collect();
    let (mut from_return, mut from_call) = (Vec::new(), Vec::new());
    let mut errors = 0;
    let before = cpu();
    let started = Instant::now();
    for (k, &agent) in chosen.iter().enumerate() {
        let name = AgentName::new(agent_name(agent)).unwrap();
        let called = Instant::now();
        ui.approve(
            &[update_key("pkg1")],
            &ApprovalScope::Agents(vec![name]),
            "bench",
        )
        .await
        .expect("approve for one agent");
        let returned = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        match state.answer(agent, "pkg1", deadline).await {
            Some(at) => {
                from_return.push(at.saturating_duration_since(returned));
                from_call.push(at.saturating_duration_since(called));
                state.park(agent);
            }
            None => errors += 1,
        }
        // Let the re-parked report reach the master before the next approval; the pause varies
        // so that approvals do not fall in step with the master's approval poll.
        let jitter = (k as u64 * 618) % 1000;
        tokio::time::sleep(Duration::from_millis(300 + jitter)).await;
    }
    let used = cpu().since(before);
    // Every other agent must still be waiting.
    let others = state.answered_early();
    for (step, latencies) in [
        (
            "approve one agent: its answer after approve returned",
            from_return,
        ),
        (
            "approve one agent: its answer after approve was called",
            from_call,
        ),
    ] {
        let mut r = PhaseResult {
            latencies,
            elapsed: started.elapsed(),
            ..PhaseResult::default()
        };
        let n = r.latencies.len();
        row.print(step, n, errors + others, &mut r, used);
    }
}

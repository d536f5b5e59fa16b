//! A fleet of agents under load for the Galera tests: each agent reports a changing task set in
//! a loop with the agent's own client over mutual TLS (`MasterClient` with every master: it
//! moves to the next when one fails), and keeps the last set a master answered; the consistency check compares every agent's
//! pending rows in the database with that set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use masif_agent::{MasterClient, MasterError};
use masif_proto::{Action, PackageName, Task, TaskSet, Version};
use masif_testkit::galera::GaleraDatabase;
use masif_testkit::pki::{EphemeralCa, Usage};

/// What happened to one agent.
#[derive(Default)]
pub struct AgentRecord {
    /// Reports a master answered.
    pub answered: AtomicU64,
    /// The task set of the last answered report.
    pub last: Mutex<Option<TaskSet>>,
}

/// What went wrong, fleet-wide.
#[derive(Debug, Default)]
pub struct Failures {
    /// Times an agent's client moved to the other master because the one in use could not
    /// answer (unreachable, connection cut, 502/503/504): the agent's own retry.
    pub switches: AtomicU64,
    /// Reports that no master answered (the agent tries again at its retry interval).
    pub unanswered: AtomicU64,
    /// Anything else (a 4xx or 500, an invalid answer): never expected.
    pub fatal: Mutex<Vec<String>>,
}

/// The agents' loops and what they recorded.
pub struct Fleet {
    pub names: Vec<String>,
    pub records: Vec<Arc<AgentRecord>>,
    pub failures: Arc<Failures>,
    stop: Arc<AtomicBool>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

/// A pending task row: agent, package, action, from and to version.
type PendingRow = (String, String, String, Option<String>, Option<String>);

/// A report that got no answer from any master for this long fails the test (a hang guard).
const GIVE_UP: Duration = Duration::from_secs(300);

impl Fleet {
    /// Starts `n` agents (`galera-agent-0001` …), each with a certificate of `ca` and the
    /// masters `hosts` (the client draws the first at random, spreading the fleet), reporting
    /// every `pause` to `2 × pause`.
    pub fn start(
        ca: &EphemeralCa,
        dir: &std::path::Path,
        n: usize,
        hosts: &[String],
        cn: &str,
        pause: Duration,
    ) -> Self {
        let failures = Arc::new(Failures::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut names = Vec::new();
        let mut records = Vec::new();
        let mut loops = Vec::new();
        for i in 0..n {
            let name = format!("galera-agent-{i:04}");
            let issued = ca.issue(&name, Usage::Client).unwrap();
            let files = ca.write_files(&dir.join(&name), &issued, None).unwrap();
            let client = MasterClient::new(&files, hosts, cn).unwrap();
            let record = Arc::new(AgentRecord::default());
            loops.push(tokio::spawn(agent_loop(
                i,
                client,
                record.clone(),
                failures.clone(),
                stop.clone(),
                pause,
            )));
            names.push(name);
            records.push(record);
        }
        Self {
            names,
            records,
            failures,
            stop,
            loops,
        }
    }

    /// The number of answered reports of every agent.
    pub fn answered(&self) -> Vec<u64> {
        self.records
            .iter()
            .map(|r| r.answered.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits until every agent has `more` answered reports beyond `since` (from
    /// [`Fleet::answered`]); panics after `within`, naming an agent that fell behind.
    pub async fn wait_for_more(&self, since: &[u64], more: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.answered();
            let behind = now
                .iter()
                .zip(since)
                .position(|(now, since)| *now < since + more);
            let Some(i) = behind else { return };
            assert!(
                Instant::now() < deadline,
                "{} has {} answered reports, not {} (fatal failures: {:?})",
                self.names[i],
                now[i],
                since[i] + more,
                self.failures.fatal.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the loops once each agent's report in flight has been answered.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for l in self.loops.drain(..) {
            l.await.unwrap();
        }
    }

    /// Every agent's pending rows in the database (read through node `node`) against its last
    /// answered report: the differences, one line per agent, empty when all agree exactly.
    pub async fn inconsistencies(&self, db: &GaleraDatabase, node: usize) -> Vec<String> {
        let rows: Vec<PendingRow> = db
            .query_on(
                node,
                "SELECT a.name, p.name, t.action, t.from_version, t.to_version \
                 FROM task t JOIN agent a ON a.id = t.agent JOIN package p ON p.id = t.package \
                 WHERE t.approved = 0",
                (),
            )
            .await;
        let mut stored: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (agent, package, action, from, to) in rows {
            stored.entry(agent).or_default().push(row(
                &package,
                &action,
                from.as_deref(),
                to.as_deref(),
            ));
        }
        let mut problems = Vec::new();
        for (name, record) in self.names.iter().zip(&self.records) {
            let mut expected: Vec<String> = record
                .last
                .lock()
                .unwrap()
                .as_ref()
                .expect("every agent had a report answered")
                .iter()
                .map(|t| {
                    row(
                        t.package().as_str(),
                        &t.action().to_string(),
                        t.from_version().map(|v| v.as_str()),
                        t.to_version().map(|v| v.as_str()),
                    )
                })
                .collect();
            expected.sort();
            let mut found = stored.remove(name).unwrap_or_default();
            found.sort();
            if found != expected {
                problems.push(format!(
                    "{name}: stored {found:?}, last answered {expected:?}"
                ));
            }
        }
        for (name, found) in stored {
            problems.push(format!("{name}: unknown agent with pending rows {found:?}"));
        }
        problems
    }
}

fn row(package: &str, action: &str, from: Option<&str>, to: Option<&str>) -> String {
    format!(
        "{action} {package} {} {}",
        from.unwrap_or("-"),
        to.unwrap_or("-")
    )
}

/// The task set agent `agent` reports in its `round`th report: 1 to 6 updates among 30
/// packages, to a version naming the round (so every report changes the pending set), and
/// every seventh round nothing (the pending set emptied).
pub fn tasks_for(agent: usize, round: u64) -> TaskSet {
    if round % 7 == 6 {
        return TaskSet::new();
    }
    let mut seed = (agent as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let count = 1 + next() % 6;
    (0..count)
        .map(|_| {
            let package = PackageName::new(format!("pkg{:02}", next() % 30)).unwrap();
            Task::new(
                package,
                Action::Update,
                Some(Version::new("1.0").unwrap()),
                Some(Version::new(format!("2.{round}")).unwrap()),
            )
            .unwrap()
        })
        .collect()
}

/// One agent: report until a master answers (the client moves between masters by itself;
/// when none answered, again after a pause as the agent's retry interval), then the next round.
async fn agent_loop(
    agent: usize,
    client: MasterClient,
    record: Arc<AgentRecord>,
    failures: Arc<Failures>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) {
    let mut round = 0;
    // Start at different moments, as a fleet does.
    tokio::time::sleep(pause.mul_f64(jitter(agent, 0))).await;
    while !stop.load(Ordering::Relaxed) {
        let tasks = tasks_for(agent, round);
        let started = Instant::now();
        loop {
            let before = client.host().to_owned();
            let answer = client
                .report(&tasks, &TaskSet::new(), Duration::ZERO, None)
                .await;
            if client.host() != before {
                failures.switches.fetch_add(1, Ordering::Relaxed);
            }
            match answer {
                Ok(answer) => {
                    assert!(answer.approved.is_empty(), "nothing was approved");
                    *record.last.lock().unwrap() = Some(tasks);
                    record.answered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) if unavailable(&e) => {
                    failures.unanswered.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    failures
                        .fatal
                        .lock()
                        .unwrap()
                        .push(format!("agent {agent}: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            assert!(
                started.elapsed() < GIVE_UP,
                "agent {agent}: no master answered round {round} in {} s",
                GIVE_UP.as_secs()
            );
        }
        round += 1;
        tokio::time::sleep(pause.mul_f64(1.0 + jitter(agent, round))).await;
    }
}

/// Whether no master could answer at all (the agent's retry interval applies), as opposed to
/// a master refusing the report.
fn unavailable(e: &MasterError) -> bool {
    match e {
        MasterError::NoneAnswered(errors) => errors.iter().all(MasterError::is_unavailable),
        e => e.is_unavailable(),
    }
}

/// A number in [0, 1) from `agent` and `round`.
fn jitter(agent: usize, round: u64) -> f64 {
    let mixed = (agent as u64 ^ round.rotate_left(32)).wrapping_mul(0x2545_f491_4f6c_dd1d);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

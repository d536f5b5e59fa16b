//! The shared database of master and UI: schema migrations, the agent report transaction,
//! approvals and the UI's queries, behind one interface with a MySQL/MariaDB and an embedded
//! SQLite back end. SQL lives only in this crate.

#![warn(unreachable_pub)]

mod audit;
mod backoff;
mod clock;
mod error;
mod facts;
mod migrations;
mod model;
pub mod mysql;
mod pending;
mod pending_counts;
mod queue;
mod rollout_core;
mod rollouts;
mod runs;
pub mod schedule;
pub mod sqlite;
mod stored;
mod summary;
mod url;

pub use error::{Result, StoreError};
pub use model::*;
pub use pending::ApprovalPatterns;
pub use queue::DEFAULT_MAX_QUEUED_REPORTS;
pub use rollout_core::MAX_IN_FLIGHT;
pub use rollouts::*;
pub use url::{db_addresses, DbUrl, DbUrlError, MAX_DB_URLS};

/// Agents (or, for an approval for every agent, pending rows per task) one transaction of an
/// approval covers on MySQL.
pub const APPROVAL_CHUNK: usize = 999;

use std::sync::Arc;

use async_trait::async_trait;
use masif_proto::facts::Facts;
use masif_proto::{AgentName, TaskSet};

/// What the master needs: the report transaction.
#[async_trait]
pub trait Reports: Send + Sync {
    /// Records `tasks` as the agent's report and returns the subset approved for it.
    ///
    /// Semantics of the original: approval rows (approved=1) whose agent is this agent or NULL
    /// are patterns in which NULL columns match anything; matching tasks are approved; the
    /// others replace the agent's pending set (agent and package rows created as needed, agent
    /// mtime updated when the pending set changes). Conflicts (1213/1205, SQLITE_BUSY) retry
    /// the whole transaction a bounded number of times ([`StoreError::RetriesExhausted`]). A
    /// report that changes nothing costs one read-only round trip, which the MySQL back end
    /// shares with the reports arriving at the same time.
    ///
    /// Dropping the future stops the work, retries included, and what was not committed yet
    /// is rolled back: callers bound each report with a deadline (`tokio::time::timeout`) so a
    /// report whose client has gone does not keep retrying.
    async fn report(&self, agent: &AgentName, tasks: &TaskSet) -> Result<TaskSet> {
        self.report_with_facts(agent, tasks, None).await
    }

    /// [`Reports::report`] with the host's facts (a v2 report). The facts are part of what
    /// "unchanged" means: they are written (host facts, held packages, the facts of the
    /// pending tasks) in the report's transaction when they or the pending set changed, and
    /// an unchanged report with unchanged facts still costs one read-only round trip.
    /// `None` (a v1 report) leaves stored facts as they are.
    async fn report_with_facts(
        &self,
        agent: &AgentName,
        tasks: &TaskSet,
        facts: Option<&Facts>,
    ) -> Result<TaskSet>;

    /// Writes what the back end still holds behind answered reports (MySQL: the `last_seen`
    /// of unchanged reports, otherwise written once a second), and returns once it is written.
    /// The master calls it once its last request is done; tests call it instead of waiting.
    async fn flush(&self) {}

    /// Deletes `package` rows that no `task` row (pending or approval) references any more,
    /// with the facts stored for them, in transactions of at most 1,000 packages; returns how
    /// many. Safe beside concurrent reports, approvals and other masters doing the same: a
    /// package is deleted only under an exclusive lock and after checking it unreferenced
    /// while holding it, and every writer that references a package holds a shared lock on it
    /// until it commits (a report that then finds its package gone creates it again).
    async fn remove_orphan_packages(&self) -> Result<u64>;

    /// Transaction attempts of this store that conflicted with another transaction and were
    /// rolled back, to be tried again or given up (MySQL: deadlock 1213, also a Galera
    /// certification conflict, and lock wait timeout 1205, and attempts that met a failed
    /// node: out of reach, or 1047; SQLite: a database busy or locked), since it was opened.
    /// Reads a counter.
    fn retries(&self) -> u64 {
        0
    }
}

/// What closing the loop needs on the master's side: noticing approval changes for
/// long-polling agents, and storing the results of their package runs.
#[async_trait]
pub trait AgentLoop: Send + Sync {
    /// A token that changes whenever the approvals in force change, for long-polling agents.
    /// Approvals, revocations and resets made through this store bump a counter in the same
    /// transaction (read alone when `deep` is false: one tiny query): every approval and
    /// reset, even one that changed nothing, and every revocation that deleted a row. With
    /// `deep`, the token also carries the count and id sum of all approval rows, so approvals
    /// written straight into the tables (the original UI) are noticed too.
    async fn approval_token(&self, deep: bool) -> Result<ApprovalToken>;

    /// Every approval in force, to match long-polling agents' reports against in memory, with
    /// the report's semantics (rows naming an agent or package that no longer exists match
    /// nothing).
    async fn approval_patterns(&self) -> Result<ApprovalPatterns>;

    /// Stores the agent's `runs` (a run whose id is already stored for the agent is skipped,
    /// so a resent batch is stored once; new ones are stored oldest start first), keeps each
    /// package's latest outcome per agent (by start: an older run resent late does not replace
    /// a newer outcome; only `failed` counts as failing), and keeps only the agent's newest
    /// `retention.keep_per_agent` runs (by id: by arrival). Creates the agent row if needed,
    /// in one transaction with the rest. Returns how many runs were new (also those the
    /// retention deleted at once).
    async fn record_runs(
        &self,
        agent: &AgentName,
        runs: &[masif_proto::v2::Run],
        retention: &Retention,
    ) -> Result<u64>;

    /// Deletes runs, and latest outcomes, that started more than `retention.max_age_secs`
    /// ago, in transactions of at most 10,000 rows. Returns how many runs.
    async fn purge_runs(&self, retention: &Retention) -> Result<u64>;
}

/// What the UI needs: overviews, approvals, revocation, reset, audit.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Pending tasks grouped by package → (action, target version), packages ordered by the
    /// number of agents awaiting approval (most first), then name.
    async fn pending_overview(&self, filter: &PendingFilter, page: Page)
        -> Result<PendingOverview>;
    /// Agents that await any of `keys` (for "select specific agents first"), by name: `page`
    /// of them, and how many there are.
    async fn agents_awaiting(&self, keys: &[TaskKey], page: Page) -> Result<Listing<AgentSummary>>;
    /// What approving `keys` for `scope` pulls in: the union of the `needs` the agents in
    /// scope reported for their pending rows matching `keys` (the closure the approve form
    /// offers), without `keys` themselves.
    async fn needs_of(&self, keys: &[TaskKey], scope: &ApprovalScope) -> Result<Vec<TaskKey>>;
    /// The agents `filter` selects, with last contact, pending counts and last run, ordered
    /// by name.
    async fn agents(&self, filter: &AgentFilter, page: Page) -> Result<Listing<AgentSummary>>;
    /// How many agents there are, how many are offline (last contact before `offline_before`,
    /// unix seconds: the last report, or for agents only the original master has seen the
    /// last change of their pending set) and how many have a failing package.
    async fn agent_counts(&self, offline_before: i64) -> Result<AgentCounts>;
    /// How many pending (not approved) tasks there are of each action, in
    /// [`masif_proto::Action::ALL`]'s order, zero included: from the pending summary, per
    /// package and action the agents awaiting it (an agent with two rows of one package and
    /// action, possible only with two from-versions, counts once).
    async fn pending_by_action(&self) -> Result<Vec<(masif_proto::Action, u64)>>;
    /// One agent's runs, newest (last stored) first; none for an unknown agent. A stored run
    /// that does not read back is [`StoreError::Unreadable`].
    async fn agent_runs(&self, name: &AgentName, page: Page) -> Result<Listing<RunRecord>>;
    /// Packages whose latest run failed on at least one agent, with how many agents, most
    /// first. Shown on the pending page, so that an approved task that fails is never invisible.
    async fn failing_packages(&self) -> Result<Vec<FailingPackage>>;
    /// One agent and its pending tasks; `None` if unknown.
    async fn agent_detail(&self, name: &AgentName) -> Result<Option<AgentDetail>>;
    /// Replaces the matching pending rows by approval rows (from_version NULL; agent NULL for
    /// [`ApprovalScope::AllAgents`]), records who and when, writes an audit entry.
    async fn approve(
        &self,
        keys: &[TaskKey],
        scope: &ApprovalScope,
        user: &str,
    ) -> Result<ApprovalOutcome> {
        let tasks: Vec<ApprovalTask> = keys.iter().cloned().map(ApprovalTask::from).collect();
        self.approve_tasks(&tasks, scope, user).await
    }
    /// [`Admin::approve`], where a task may name the version it must be upgraded from: then
    /// only pending rows from that version are approved, and the approval row keeps it (an
    /// agent later reporting the same action from another version needs a new approval).
    /// An unknown agent in `scope` is [`StoreError::Invalid`] and nothing is written.
    async fn approve_tasks(
        &self,
        tasks: &[ApprovalTask],
        scope: &ApprovalScope,
        user: &str,
    ) -> Result<ApprovalOutcome> {
        self.approve_tasks_tracked(tasks, scope, user, &ApprovalProgress::default())
            .await
    }
    /// [`Admin::approve_tasks`], telling `progress` how far it got. On MySQL a large approval
    /// is written in chunks of [`APPROVAL_CHUNK`] agents (or, for every agent, of that many
    /// pending rows per task), each its own short transaction, so that no transaction holds
    /// locks for long; the audit entry, written with the first chunk that changes anything,
    /// says how far it got until the last one. An approval that fails part-way keeps the
    /// chunks written: approving again writes the rest.
    async fn approve_tasks_tracked(
        &self,
        tasks: &[ApprovalTask],
        scope: &ApprovalScope,
        user: &str,
        progress: &ApprovalProgress,
    ) -> Result<ApprovalOutcome>;
    /// The approvals in force, newest first.
    async fn approvals(&self, page: Page) -> Result<Listing<Approval>>;
    /// Deletes one approval row; `false` if there was none with that id. Audited.
    async fn revoke(&self, approval_id: u64, user: &str) -> Result<bool>;
    /// Row counts shown before a reset.
    async fn counts(&self) -> Result<TableCounts>;
    /// Deletes all tasks, and with `packages_and_agents` also packages and agents (and all
    /// runs). Audited. Returns what was deleted.
    async fn reset(&self, packages_and_agents: bool, user: &str) -> Result<TableCounts>;
    /// One step of the pending summary's check: the next few packages after package id
    /// `after` (0: from the first) recounted from their pending rows, and the summary corrected
    /// where it differs, which only a writer bypassing this store causes (the original master
    /// or UI, hand-written SQL). Call again from [`SummaryCheck::next`] until it is `None`.
    async fn check_pending_summary(&self, after: u64) -> Result<SummaryCheck>;
    /// The audit log, newest first.
    async fn audit_log(&self, page: Page) -> Result<Listing<AuditEntry>>;
}

/// Both halves; master and UI hold an `Arc<dyn Store>`.
pub trait Store: Reports + AgentLoop + Admin + Rollouts {}
impl<T: Reports + AgentLoop + Admin + Rollouts> Store for T {}

/// What the daemons' configuration sets of either back end.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Most reports inside the store at once (`db.max_queued_reports`); one more fails at
    /// once with [`StoreError::Overloaded`].
    pub max_queued_reports: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            max_queued_reports: DEFAULT_MAX_QUEUED_REPORTS,
        }
    }
}

/// Opens the database `url` names and brings its schema up to date.
pub async fn open(url: &DbUrl) -> Result<Arc<dyn Store>> {
    open_with(url, &StoreSettings::default()).await
}

/// [`open`] with `settings`.
pub async fn open_with(url: &DbUrl, settings: &StoreSettings) -> Result<Arc<dyn Store>> {
    Ok(match url {
        DbUrl::Mysql(url) => {
            let options = mysql::MysqlOptions {
                max_queued_reports: settings.max_queued_reports,
                ..mysql::MysqlOptions::default()
            };
            Arc::new(mysql::MysqlStore::connect_with(url, options).await?)
        }
        DbUrl::Sqlite(path) => {
            let store = sqlite::SqliteStore::open(path).await?;
            store.set_max_queued_reports(settings.max_queued_reports);
            Arc::new(store)
        }
    })
}

/// Opens the database the addresses `urls` name (`db.urls`; one address is the same as
/// [`open_with`]). Several must all be `mysql://`: they are addresses of one database (the
/// nodes of a Galera cluster, or servers behind one name), and the store uses the first that
/// works and moves to the next when it fails (see [`mysql::MysqlStore::connect_nodes`]).
pub async fn open_any(urls: &[DbUrl], settings: &StoreSettings) -> Result<Arc<dyn Store>> {
    match urls {
        [] => Err(StoreError::Url(
            String::new(),
            "no database address given".into(),
        )),
        [url] => open_with(url, settings).await,
        _ => {
            let mut mysql = Vec::with_capacity(urls.len());
            for url in urls {
                match url {
                    DbUrl::Mysql(url) => mysql.push(url.as_str()),
                    DbUrl::Sqlite(_) => {
                        return Err(StoreError::Url(
                            url.to_string(),
                            "a SQLite database is one file: it takes a single address".into(),
                        ))
                    }
                }
            }
            let options = mysql::MysqlOptions {
                max_queued_reports: settings.max_queued_reports,
                ..mysql::MysqlOptions::default()
            };
            Ok(Arc::new(
                mysql::MysqlStore::connect_nodes(&mysql, options).await?,
            ))
        }
    }
}

/// `db.url URL` for one address, `db.urls [URL, …]` for several (passwords redacted), to say
/// which database a daemon could not open.
pub fn describe_urls(urls: &[DbUrl]) -> String {
    match urls {
        [url] => format!("db.url {url}"),
        _ => {
            let list: Vec<String> = urls.iter().map(ToString::to_string).collect();
            format!("db.urls [{}]", list.join(", "))
        }
    }
}

/// A database URL string with any password replaced by `***`, for logs and error messages
/// about a URL that is not (yet) a [`DbUrl`] (whose `Display` redacts by itself).
pub fn redact_url(url: &str) -> String {
    url::redact(url)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("mysql://masif:secret@127.0.0.1:3306/db"),
            "mysql://masif:***@127.0.0.1:3306/db"
        );
        assert_eq!(
            redact_url("mysql://root@localhost/db"),
            "mysql://root@localhost/db"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/masif.db"),
            "sqlite:///var/lib/masif.db"
        );
    }
}

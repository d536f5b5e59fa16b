//! The command line of the API subcommands (`masif pending`, `approve`, `approvals`, `revoke`,
//! `agents`, `agent`, `audit`, `check-fleet`, `tags`, `tag set`, `rollouts`, `rollout …`):
//! what clap parses.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use masif_agent::plugin::Range;
use masif_proto::{Action, Tag};

pub use super::windows::{MaxInFlight, OnceSpec, WeeklySpec};

/// The system's CA bundle, used for `https://` unless `--ca` names another.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to reach the UI's API.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The UI's base URL, e.g. https://masif.example.org/ (a path prefix is kept).
    #[arg(long, env = "MASIF_URL", value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the API token (one line); without it the token is read from the
    /// environment variable MASIF_TOKEN.
    #[arg(long, env = "MASIF_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA bundle that an https:// UI's certificate must chain to [default:
    /// /etc/ssl/certs/ca-certificates.crt].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Longest a request may take, connecting included.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Print the API's JSON answer (pretty) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which page of a listing.
#[derive(Debug, Clone, Args)]
pub struct Paging {
    /// The page to show (1-based).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub page: u64,
    /// Entries per page (1 to 500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub per_page: u64,
}

/// The subcommands that talk to the UI's JSON API.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// List the pending tasks, grouped by package, with the security count and the approved
    /// packages that failed.
    Pending {
        #[command(flatten)]
        conn: Connection,
        /// Only packages whose name contains this (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        package: Option<String>,
        /// Only tasks of agents whose name contains this (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        agent: Option<String>,
        /// Only this action (install, update, configure, remove, purge).
        #[arg(long)]
        action: Option<Action>,
        /// Only security updates.
        #[arg(long)]
        security: bool,
        /// Only tasks of agents carrying this tag.
        #[arg(long, value_name = "TAG")]
        tag: Option<Tag>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Approve tasks, for every agent, the ones named with --agent or those carrying --tag.
    ///
    /// One task as PACKAGE ACTION [TO_VERSION] (with --from-version to approve it only from
    /// that version), more with repeated --task ACTION:PACKAGE[=TO_VERSION], e.g.
    /// `masif approve --task update:openssl=3.0.17-1 --task remove:telnet`.
    Approve {
        #[command(flatten)]
        conn: Connection,
        /// The package of the one task given positionally.
        #[arg(requires = "action")]
        package: Option<String>,
        /// Its action.
        action: Option<Action>,
        /// Its target version (install, update; configure when the agents report one).
        to_version: Option<String>,
        /// Approve the positional task only from this version.
        #[arg(long, value_name = "VERSION", requires = "package")]
        from_version: Option<String>,
        /// A task as ACTION:PACKAGE[=TO_VERSION] (repeatable).
        #[arg(long = "task", value_name = "ACTION:PACKAGE[=VERSION]")]
        tasks: Vec<TaskSpec>,
        /// Approve for this agent only (repeatable; default: every agent).
        #[arg(long = "agent", value_name = "NAME")]
        agents: Vec<String>,
        /// Approve for the agents carrying this tag now.
        #[arg(long, value_name = "TAG", conflicts_with = "agents")]
        tag: Option<Tag>,
    },
    /// List the approvals in force, newest first, with the ids `masif revoke` takes.
    Approvals {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        paging: Paging,
    },
    /// Revoke approvals by id (see `masif approvals`).
    Revoke {
        #[command(flatten)]
        conn: Connection,
        /// Approval ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<u64>,
    },
    /// List the agents: last contact, offline, pending tasks, failures, reboot, last run.
    Agents {
        #[command(flatten)]
        conn: Connection,
        /// Only agents whose name contains this (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
        /// Only offline agents.
        #[arg(long)]
        offline: bool,
        /// Only agents with a package whose latest run failed.
        #[arg(long)]
        failing: bool,
        /// Only agents whose host needs a reboot.
        #[arg(long)]
        reboot_required: bool,
        /// Only agents carrying this tag.
        #[arg(long, value_name = "TAG")]
        tag: Option<Tag>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one agent: status, host facts, pending tasks and run history (paged).
    Agent {
        #[command(flatten)]
        conn: Connection,
        /// The agent's name.
        name: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show the audit log, newest first.
    Audit {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        paging: Paging,
    },
    /// List the tags: their agents, max in flight, live leases and maintenance windows.
    Tags {
        #[command(flatten)]
        conn: Connection,
    },
    /// Change a tag's settings (see `masif tag set --help`).
    Tag {
        #[command(subcommand)]
        command: TagCommand,
    },
    /// List the staged roll-outs, newest first, with their current ring's progress.
    Rollouts {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        paging: Paging,
    },
    /// Start, show or promote a staged roll-out.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Monitoring plugin (Icinga/Nagios): offline agents, failing agents and old pending
    /// security updates. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    ///
    /// Thresholds are Nagios ranges: N alerts when the count is above N (0:N), @~:N when it is
    /// at most N.
    CheckFleet {
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        thresholds: FleetThresholds,
    },
}

/// `masif tag …`.
#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Set a tag's max in flight and maintenance windows; a part not given keeps its current
    /// value.
    ///
    /// Agents carrying a tag with windows run approved tasks only inside a window of one of
    /// their windowed tags; of a tag with a max in flight K at most K agents upgrade at once.
    /// E.g. `masif tag set web --max-in-flight 2 --weekly mon-fri,02:00-04:00,Europe/Berlin`.
    Set {
        #[command(flatten)]
        conn: Connection,
        /// The tag.
        tag: Tag,
        /// At most K agents of the tag upgrade at once (1 to 100000), or `none` for no limit.
        #[arg(long, value_name = "K|none")]
        max_in_flight: Option<MaxInFlight>,
        /// A weekly window DAYS,HH:MM-HH:MM,ZONE: days as mon,tue,… or ranges such as
        /// mon-fri, local times (end up to 24:00) in an IANA time zone (repeatable; replaces
        /// the tag's windows).
        #[arg(long, value_name = "DAYS,HH:MM-HH:MM,ZONE")]
        weekly: Vec<WeeklySpec>,
        /// A one-off window FROM/TO, both RFC 3339 (e.g. 2026-12-24T20:00:00Z) (repeatable;
        /// replaces the tag's windows).
        #[arg(long, value_name = "FROM/TO")]
        once: Vec<OnceSpec>,
        /// Remove the tag's windows: its agents may run at any time.
        #[arg(long, conflicts_with_all = ["weekly", "once"])]
        no_windows: bool,
    },
}

/// `masif rollout …`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start a staged roll-out: approve the tasks for the agents carrying the first ring's
    /// tag now, then ring after ring (after --soak seconds, or by `masif rollout promote`).
    ///
    /// E.g. `masif rollout start --ring canary --ring prod --soak 3600 --max-failure-percent 10
    /// --task update:openssl=3.0.17-1`.
    Start {
        #[command(flatten)]
        conn: Connection,
        /// A ring's tag, in order (repeatable, 1 to 10).
        #[arg(long = "ring", value_name = "TAG", required = true)]
        rings: Vec<Tag>,
        /// Promote by itself this many seconds after a ring was approved, when at least one of
        /// its agents succeeded [default: promote by hand only].
        #[arg(long, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
        soak: Option<u64>,
        /// Halt when more than this percentage of the current ring's agents failed.
        #[arg(long, value_name = "PERCENT", default_value_t = 0,
              value_parser = clap::value_parser!(u8).range(0..=100))]
        max_failure_percent: u8,
        /// A task as ACTION:PACKAGE[=TO_VERSION] (repeatable, at least one).
        #[arg(
            long = "task",
            value_name = "ACTION:PACKAGE[=VERSION]",
            required = true
        )]
        tasks: Vec<TaskSpec>,
    },
    /// Show a roll-out: its rings, state, current ring's progress and tasks.
    Show {
        #[command(flatten)]
        conn: Connection,
        /// The roll-out's id (see `masif rollouts`).
        id: u64,
    },
    /// Approve a roll-out's next ring now; a halted roll-out needs --force.
    Promote {
        #[command(flatten)]
        conn: Connection,
        /// The roll-out's id.
        id: u64,
        /// Promote a halted roll-out too.
        #[arg(long)]
        force: bool,
    },
}

/// The thresholds of `masif check-fleet`: Nagios ranges (`N` alerts above N, `@~:42`…).
#[derive(Debug, Clone, Args)]
pub struct FleetThresholds {
    /// WARNING when the number of offline agents is outside this range.
    #[arg(long, value_name = "RANGE", default_value = "0")]
    pub offline_warn: Range,
    /// CRITICAL when the number of offline agents is outside this range [default: never].
    #[arg(long, value_name = "RANGE")]
    pub offline_crit: Option<Range>,
    /// WARNING when the number of agents with a package whose latest run failed is outside
    /// this range.
    #[arg(long, value_name = "RANGE", default_value = "0")]
    pub failing_warn: Range,
    /// CRITICAL when the number of failing agents is outside this range [default: never].
    #[arg(long, value_name = "RANGE")]
    pub failing_crit: Option<Range>,
    /// A security update is overdue once it has been pending this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u64).range(0..=36_500))]
    pub security_age: u64,
    /// WARNING when the number of overdue security updates is outside this range.
    #[arg(long, value_name = "RANGE", default_value = "0")]
    pub security_warn: Range,
    /// CRITICAL when the number of overdue security updates is outside this range [default:
    /// never].
    #[arg(long, value_name = "RANGE")]
    pub security_crit: Option<Range>,
}

/// A task to approve, from `ACTION:PACKAGE[=TO_VERSION]`: the action is the word before the
/// first `:`, the package runs to the first `=` (Debian names and versions hold no `=`; an
/// architecture qualifier such as `libc6:i386` stays in the package), the version is the rest
/// (epochs such as `1:2.0-1` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub action: Action,
    pub package: String,
    pub to_version: Option<String>,
}

impl std::str::FromStr for TaskSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (action, rest) = s
            .split_once(':')
            .ok_or("expected ACTION:PACKAGE[=TO_VERSION]")?;
        let action: Action = action.parse().map_err(|e| format!("{e}"))?;
        let (package, to_version) = match rest.split_once('=') {
            Some((p, v)) => (p, Some(v)),
            None => (rest, None),
        };
        if package.is_empty() || to_version == Some("") {
            return Err("empty package or version in ACTION:PACKAGE[=TO_VERSION]".into());
        }
        Ok(Self {
            action,
            package: package.to_owned(),
            to_version: to_version.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_specs_split_action_package_and_version() {
        let spec = |s: &str| s.parse::<TaskSpec>();
        assert_eq!(
            spec("update:libc6:i386=1:2.36-9+deb12u13").unwrap(),
            TaskSpec {
                action: Action::Update,
                package: "libc6:i386".into(),
                to_version: Some("1:2.36-9+deb12u13".into()),
            }
        );
        assert_eq!(
            spec("remove:telnet").unwrap(),
            TaskSpec {
                action: Action::Remove,
                package: "telnet".into(),
                to_version: None,
            }
        );
        for bad in [
            "update",
            "upgrade:zeta=2",
            "update:=2",
            "update:zeta=",
            ":zeta",
        ] {
            assert!(spec(bad).is_err(), "{bad}");
        }
    }
}

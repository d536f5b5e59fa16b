//! The flags of `masif-agent check`, with `--load KIND-WINDOW-LEVEL=RANGE` (what the
//! original plugin's `-query-1m-warn RANGE` and its siblings become).

use std::path::PathBuf;
use std::str::FromStr;

use crate::load::OpKind;
use crate::plugin::Range;

/// The operation kinds of `/v1/load`, in the original's order (the agent's own names).
pub(crate) fn kinds() -> [&'static str; 7] {
    OpKind::all().map(OpKind::name)
}
/// The windows of `/v1/load`, in the order of its numbers.
pub(crate) const WINDOWS: [&str; 3] = ["1m", "5m", "15m"];

/// Checks the local agent through its monitoring socket, as a Nagios/Icinga plugin: exit 0
/// OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, with performance data.
///
/// Installed as check_masifupgrader_agent (a symlink to masif-agent) it behaves as
/// `masif-agent check --original` and takes the original plugin's single-dash flags.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = ORIGINAL_FLAGS_HELP)]
pub struct CheckArgs {
    /// The agent's configuration, read only for its `socket` (unless --socket is given).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/masif-upgrader/agent.yml"
    )]
    pub config: PathBuf,
    /// The agent's monitoring socket (default: `socket` of --config).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Give up (UNKNOWN) when the agent has not answered within this many seconds.
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 10.0,
          value_parser = positive_seconds)]
    pub timeout: f64,
    /// Age of the last successful report to the master (seconds) that is a WARNING
    /// [default: 1800, not with --original].
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub report_warn: Option<Range>,
    /// Age of the last successful report that is CRITICAL [default: 7200, not with --original].
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub report_crit: Option<Range>,
    /// Packages whose last upgrade failed that are a WARNING [default: 0, i.e. any; not with
    /// --original].
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub failed_warn: Option<Range>,
    /// Packages whose last upgrade failed that are CRITICAL.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub failed_crit: Option<Range>,
    /// Approved tasks not yet carried out that are a WARNING.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub approved_warn: Option<Range>,
    /// Approved tasks not yet carried out that are CRITICAL.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub approved_crit: Option<Range>,
    /// How long (seconds) approved tasks may wait undone before a WARNING [default: 3600,
    /// not with --original].
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub approved_age_warn: Option<Range>,
    /// How long approved tasks may wait undone before CRITICAL.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub approved_age_crit: Option<Range>,
    /// What a required reboot is [default: warning; ok with --original].
    #[arg(long, value_name = "STATE")]
    pub reboot_required: Option<Verdict>,
    /// What unfinished packages reported by `dpkg --audit` are [default: warning; ok with
    /// --original].
    #[arg(long, value_name = "STATE")]
    pub dpkg_audit: Option<Verdict>,
    /// Response time of the socket (seconds) that is a WARNING (original: -resptime-warn).
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub resptime_warn: Option<Range>,
    /// Response time of the socket that is CRITICAL (original: -resptime-crit).
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub resptime_crit: Option<Range>,
    /// A threshold on a /v1/load figure, e.g. `error-15m-warn=0` or `query-1m-crit=@~:42`
    /// (original: -query-1m-crit @~:42); KIND is query, install, update, configure, remove,
    /// purge or error, WINDOW 1m, 5m or 15m, LEVEL warn or crit. Repeatable.
    #[arg(long, value_name = "KIND-WINDOW-LEVEL=RANGE")]
    pub load: Vec<LoadThreshold>,
    /// Judge only what the original check_masifupgrader_agent judged (the answer, its
    /// response time, the load thresholds): the other checks apply only where their flags
    /// are given.
    #[arg(long)]
    pub original: bool,
}

const ORIGINAL_FLAGS_HELP: &str = "\
RANGE is a Nagios threshold range: 10 (alert outside 0..10), 10: (below 10), ~:10 (above \
10), 10:20 (outside 10..20), @10:20 (inside 10..20), @~:42 (42 or below).

The original plugin's flags are accepted with one dash or two: -restsock PATH (--socket), \
-resptime-warn RANGE, -resptime-crit RANGE and \
-(query|install|update|configure|remove|purge|error)-(1m|5m|15m)-(warn|crit) RANGE \
(--load KIND-WINDOW-LEVEL=RANGE), also as -flag=VALUE.";

/// How a yes/no finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
}

/// One `--load` threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadThreshold {
    /// Index into [`kinds`].
    pub kind: usize,
    /// Index into [`WINDOWS`].
    pub window: usize,
    /// `crit` rather than `warn`.
    pub critical: bool,
    pub range: Range,
}

impl LoadThreshold {
    /// `query-1m`: the figure's perfdata label.
    pub fn label(&self) -> String {
        format!("{}_{}", kinds()[self.kind], WINDOWS[self.window])
    }
}

impl FromStr for LoadThreshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, range) = text
            .split_once('=')
            .ok_or("expected KIND-WINDOW-LEVEL=RANGE, e.g. error-15m-warn=0")?;
        let (kind, window, critical) = parse_load_name(name).ok_or_else(|| {
            format!(
                "{:?} is not KIND-WINDOW-LEVEL (KIND: {}; WINDOW: {}; LEVEL: warn, crit)",
                name.chars().take(40).collect::<String>(),
                kinds().join(", "),
                WINDOWS.join(", ")
            )
        })?;
        Ok(Self {
            kind,
            window,
            critical,
            range: range.parse().map_err(|e| format!("{e}"))?,
        })
    }
}

/// `query-1m-warn` → (0, 0, false); `None` for anything else.
pub(crate) fn parse_load_name(name: &str) -> Option<(usize, usize, bool)> {
    let (rest, critical) = match name.rsplit_once('-')? {
        (rest, "warn") => (rest, false),
        (rest, "crit") => (rest, true),
        _ => return None,
    };
    let (kind, window) = rest.rsplit_once('-')?;
    Some((
        kinds().iter().position(|k| *k == kind)?,
        WINDOWS.iter().position(|w| *w == window)?,
        critical,
    ))
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(s),
        _ => Err("expected seconds, more than 0 and at most 3600".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_thresholds_name_a_figure_and_a_level() {
        let t: LoadThreshold = "query-1m-crit=@~:42".parse().unwrap();
        assert_eq!((t.kind, t.window, t.critical), (0, 0, true));
        assert_eq!(t.label(), "query_1m");
        assert_eq!(t.range.to_string(), "@~:42");
        let t: LoadThreshold = "error-15m-warn=0".parse().unwrap();
        assert_eq!((t.kind, t.window, t.critical), (6, 2, false));
        for bad in [
            "query-1m-warn",
            "query-1m-note=1",
            "quer-1m-warn=1",
            "query-2m-warn=1",
            "query-1m-warn=x",
            "-1m-warn=1",
            "=1",
            "",
        ] {
            assert!(bad.parse::<LoadThreshold>().is_err(), "{bad}");
        }
    }
}

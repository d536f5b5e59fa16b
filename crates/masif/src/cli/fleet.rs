//! `masif check-fleet`: a monitoring plugin over the API (offline agents, failing agents,
//! security updates pending longer than a number of days), one status line with performance
//! data, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use masif_agent::plugin::{self, Perf, Status, Threshold};

use super::client::{ApiClient, ApiError};
use super::model::{describe, Agents, Pending};
use super::text::{clean, plural, unix_now};
use super::{typed, FleetThresholds, Outcome};

/// Most pages of security updates read (500 packages each).
const MAX_PAGES: u64 = 200;
/// Packages per page read.
const PER_PAGE: u64 = 500;
/// Most names quoted in the status line per condition.
const MAX_NAMES: usize = 5;
/// The plugin's name at the start of its line.
const NAME: &str = "MASIF-FLEET";

/// What the API says about the fleet.
#[derive(Debug, Default, serde::Serialize)]
struct Measured {
    agents: u64,
    offline: u64,
    offline_names: Vec<String>,
    failing: u64,
    failing_names: Vec<String>,
    overdue: u64,
    overdue_tasks: Vec<String>,
    /// Security updates whose pending time nobody knows (rows of the original master).
    unknown_age: u64,
}

/// Runs the check; a client that could not be built or any API error is UNKNOWN. With
/// `json`, the state, exit code and figures (or the error) as one JSON object instead.
pub(crate) async fn check(
    client: Result<ApiClient, String>,
    t: &FleetThresholds,
    json: bool,
) -> Outcome {
    let measured = match client {
        Err(e) => Err(e),
        Ok(client) => measure(&client, t.security_age, unix_now())
            .await
            .map_err(|e| e.to_string()),
    };
    let (status, stdout) = match (measured, json) {
        (Err(e), false) => (
            Status::Unknown,
            plugin::render(NAME, Status::Unknown, &clean(&e), &[], &[]),
        ),
        (Err(e), true) => (
            Status::Unknown,
            serde_json::json!({"status": Status::Unknown, "exit_code": 3, "error": e}).to_string()
                + "\n",
        ),
        (Ok(m), false) => render(&m, t),
        (Ok(m), true) => {
            let (status, line) = render(&m, t);
            let value = serde_json::json!({
                "status": status,
                "exit_code": status.exit_code(),
                "fleet": m,
                "output": line.trim_end(),
            });
            (status, value.to_string() + "\n")
        }
    };
    Outcome {
        code: status.exit_code(),
        stdout,
        stderr: String::new(),
    }
}

async fn measure(client: &ApiClient, age_days: u64, now: i64) -> Result<Measured, ApiError> {
    let agents = |filter: Option<&'static str>, per_page: u64| {
        let mut pairs = vec![("per_page", per_page.to_string())];
        if let Some(f) = filter {
            pairs.push((f, "true".to_owned()));
        }
        client.url(&["agents"], &pairs)
    };
    let all: Agents = typed(client, client.get(&agents(None, 1)).await?)?;
    let mut m = Measured {
        agents: all.counts.agents,
        offline: all.counts.offline,
        failing: all.counts.failing,
        ..Measured::default()
    };
    for (count, filter, names) in [
        (m.offline, "offline", &mut m.offline_names),
        (m.failing, "failing", &mut m.failing_names),
    ] {
        if count > 0 {
            let some: Agents = typed(
                client,
                client.get(&agents(Some(filter), MAX_NAMES as u64)).await?,
            )?;
            names.extend(some.page.items.into_iter().map(|a| a.name));
        }
    }
    let limit = i64::try_from(age_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    for page in 1..=MAX_PAGES {
        let url = client.url(
            &["pending"],
            &[
                ("security", "true".to_owned()),
                ("page", page.to_string()),
                ("per_page", PER_PAGE.to_string()),
            ],
        );
        let answer: Pending = typed(client, client.get(&url).await?)?;
        for package in &answer.page.items {
            for task in package.tasks.iter().filter(|t| t.security) {
                match task.since {
                    None => m.unknown_age += 1,
                    Some(since) if now.saturating_sub(since) > limit => {
                        m.overdue += 1;
                        m.overdue_tasks.push(describe(
                            &task.action,
                            &package.package,
                            task.to_version.as_deref(),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if answer.page.items.is_empty() || page.saturating_mul(PER_PAGE) >= answer.page.total {
            break;
        }
    }
    Ok(m)
}

/// ` (a, b, c, …)` with at most [`MAX_NAMES`] names, cleaned, or nothing.
fn names(list: &[String], count: u64) -> String {
    if list.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = list.iter().take(MAX_NAMES).map(|n| clean(n)).collect();
    let more = match count as usize > shown.len() {
        true => ", …",
        false => "",
    };
    format!(" ({}{more})", shown.join(", "))
}

/// The status and the plugin's output line.
fn render(m: &Measured, t: &FleetThresholds) -> (Status, String) {
    let threshold = |warn: &plugin::Range, crit: &Option<plugin::Range>| Threshold {
        warn: Some(warn.clone()),
        crit: crit.clone(),
    };
    let agents = m.agents as f64;
    let perf = [
        Perf::count("agents", agents),
        Perf {
            max: Some(agents),
            ..Perf::count("offline", m.offline as f64)
                .with_threshold(threshold(&t.offline_warn, &t.offline_crit))
        },
        Perf {
            max: Some(agents),
            ..Perf::count("failing", m.failing as f64)
                .with_threshold(threshold(&t.failing_warn, &t.failing_crit))
        },
        Perf::count("security_overdue", m.overdue as f64)
            .with_threshold(threshold(&t.security_warn, &t.security_crit)),
    ];
    let status = perf
        .iter()
        .map(|p| p.threshold.status(p.value))
        .max()
        .unwrap_or(Status::Ok);
    let mut summary = format!(
        "{} offline{} of {}, {} failing{}, {} pending over {}{}",
        m.offline,
        names(&m.offline_names, m.offline),
        plural(m.agents, "agent"),
        m.failing,
        names(&m.failing_names, m.failing),
        plural(m.overdue, "security update"),
        plural(t.security_age, "day"),
        names(&m.overdue_tasks, m.overdue),
    );
    if m.unknown_age > 0 {
        summary.push_str(&format!(", {} of unknown age", m.unknown_age));
    }
    (status, plugin::render(NAME, status, &summary, &perf, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> FleetThresholds {
        FleetThresholds {
            offline_warn: "0".parse().unwrap(),
            offline_crit: Some("2".parse().unwrap()),
            failing_warn: "1".parse().unwrap(),
            failing_crit: None,
            security_age: 7,
            security_warn: "0".parse().unwrap(),
            security_crit: Some("5".parse().unwrap()),
        }
    }

    #[test]
    fn the_worst_condition_decides_and_perfdata_follows() {
        let mut m = Measured {
            agents: 12,
            failing: 1,
            ..Measured::default()
        };
        let (status, out) = render(&m, &thresholds());
        assert_eq!(status, Status::Ok);
        assert_eq!(
            out,
            "MASIF-FLEET OK - 0 offline of 12 agents, 1 failing, 0 security updates pending over 7 days \
             | agents=12;;;0 offline=0;0;2;0;12 failing=1;1;;0;12 security_overdue=0;0;5;0\n"
        );
        m.offline = 3;
        m.offline_names = vec!["db-\u{1b}1".into(), "web-2".into()];
        m.overdue = 1;
        m.overdue_tasks = vec!["update zeta 2.0".into()];
        m.unknown_age = 2;
        let (status, out) = render(&m, &thresholds());
        assert_eq!(status, Status::Critical);
        assert!(
            out.starts_with(
                "MASIF-FLEET CRITICAL - 3 offline (db-\\u{1b}1, web-2, …) of 12 agents, 1 failing, \
                 1 security update pending over 7 days (update zeta 2.0), 2 of unknown age | "
            ),
            "{out}"
        );
        assert_eq!(out.lines().count(), 1);
    }
}

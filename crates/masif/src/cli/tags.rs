//! `masif tags` and `masif tag set`: tags with their agents, max in flight, leases and
//! maintenance windows; setting them (a part not given keeps the tag's current value, read
//! first, since the API replaces both).

use serde_json::{json, Value};

use super::client::{ApiClient, ApiError};
use super::model::{TagInfo, Tags};
use super::text::Table;
use super::windows::{describe, MaxInFlight, OnceSpec, WeeklySpec};
use super::{pretty, typed};

pub(crate) async fn list(client: &ApiClient, json: bool) -> Result<String, ApiError> {
    let value = client.get(&client.url(&["tags"], &[])).await?;
    if json {
        return Ok(pretty(&value));
    }
    let tags: Tags = typed(client, value)?;
    Ok(render(&tags.tags, "no tags\n"))
}

/// What `masif tag set` changes; `None` keeps the tag's current value.
pub(crate) struct Change {
    pub(crate) max_in_flight: Option<MaxInFlight>,
    pub(crate) windows: Option<Vec<Value>>,
}

impl Change {
    /// From the flags: windows given by --weekly and --once (in that order), none by
    /// --no-windows, else kept.
    pub(crate) fn new(
        max_in_flight: Option<MaxInFlight>,
        weekly: &[WeeklySpec],
        once: &[OnceSpec],
        no_windows: bool,
    ) -> Self {
        let given: Vec<Value> = weekly
            .iter()
            .map(WeeklySpec::to_json)
            .chain(once.iter().map(OnceSpec::to_json))
            .collect();
        let windows = (no_windows || !given.is_empty()).then_some(given);
        Self {
            max_in_flight,
            windows,
        }
    }
}

pub(crate) async fn set(
    client: &ApiClient,
    tag: &str,
    change: Change,
    json: bool,
) -> Result<String, ApiError> {
    let current = match (&change.max_in_flight, &change.windows) {
        (Some(_), Some(_)) => None,
        _ => {
            let value = client.get(&client.url(&["tags"], &[])).await?;
            let tags: Tags = typed(client, value)?;
            tags.tags.into_iter().find(|t| t.tag == tag)
        }
    };
    let max_in_flight = match change.max_in_flight {
        Some(m) => m.to_json(),
        None => json!(current.as_ref().and_then(|t| t.max_in_flight)),
    };
    let windows = change
        .windows
        .or_else(|| current.map(|t| t.windows))
        .unwrap_or_default();
    let body = json!({"max_in_flight": max_in_flight, "windows": windows});
    let value = client.put(&client.url(&["tags", tag], &[]), &body).await?;
    if json {
        return Ok(pretty(&value));
    }
    let info: TagInfo = typed(client, value)?;
    Ok(render(&[info], ""))
}

/// The tags' table: one line per window, the tag's other columns on its first.
fn render(tags: &[TagInfo], empty: &str) -> String {
    let mut table = Table::new(&["TAG", "AGENTS", "MAX IN FLIGHT", "LEASES", "WINDOWS"]);
    for t in tags {
        let mut cells = vec![
            t.tag.clone(),
            t.agents.to_string(),
            t.max_in_flight.map_or("-".into(), |k| k.to_string()),
            t.leases.to_string(),
        ];
        let mut windows = t.windows.iter().map(describe);
        cells.push(windows.next().unwrap_or_else(|| "any time".into()));
        table.row(cells);
        for w in windows {
            table.row([
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                w,
            ]);
        }
    }
    match table.is_empty() {
        true => empty.to_owned(),
        false => table.render(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_list_their_windows_one_per_line_and_escape_hostile_zones() {
        let tags: Tags = serde_json::from_value(json!({"tags": [
            {"tag": "db", "agents": 1, "max_in_flight": null, "windows": [], "leases": 0},
            {"tag": "web", "agents": 12, "max_in_flight": 2, "leases": 1, "windows": [
                {"days": ["mon", "wed"], "start": "02:00", "end": "04:30", "time_zone": "Europe/Berlin"},
                {"from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"},
                {"days": ["sun"], "start": "00:00", "end": "24:00", "time_zone": "\u{1b}[2J"}]}
        ]}))
        .unwrap();
        assert_eq!(
            render(&tags.tags, ""),
            "\
TAG  AGENTS  MAX IN FLIGHT  LEASES  WINDOWS
db   1       -              0       any time
web  12      2              1       mon,wed 02:00-04:30 Europe/Berlin
                                    2030-01-01T00:00:00Z – 2030-01-02T00:00:00Z
                                    sun 00:00-24:00 \\u{1b}[2J
"
        );
        assert_eq!(render(&[], "no tags\n"), "no tags\n");
    }

    #[test]
    fn changes_keep_what_the_flags_leave_out() {
        let kept = Change::new(Some(MaxInFlight::Limit(2)), &[], &[], false);
        assert!(kept.windows.is_none());
        let cleared = Change::new(None, &[], &[], true);
        assert_eq!(cleared.windows, Some(vec![]));
        let once: OnceSpec = "2030-01-01T00:00:00Z/2030-01-02T00:00:00Z".parse().unwrap();
        let weekly: WeeklySpec = "sat,01:00-02:00,UTC".parse().unwrap();
        let both = Change::new(None, &[weekly], &[once], false);
        assert_eq!(both.windows.unwrap()[1]["to"], "2030-01-02T00:00:00Z");
    }
}

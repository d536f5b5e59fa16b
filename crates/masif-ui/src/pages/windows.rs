//! Maintenance windows as the Tags page writes and reads them: one window per line of a
//! textarea (`mon,wed 22:00-24:00 Europe/Berlin` or `2026-12-24T18:00:00Z
//! 2026-12-24T20:00:00Z`), turned into the JSON form and checked by masif-store's
//! [`Window::parse_list`] so errors name the window; and windows as readable text.

use masif_store::schedule::{Weekday, Window};
use serde_json::{json, Value};

use crate::render::format_time;

/// Most characters of the windows textarea (50 windows of generous lines).
pub(crate) const MAX_WINDOWS_TEXT: usize = 16 * 1024;

/// Reads the textarea: blank lines are skipped; a line is either `DAYS HH:MM-HH:MM ZONE`
/// (days a comma list of `mon` … `sun`) or `FROM TO` (two RFC 3339 times). Errors name the
/// window by its number (and its line, when blank lines make them differ).
pub(crate) fn parse_text(text: &str) -> Result<Vec<Window>, String> {
    if text.chars().count() > MAX_WINDOWS_TEXT {
        return Err(format!("windows: more than {MAX_WINDOWS_TEXT} characters"));
    }
    let mut lines = Vec::new();
    let mut items = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        lines.push(number + 1);
        let name = window_name(items.len(), number + 1);
        if line.chars().any(char::is_control) {
            return Err(format!("{name}: holds control characters"));
        }
        items.push(line_json(line).map_err(|e| format!("{name}: {e}"))?);
    }
    Window::parse_list(&Value::Array(items), "windows").map_err(|e| {
        // `windows[1].days[2]` → window 2, `day 3`.
        let Some(rest) = e.field.strip_prefix("windows[") else {
            return format!("windows: {}", e.reason);
        };
        let (index, part) = rest.split_once(']').unwrap_or((rest, ""));
        let index: usize = index.parse().unwrap_or(0);
        let name = window_name(index, lines.get(index).copied().unwrap_or(index + 1));
        let part = part.trim_start_matches('.');
        match part_label(part) {
            Some(label) => format!("{name}: {label} {}", e.reason),
            None => format!("{name}: {}", e.reason),
        }
    })
}

/// `window 2`, or `window 2 (line 4)` when the numbers differ.
fn window_name(index: usize, line: usize) -> String {
    if index + 1 == line {
        format!("window {}", index + 1)
    } else {
        format!("window {} (line {line})", index + 1)
    }
}

/// What a field of the JSON form is called in the text form (`None`: the reason says it).
fn part_label(part: &str) -> Option<String> {
    match part {
        "" | "time_zone" => None,
        "days" => Some("days".into()),
        p => match p.strip_prefix("days[").and_then(|r| r.strip_suffix(']')) {
            Some(i) => Some(format!("day {}:", i.parse::<usize>().map_or(0, |i| i + 1))),
            None => Some(p.to_owned()),
        },
    }
}

/// One line as the JSON form of its window (checked by [`Window::parse_list`] after).
fn line_json(line: &str) -> Result<Value, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [days, times, zone] => {
            let (start, end) = times.split_once('-').ok_or_else(|| {
                format!(
                    "{} is not a time range HH:MM-HH:MM",
                    masif_proto::quote(times, 40)
                )
            })?;
            let days: Vec<&str> = days.split(',').map(str::trim).collect();
            Ok(json!({ "days": days, "start": start, "end": end, "time_zone": zone }))
        }
        [from, to] => Ok(json!({ "from": from, "to": to })),
        _ => Err(
            "expected DAYS HH:MM-HH:MM TIME_ZONE (mon,wed 22:00-24:00 Europe/Berlin) or FROM TO \
             (2026-12-24T18:00:00Z 2026-12-24T20:00:00Z)"
                .into(),
        ),
    }
}

/// The textarea's text of a window list.
pub(crate) fn to_text(windows: &[Window]) -> String {
    // `Window`'s one-line form is what `parse_text` reads back.
    windows
        .iter()
        .map(Window::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A window for people: `Mon, Wed 22:00–24:00 Europe/Berlin`,
/// `once 2026-12-24 18:00 – 20:00 UTC`.
pub(crate) fn readable(window: &Window) -> String {
    match window {
        Window::Weekly {
            days,
            start,
            end,
            time_zone,
        } => format!(
            "{} {start}–{end} {time_zone}",
            days.iter()
                .map(|d| day_name(*d))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Window::Once { from, to } => {
            let (from, to) = (format_time(*from), format_time(*to));
            // Same day: `2026-12-24 18:00 – 20:00 UTC`.
            match (from.split_once(' '), to.split_once(' ')) {
                (Some((day_from, _)), Some((day_to, time_to))) if day_from == day_to => {
                    let from = from.trim_end_matches(" UTC");
                    format!("once {from} – {time_to}")
                }
                _ => format!("once {} – {to}", from.trim_end_matches(" UTC")),
            }
        }
    }
}

fn day_name(day: Weekday) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [Weekday::ALL.iter().position(|d| *d == day).unwrap_or(0)]
}

/// An agent's next window as the Agents pages show it: `open now`, `next: 2026-12-08 21:00
/// UTC`, `no window opens again`, or nothing when none of its tags has windows.
pub(crate) fn agent_window_text(w: &masif_store::AgentWindow) -> Option<String> {
    if !w.windowed {
        return None;
    }
    Some(match (w.open, w.next_open) {
        (true, _) => "open now".into(),
        (false, Some(t)) => format!("next: {}", format_time(t)),
        (false, None) => "no window opens again".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_into_windows_and_back() {
        let text =
            "mon,wed 22:00-24:00 Europe/Berlin\n\n  2026-12-24T18:00:00Z 2026-12-24T20:00:00Z \n";
        let windows = parse_text(text).unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(
            to_text(&windows),
            "mon,wed 22:00-24:00 Europe/Berlin\n2026-12-24T18:00:00Z 2026-12-24T20:00:00Z"
        );
        assert_eq!(readable(&windows[0]), "Mon, Wed 22:00–24:00 Europe/Berlin");
        assert_eq!(readable(&windows[1]), "once 2026-12-24 18:00 – 20:00 UTC");
        let long = parse_text("2026-12-24T18:00:00Z 2026-12-26T06:00:00+01:00").unwrap();
        assert_eq!(
            readable(&long[0]),
            "once 2026-12-24 18:00 – 2026-12-26 05:00 UTC"
        );
        assert_eq!(parse_text(" \n\n").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_window() {
        for (text, error) in [
            (
                "mon 22:00-23:00 UTC\nmon 22:00-23:00 Mars/Base",
                "window 2: unknown time zone \"Mars/Base\"",
            ),
            (
                "mon 22:00-23:00 UTC\n\nmon 23:00-22:00 UTC",
                "window 2 (line 3): end must be after start",
            ),
            (
                "mon,fri2 22:00-23:00 UTC",
                "window 1: day 2: \"fri2\" is not a day (mon … sun)",
            ),
            (
                "mon 22:00 UTC",
                "window 1: \"22:00\" is not a time range HH:MM-HH:MM",
            ),
            (
                "mon 25:00-26:00 UTC",
                "window 1: start \"25:00\" is not a time HH:MM",
            ),
            ("every night at ten", "window 1: expected DAYS"),
            (
                "2026-12-24T20:00:00Z 2026-12-24T18:00:00Z",
                "window 1: to must be after from",
            ),
            ("x y", "window 1: from \"x\" is not an RFC 3339 time"),
            (
                "mon 22:00-23:00 UTC\u{7}",
                "window 1: holds control characters",
            ),
        ] {
            let e = parse_text(text).unwrap_err();
            assert!(e.starts_with(error), "{text:?}: {e}");
        }
        let many = "mon 22:00-23:00 UTC\n".repeat(51);
        assert_eq!(
            parse_text(&many).unwrap_err(),
            "windows: more than 50 windows"
        );
        assert!(parse_text(&"x".repeat(MAX_WINDOWS_TEXT + 1)).is_err());
    }

    #[test]
    fn agent_windows_read_as_text() {
        use masif_store::AgentWindow;
        assert_eq!(agent_window_text(&AgentWindow::default()), None);
        let w = |open, next_open| AgentWindow {
            windowed: true,
            open,
            next_open,
        };
        assert_eq!(agent_window_text(&w(true, Some(5))).unwrap(), "open now");
        assert_eq!(
            agent_window_text(&w(false, Some(0))).unwrap(),
            "next: 1970-01-01 00:00 UTC"
        );
        assert_eq!(
            agent_window_text(&w(false, None)).unwrap(),
            "no window opens again"
        );
    }
}

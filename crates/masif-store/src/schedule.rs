//! Maintenance windows: weekly ones in local wall-clock time of an IANA time zone (so a
//! daylight-saving change moves them with the local clock) and one-off ones between two
//! instants; their JSON form with errors naming the field, and when they are open.

use std::collections::BTreeSet;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

/// Most windows of one tag.
pub const MAX_WINDOWS: usize = 50;
/// Most characters of a time zone name.
const MAX_ZONE_CHARS: usize = 64;

/// A day of the week, written `mon` … `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    pub fn as_str(self) -> &'static str {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][self as usize]
    }

    fn of(date: Date) -> Weekday {
        Weekday::ALL[date.weekday().to_monday_zero_offset() as usize]
    }
}

impl Serialize for Weekday {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A local time of day, `HH:MM`, in minutes since midnight; `24:00` (1440) ends a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(u16);

impl LocalTime {
    /// `HH:MM` with `00 <= HH <= 23` (or exactly `24:00` when `end_of_day` is allowed).
    fn parse(text: &str, end_of_day: bool) -> Result<Self, String> {
        let bad = || format!("{} is not a time HH:MM", quote(text));
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        match (h, m) {
            (24, 0) if end_of_day => Ok(Self(1440)),
            (0..=23, 0..=59) => Ok(Self(h * 60 + m)),
            _ => Err(bad()),
        }
    }

    pub fn minutes(self) -> u16 {
        self.0
    }

    /// The moment this time is on `date` in `zone`: a time inside a daylight-saving gap moves
    /// forward by the gap's length (02:30 → 03:30), an ambiguous one is its earlier instant.
    fn on(self, date: Date, zone: &TimeZone) -> Option<i64> {
        let (date, minutes) = if self.0 == 1440 {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, self.0)
        };
        let local: DateTime = date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
        Some(
            zone.to_ambiguous_timestamp(local)
                .compatible()
                .ok()?
                .as_second(),
        )
    }
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// When agents of a tag may run approved tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// On each of `days`, from `start` to `end` local time in `time_zone`.
    Weekly {
        days: BTreeSet<Weekday>,
        start: LocalTime,
        end: LocalTime,
        /// An IANA name the system's time zone database knows.
        time_zone: String,
    },
    /// Once, from `from` to `to` (unix seconds).
    Once { from: i64, to: i64 },
}

/// A window list that does not read: the field (`windows[1].end`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for WindowError {}

impl Window {
    /// Reads the JSON form of a window list (`field` names it in errors, e.g. `windows`):
    /// weekly `{"days": ["mon", …], "start": "HH:MM", "end": "HH:MM", "time_zone": ZONE}`,
    /// one-off `{"from": RFC 3339, "to": RFC 3339}`; unknown keys are refused.
    pub fn parse_list(value: &Value, field: &str) -> Result<Vec<Window>, WindowError> {
        let Value::Array(items) = value else {
            return Err(error(field, "not an array"));
        };
        if items.len() > MAX_WINDOWS {
            return Err(error(field, &format!("more than {MAX_WINDOWS} windows")));
        }
        items
            .iter()
            .enumerate()
            .map(|(index, item)| Window::parse(item, &format!("{field}[{index}]")))
            .collect()
    }

    fn parse(value: &Value, at: &str) -> Result<Window, WindowError> {
        let Value::Object(fields) = value else {
            return Err(error(at, "not a JSON object"));
        };
        let field = |name: &str| format!("{at}.{name}");
        let weekly = ["days", "start", "end", "time_zone"];
        let once = ["from", "to"];
        let kind: &[&str] = if fields.contains_key("days") || fields.contains_key("time_zone") {
            &weekly
        } else if fields.contains_key("from") || fields.contains_key("to") {
            &once
        } else {
            return Err(error(
                at,
                "needs days, start, end and time_zone (weekly) or from and to (one-off)",
            ));
        };
        if let Some(stray) = fields.keys().find(|k| !kind.contains(&k.as_str())) {
            return Err(error(
                &field(stray),
                "is not a field of this kind of window",
            ));
        }
        let text = |name: &str| -> Result<&str, WindowError> {
            fields
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| error(&field(name), "is missing or not a string"))
        };
        if kind == once {
            let instant = |name: &str| -> Result<i64, WindowError> {
                let value = text(name)?;
                value
                    .parse::<Timestamp>()
                    .map(|t| t.as_second())
                    .map_err(|_| {
                        error(
                            &field(name),
                            &format!("{} is not an RFC 3339 time", quote(value)),
                        )
                    })
            };
            let (from, to) = (instant("from")?, instant("to")?);
            if to <= from {
                return Err(error(&field("to"), "must be after from"));
            }
            return Ok(Window::Once { from, to });
        }
        let days = days(fields, &field("days"))?;
        let start =
            LocalTime::parse(text("start")?, false).map_err(|e| error(&field("start"), &e))?;
        let end = LocalTime::parse(text("end")?, true).map_err(|e| error(&field("end"), &e))?;
        if end <= start {
            return Err(error(&field("end"), "must be after start"));
        }
        let time_zone = text("time_zone")?;
        if time_zone.chars().count() > MAX_ZONE_CHARS || TimeZone::get(time_zone).is_err() {
            return Err(error(
                &field("time_zone"),
                &format!("unknown time zone {}", quote(time_zone)),
            ));
        }
        Ok(Window::Weekly {
            days,
            start,
            end,
            time_zone: time_zone.to_owned(),
        })
    }

    /// The JSON form [`Window::parse_list`] reads (one-off times in UTC, `Z`).
    pub fn to_json(&self) -> Value {
        match self {
            Window::Weekly {
                days,
                start,
                end,
                time_zone,
            } => serde_json::json!({
                "days": days,
                "start": start,
                "end": end,
                "time_zone": time_zone,
            }),
            Window::Once { from, to } => serde_json::json!({
                "from": rfc3339(*from),
                "to": rfc3339(*to),
            }),
        }
    }

    /// The instants this window is open that touch `[now - 8 days, now + 8 days]`, as
    /// `(opens, closes)`; a weekly window in a zone the system no longer knows has none.
    fn spans_around(&self, now: i64) -> Vec<(i64, i64)> {
        match self {
            Window::Once { from, to } => vec![(*from, *to)],
            Window::Weekly {
                days,
                start,
                end,
                time_zone,
            } => {
                let Ok(zone) = TimeZone::get(time_zone) else {
                    return Vec::new();
                };
                let Ok(now_ts) = Timestamp::from_second(now) else {
                    return Vec::new();
                };
                let today = now_ts.to_zoned_datetime(zone.clone()).date();
                (-1..=8)
                    .filter_map(|offset| today.checked_add(jiff::Span::new().days(offset)).ok())
                    .filter(|date| days.contains(&Weekday::of(*date)))
                    .filter_map(|date| Some((start.on(date, &zone)?, end.on(date, &zone)?)))
                    .filter(|(opens, closes)| opens < closes)
                    .collect()
            }
        }
    }
}

/// The one-line form: `mon,wed 22:00-24:00 Europe/Berlin`, or `FROM TO` in RFC 3339 (UTC).
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::Weekly {
                days,
                start,
                end,
                time_zone,
            } => {
                let days: Vec<&str> = days.iter().map(|d| d.as_str()).collect();
                write!(f, "{} {start}-{end} {time_zone}", days.join(","))
            }
            Window::Once { from, to } => write!(f, "{} {}", rfc3339(*from), rfc3339(*to)),
        }
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Whether one of `windows` is open at `now`.
pub fn open_at(windows: &[Window], now: i64) -> bool {
    next_open(windows, now) == Some(now)
}

/// When one of `windows` is next open: `now` if one is open, `None` if none opens again.
pub fn next_open(windows: &[Window], now: i64) -> Option<i64> {
    windows
        .iter()
        .flat_map(|w| w.spans_around(now))
        .filter(|(_, closes)| *closes > now)
        .map(|(opens, _)| opens.max(now))
        .min()
}

/// `seconds` as RFC 3339 in UTC.
pub fn rfc3339(seconds: i64) -> String {
    Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

fn days(fields: &Map<String, Value>, at: &str) -> Result<BTreeSet<Weekday>, WindowError> {
    let Some(Value::Array(items)) = fields.get("days") else {
        return Err(error(at, "is missing or not an array"));
    };
    if items.is_empty() || items.len() > 7 {
        return Err(error(at, "must list 1 to 7 days"));
    }
    let mut days = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let at = format!("{at}[{index}]");
        let name = item.as_str().ok_or_else(|| error(&at, "not a string"))?;
        let day = Weekday::ALL
            .into_iter()
            .find(|d| d.as_str() == name)
            .ok_or_else(|| error(&at, &format!("{} is not a day (mon … sun)", quote(name))))?;
        if !days.insert(day) {
            return Err(error(&at, "repeats a day"));
        }
    }
    Ok(days)
}

fn error(field: &str, reason: &str) -> WindowError {
    WindowError {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn quote(text: &str) -> String {
    masif_proto::quote(text, 40)
}

#[cfg(test)]
mod tests;

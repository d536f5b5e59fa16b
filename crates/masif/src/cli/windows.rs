//! The flags of `masif tag set` as the API's JSON: `--max-in-flight K|none`, weekly windows
//! `DAYS,HH:MM-HH:MM,ZONE` (days as lists and ranges, `mon-fri,sun`) and one-off windows
//! `FROM/TO`; and windows described for a terminal. The API checks the rest (zones, times).

use serde_json::{json, Value};

/// The days of the week as the API writes them.
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `--max-in-flight`: a limit or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxInFlight {
    Unlimited,
    Limit(u32),
}

impl MaxInFlight {
    pub(crate) fn to_json(self) -> Value {
        match self {
            MaxInFlight::Unlimited => Value::Null,
            MaxInFlight::Limit(k) => json!(k),
        }
    }
}

impl std::str::FromStr for MaxInFlight {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(MaxInFlight::Unlimited);
        }
        match s.parse::<u32>() {
            Ok(k) if (1..=100_000).contains(&k) => Ok(MaxInFlight::Limit(k)),
            _ => Err("expected a whole number from 1 to 100000, or none".into()),
        }
    }
}

/// `--weekly DAYS,HH:MM-HH:MM,ZONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklySpec {
    pub days: Vec<&'static str>,
    pub start: String,
    pub end: String,
    pub time_zone: String,
}

impl std::str::FromStr for WeeklySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = "expected DAYS,HH:MM-HH:MM,ZONE (e.g. mon-fri,02:00-04:00,Europe/Berlin)";
        let (rest, zone) = s.rsplit_once(',').ok_or(shape)?;
        let (days, times) = rest.rsplit_once(',').ok_or(shape)?;
        let (start, end) = times.split_once('-').ok_or(shape)?;
        if zone.is_empty() || start.is_empty() || end.is_empty() {
            return Err(shape.into());
        }
        let index = |name: &str| {
            DAYS.iter()
                .position(|d| *d == name)
                .ok_or_else(|| format!("{name:?} is not a day (mon … sun)"))
        };
        let mut picked = [false; 7];
        for part in days.split(',') {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let (from, to) = (index(from)?, index(to)?);
            if from > to {
                return Err(format!("{part:?}: a range runs from mon towards sun"));
            }
            picked[from..=to].iter_mut().for_each(|p| *p = true);
        }
        Ok(Self {
            days: DAYS
                .iter()
                .zip(picked)
                .filter(|(_, p)| *p)
                .map(|(d, _)| *d)
                .collect(),
            start: start.to_owned(),
            end: end.to_owned(),
            time_zone: zone.to_owned(),
        })
    }
}

impl WeeklySpec {
    pub(crate) fn to_json(&self) -> Value {
        json!({"days": self.days, "start": self.start, "end": self.end, "time_zone": self.time_zone})
    }
}

/// `--once FROM/TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceSpec {
    pub from: String,
    pub to: String,
}

impl std::str::FromStr for OnceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok(Self {
                from: from.to_owned(),
                to: to.to_owned(),
            }),
            _ => Err("expected FROM/TO, both RFC 3339 (e.g. 2026-12-24T20:00:00Z)".into()),
        }
    }
}

impl OnceSpec {
    pub(crate) fn to_json(&self) -> Value {
        json!({"from": self.from, "to": self.to})
    }
}

/// A window of the API's JSON for a terminal: `mon,wed 02:00-04:30 Europe/Berlin` or
/// `2030-01-01T00:00:00Z – 2030-01-02T00:00:00Z`; anything else as its JSON.
pub(crate) fn describe(window: &Value) -> String {
    let text = |k: &str| window[k].as_str().unwrap_or("?").to_owned();
    if let Some(days) = window["days"].as_array() {
        let days: Vec<&str> = days.iter().filter_map(Value::as_str).collect();
        format!(
            "{} {}-{} {}",
            days.join(","),
            text("start"),
            text("end"),
            text("time_zone")
        )
    } else if window.get("from").is_some() {
        format!("{} – {}", text("from"), text("to"))
    } else {
        window.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_windows_read_lists_and_ranges_of_days() {
        let w: WeeklySpec = "mon-wed,sat,02:00-24:00,Europe/Berlin".parse().unwrap();
        assert_eq!(w.days, ["mon", "tue", "wed", "sat"]);
        assert_eq!(
            w.to_json(),
            json!({"days": ["mon", "tue", "wed", "sat"], "start": "02:00", "end": "24:00",
                   "time_zone": "Europe/Berlin"})
        );
        assert_eq!(
            describe(&w.to_json()),
            "mon,tue,wed,sat 02:00-24:00 Europe/Berlin"
        );
        for bad in [
            "mon,02:00-04:00",
            "fri-mon,02:00-04:00,UTC",
            "mon,fri2,02:00-04:00,UTC",
            "mon,0200,UTC",
            "mon,-04:00,UTC",
            "mon,02:00-04:00,",
        ] {
            assert!(bad.parse::<WeeklySpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn one_off_windows_and_limits() {
        let o: OnceSpec = "2030-01-01T00:00:00Z/2030-01-02T00:00:00+01:00"
            .parse()
            .unwrap();
        assert_eq!(
            describe(&o.to_json()),
            "2030-01-01T00:00:00Z – 2030-01-02T00:00:00+01:00"
        );
        assert!("2030-01-01T00:00:00Z".parse::<OnceSpec>().is_err());
        assert_eq!("none".parse(), Ok(MaxInFlight::Unlimited));
        assert_eq!("3".parse(), Ok(MaxInFlight::Limit(3)));
        for bad in ["0", "100001", "-1", "x"] {
            assert!(bad.parse::<MaxInFlight>().is_err(), "{bad}");
        }
    }
}

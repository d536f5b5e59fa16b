//! Monitoring-plugin building blocks (Nagios/Icinga): the four states and their exit codes,
//! threshold ranges, performance data and the one output line
//! `NAME STATE - SUMMARY | PERFDATA`. Used by `masif-agent check` and `masif check-fleet`.

mod range;

use std::fmt::{self, Write as _};

pub use range::{Range, RangeError};

/// A plugin's result; the order is "worse than" (UNKNOWN worst: nothing could be judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// The plugin's exit code: 0, 1, 2, 3.
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        })
    }
}

/// A warning and a critical range, either optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Threshold {
    pub warn: Option<Range>,
    pub crit: Option<Range>,
}

impl Threshold {
    /// CRITICAL if the critical range alerts, else WARNING if the warning range does, else OK.
    pub fn status(&self, value: f64) -> Status {
        let alerts = |r: &Option<Range>| r.as_ref().is_some_and(|r| r.alerts(value));
        if alerts(&self.crit) {
            Status::Critical
        } else if alerts(&self.warn) {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// One performance-data item: `'label'=value[UOM];warn;crit;min;max`.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    /// `""`, `"s"`, `"%"`, `"B"` or `"c"`.
    pub uom: &'static str,
    pub threshold: Threshold,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Perf {
    /// A unit-less count, at least 0, without thresholds.
    pub fn count(label: impl Into<String>, value: f64) -> Self {
        Self {
            label: label.into(),
            value,
            uom: "",
            threshold: Threshold::default(),
            min: Some(0.0),
            max: None,
        }
    }

    pub fn with_uom(mut self, uom: &'static str) -> Self {
        self.uom = uom;
        self
    }

    pub fn with_threshold(mut self, threshold: Threshold) -> Self {
        self.threshold = threshold;
        self
    }
}

impl fmt::Display for Perf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = &self.label;
        if label.contains([' ', '=', '\'']) {
            write!(f, "'{}'=", label.replace('\'', "''"))?;
        } else {
            write!(f, "{label}=")?;
        }
        let opt = |v: &Option<Range>| v.as_ref().map(Range::to_string).unwrap_or_default();
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let fields = [
            opt(&self.threshold.warn),
            opt(&self.threshold.crit),
            num(self.min),
            num(self.max),
        ];
        write!(f, "{}{}", self.value, self.uom)?;
        let used = fields
            .iter()
            .rposition(|s| !s.is_empty())
            .map_or(0, |i| i + 1);
        for field in &fields[..used] {
            write!(f, ";{field}")?;
        }
        Ok(())
    }
}

/// The plugin output: `NAME STATE - SUMMARY | PERFDATA`, then `details` one per line.
/// Line breaks and `|` in the summary and details are replaced: they would cut the
/// performance data.
pub fn render(
    name: &str,
    status: Status,
    summary: &str,
    perf: &[Perf],
    details: &[String],
) -> String {
    let clean = |s: &str| s.replace(['\n', '\r'], " ").replace('|', "/");
    let mut out = format!("{name} {status} - {}", clean(summary));
    if !perf.is_empty() {
        out.push_str(" |");
        for p in perf {
            let _ = write!(out, " {p}");
        }
    }
    out.push('\n');
    for line in details {
        out.push_str(&clean(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(warn: &str, crit: &str) -> Threshold {
        let parse = |s: &str| (!s.is_empty()).then(|| s.parse().unwrap());
        Threshold {
            warn: parse(warn),
            crit: parse(crit),
        }
    }

    #[test]
    fn critical_wins_over_warning() {
        let t = threshold("10", "20");
        assert_eq!(t.status(5.0), Status::Ok);
        assert_eq!(t.status(15.0), Status::Warning);
        assert_eq!(t.status(25.0), Status::Critical);
        assert_eq!(Threshold::default().status(1e9), Status::Ok);
        assert_eq!(threshold("", "@~:42").status(42.0), Status::Critical);
        assert_eq!(Status::Unknown.exit_code(), 3);
        assert!(Status::Critical > Status::Warning && Status::Unknown > Status::Critical);
    }

    #[test]
    fn perfdata_has_the_guidelines_format() {
        let p = Perf::count("failed", 2.0).with_threshold(threshold("0", ""));
        assert_eq!(p.to_string(), "failed=2;0;;0");
        let p = Perf::count("age", 0.25)
            .with_uom("s")
            .with_threshold(threshold("10:20", "@~:42"));
        assert_eq!(p.to_string(), "age=0.25s;10:20;@~:42;0");
        let mut p = Perf::count("it's = odd", 1.0);
        p.min = None;
        assert_eq!(p.to_string(), "'it''s = odd'=1");
    }

    #[test]
    fn the_output_line_cannot_be_split_by_its_text() {
        let out = render(
            "X",
            Status::Warning,
            "a|b\nc",
            &[Perf::count("n", 1.0)],
            &["d|e".into()],
        );
        assert_eq!(out, "X WARNING - a/b c | n=1;;;0\nd/e\n");
    }
}

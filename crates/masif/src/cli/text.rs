//! Text for a terminal: server strings with control and format characters escaped, aligned
//! tables, times in UTC and ages.

use std::fmt::Write;

/// `text` safe to print: control characters (ESC, CR, DEL, C1…) and Unicode format
/// characters (bidirectional overrides, zero-width joiners…) become `\u{…}` escapes, and a
/// backslash becomes `\\` so an escape cannot be faked.
pub(crate) fn clean(text: &str) -> String {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || c.general_category() == GeneralCategory::Format {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` cleaned, or `-` when absent.
pub(crate) fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_owned(), clean)
}

/// A table printed with columns aligned on character counts, two spaces apart; cells are
/// [`clean`]ed when added.
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of raw (server) strings: each is cleaned.
    pub(crate) fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(c.as_ref())).collect());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header line and one line per row, trailing blanks trimmed.
    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header = self.header.iter().map(|h| h.to_string());
        for line in std::iter::once(header.collect::<Vec<_>>()).chain(self.rows.iter().cloned()) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(columns) {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(cell);
                if i + 1 < columns {
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM`.
pub(crate) fn utc(at: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("@{at}"),
    }
}

/// How long ago `at` was, seen at `now`, in its two largest units (`3d 4h`, `5m`, `12s`).
pub(crate) fn age(now: i64, at: i64) -> String {
    let secs = now.saturating_sub(at);
    if secs < 0 {
        return "in the future".into();
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `UTC (AGE ago)`, or `never`.
pub(crate) fn when(now: i64, at: Option<i64>) -> String {
    match at {
        Some(at) => format!("{} ({} ago)", utc(at), age(now, at)),
        None => "never".into(),
    }
}

/// Seconds since the epoch now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `N thing` or `N things`.
pub(crate) fn plural(n: u64, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        n => match thing.strip_suffix('y') {
            Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
            _ => format!("{n} {thing}s"),
        },
    }
}

/// `Page P of N (TOTAL WHAT)`, the line under a paged table.
pub(crate) fn page_line(total: u64, page: u64, per_page: u64, what: &str) -> String {
    let pages = total.div_ceil(per_page.max(1)).max(1);
    format!("page {page} of {pages} ({})\n", plural(total, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(
            clean("web\x1b[31m-1\r\u{202e}\\u{1b}\u{9b}"),
            "web\\u{1b}[31m-1\\u{d}\\u{202e}\\\\u{1b}\\u{9b}"
        );
        assert_eq!(clean("plain ü-ñame"), "plain ü-ñame");
    }

    #[test]
    fn tables_align_on_characters_and_trim() {
        let mut t = Table::new(&["NAME", "N"]);
        t.row(["ümlaut", "1"]);
        t.row(["x\x07", "22"]);
        assert_eq!(t.render(), "NAME    N\nümlaut  1\nx\\u{7}  22\n");
        assert!(!t.is_empty());
    }

    #[test]
    fn times_are_utc_minutes_and_ages_two_units() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_764_936_000), "2025-12-05 12:00");
        assert_eq!(utc(i64::MAX), format!("@{}", i64::MAX));
        assert_eq!(age(100, 88), "12s");
        assert_eq!(age(1000, 400), "10m");
        assert_eq!(age(10_000, 0), "2h 46m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 7, 0), "3d 4h");
        assert_eq!(age(0, 5), "in the future");
        assert_eq!(when(120, Some(60)), "1970-01-01 00:01 (1m ago)");
        assert_eq!(when(1, None), "never");
        assert_eq!(page_line(101, 2, 50, "agent"), "page 2 of 3 (101 agents)\n");
        assert_eq!(page_line(0, 1, 50, "agent"), "page 1 of 1 (0 agents)\n");
        assert_eq!(plural(2, "entry"), "2 entries");
        assert_eq!(plural(2, "day"), "2 days");
    }
}

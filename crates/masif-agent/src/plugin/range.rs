//! Nagios threshold ranges (`10`, `10:`, `~:10`, `10:20`, `@10:20`, `@~:42`) as the
//! monitoring plugin guidelines define them: a value alerts when it lies outside the range,
//! or inside it with a leading `@`. Bounds are inclusive.
//!
//! Written here rather than taken from the `nagios-range` crate: that one (last released in
//! 2022) accepts `nan`, `inf` and an end below the start in the one-number form (`-5`).

use std::fmt;
use std::str::FromStr;

/// Longest range text accepted.
const MAX_LEN: usize = 64;

/// A parsed range; shows as the text it was parsed from (perfdata repeats it).
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    /// `@`: alert inside the range instead of outside.
    inside: bool,
    text: String,
}

/// Why a range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad threshold range {shown:?}: {reason} (expected e.g. 10, 10:, ~:10, 10:20, @10:20)")]
pub struct RangeError {
    /// The input, cut to a few dozen characters.
    shown: String,
    reason: &'static str,
}

impl Range {
    /// Whether `value` raises the alert this range stands for.
    pub fn alerts(&self, value: f64) -> bool {
        let within = self.start <= value && value <= self.end;
        within == self.inside
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Range {
    type Err = RangeError;

    fn from_str(input: &str) -> Result<Self, RangeError> {
        let fail = |reason| RangeError {
            shown: input.chars().take(32).collect(),
            reason,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("empty"));
        }
        if text.len() > MAX_LEN {
            return Err(fail("too long"));
        }
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (start, end) = match body.split_once(':') {
            None => (0.0, number(body).ok_or_else(|| fail("not a number"))?),
            Some((start, end)) => {
                let start = match start {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    s => number(s).ok_or_else(|| fail("start is not a number or ~"))?,
                };
                let end = match end {
                    "" => f64::INFINITY,
                    e => number(e).ok_or_else(|| fail("end is not a number"))?,
                };
                (start, end)
            }
        };
        if start > end {
            return Err(fail("start is greater than end"));
        }
        Ok(Range {
            start,
            end,
            inside,
            text: text.to_owned(),
        })
    }
}

/// A plain decimal number (`42`, `-1.5`, `+3`): no exponent, no `inf` or `nan`.
fn number(text: &str) -> Option<f64> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    fn range(text: &str) -> Range {
        text.parse().unwrap()
    }

    /// The table of the monitoring plugin guidelines, and the edges of each range.
    #[rstest]
    #[case("10", &[-0.1, 10.1], &[0.0, 5.0, 10.0])]
    #[case("10:", &[9.9, -1.0], &[10.0, 1e9])]
    #[case("~:10", &[10.1], &[-1e9, 10.0])]
    #[case("10:20", &[9.9, 20.1], &[10.0, 15.0, 20.0])]
    #[case("@10:20", &[10.0, 15.0, 20.0], &[9.9, 20.1])]
    #[case("@~:42", &[-1e9, 0.0, 42.0], &[42.5, 100.0])]
    #[case(":5", &[5.5, -1.0], &[0.0, 5.0])]
    #[case("-1.5:2.5", &[-2.0, 3.0], &[-1.5, 0.0, 2.5])]
    #[case(" 3 ", &[4.0], &[3.0])]
    #[case("@0", &[0.0], &[0.5, -0.5])]
    #[case("5:5", &[4.0, 6.0], &[5.0])]
    fn ranges_alert_as_the_guidelines_say(
        #[case] text: &str,
        #[case] alerting: &[f64],
        #[case] quiet: &[f64],
    ) {
        let r = range(text);
        for v in alerting {
            assert!(r.alerts(*v), "{text} should alert on {v}");
        }
        for v in quiet {
            assert!(!r.alerts(*v), "{text} should not alert on {v}");
        }
        assert_eq!(r.to_string(), text.trim());
    }

    #[rstest]
    #[case("", "empty")]
    #[case("   ", "empty")]
    #[case("@", "not a number")]
    #[case("abc", "not a number")]
    #[case("nan", "not a number")]
    #[case("inf", "not a number")]
    #[case("1e3", "not a number")]
    #[case("-5", "start is greater than end")]
    #[case("20:10", "start is greater than end")]
    #[case("@@1", "not a number")]
    #[case("~", "not a number")]
    #[case("10:~", "end is not a number")]
    #[case("x:10", "start is not a number or ~")]
    #[case("1:2:3", "end is not a number")]
    #[case("1..2", "not a number")]
    #[case(".", "not a number")]
    #[case("--1", "not a number")]
    #[case("١٢", "not a number")]
    fn malformed_ranges_are_refused_with_a_reason(#[case] text: &str, #[case] reason: &str) {
        let err = text.parse::<Range>().unwrap_err();
        assert!(err.to_string().contains(reason), "{text}: {err}");
    }

    #[test]
    fn errors_quote_only_the_start_of_a_long_input() {
        let long = "9".repeat(10_000);
        let err = long.parse::<Range>().unwrap_err().to_string();
        assert!(err.contains("too long") && err.len() < 200, "{err}");
        // Long but within the cap: a big finite number.
        let huge = format!("1{}", "0".repeat(60));
        assert!(huge.parse::<Range>().is_ok());
    }

    proptest! {
        #[test]
        fn any_input_parses_or_is_refused_without_panicking(text in "\\PC{0,80}") {
            if let Ok(r) = text.parse::<Range>() {
                prop_assert!(r.start <= r.end);
                let _ = r.alerts(0.0);
            }
        }

        #[test]
        fn an_at_sign_inverts_the_alert(text in "[~0-9.:+-]{0,12}", v in -1e6f64..1e6) {
            if let Ok(outside) = text.parse::<Range>() {
                let inside = format!("@{text}").parse::<Range>().unwrap();
                prop_assert_ne!(outside.alerts(v), inside.alerts(v));
            }
        }
    }
}

//! Loading a daemon's YAML configuration: every problem collected, each naming the file and key.
//!
//! One pattern for master, UI and agent: defaults (serde `default`s), then the YAML file read
//! into a raw struct (`deny_unknown_fields`, so a misspelt key is an error), then
//! [`Validate::validate`], which turns the raw struct into the checked configuration and
//! records every bad value in [`Problems`] instead of stopping at the first. Values that need
//! parsing (addresses, database URLs, log levels) are read as [`Checked`], so a bad one does
//! not stop the others from being read. The environment (`MASIF_LOG`, see
//! [`crate::logging`]) and flags apply after loading.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A configuration that could not be used: every problem found, each naming the file and the
/// key. `Display` prints one problem per line (`FILE: KEY: MESSAGE`).
#[derive(Debug)]
pub struct ConfigError {
    file: PathBuf,
    problems: Vec<Problem>,
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key (`db.url`, `apt.options[2]`); `None` when the message itself names it, as the
    /// YAML parser's messages do, or when the file as a whole is at fault.
    pub key: Option<String>,
    pub message: String,
}

/// Most characters of one problem as displayed (`KEY: MESSAGE`): a value quoted by the YAML
/// parser or a check (an unknown key, a wrong value) is cut in the middle to fit.
pub const MAX_PROBLEM_CHARS: usize = 300;
/// Most characters of a problem's key (a map key written by the user, as `apt.env.NAME`).
const MAX_KEY_CHARS: usize = 80;
/// Characters kept from the end of a cut message: where the YAML parser names the line and
/// column.
const KEPT_TAIL_CHARS: usize = 60;

impl Problem {
    /// A problem whose key and message are cut to fit [`MAX_PROBLEM_CHARS`].
    fn new(key: Option<String>, message: String) -> Self {
        let key = key.map(|k| elide(k, MAX_KEY_CHARS, 0));
        let room = MAX_PROBLEM_CHARS - key.as_ref().map_or(0, |k| k.chars().count() + 2);
        Self {
            key,
            message: elide(message, room, KEPT_TAIL_CHARS),
        }
    }
}

/// `text` if it has at most `max` characters; otherwise its start, `…` and its last `tail`
/// characters, `max` characters in all.
fn elide(text: String, max: usize, tail: usize) -> String {
    let chars = text.chars().count();
    if chars <= max {
        return text;
    }
    let head = max - tail - 1;
    let mut short: String = text.chars().take(head).collect();
    short.push('…');
    short.extend(text.chars().skip(chars - tail));
    short
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ConfigError {
    /// The file the problems are in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Every problem, in the order found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// One line per problem: `FILE: KEY: MESSAGE`.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems
            .iter()
            .map(|p| format!("{}: {p}", self.file.display()))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The problems found so far while validating one file.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    /// Records that `key` is wrong.
    pub fn add(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.list
            .push(Problem::new(Some(key.into()), message.to_string()));
    }

    /// The value of `result`, or `None` with its error recorded against `key`.
    pub fn check<T, E: fmt::Display>(&mut self, key: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.add(key, e)).ok()
    }

    /// The parsed value of a [`Checked`] field, or `None` with its error recorded against `key`.
    pub fn take<T>(&mut self, key: &str, value: Checked<T>) -> Option<T> {
        self.check(key, value.0)
    }

    /// The value of `result`, or `None` with each of its `(key, message)` problems recorded.
    pub fn check_all<T>(&mut self, result: Result<T, Vec<(String, String)>>) -> Option<T> {
        result
            .map_err(|list| {
                for (key, message) in list {
                    self.add(key, message);
                }
            })
            .ok()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A configuration file's checked form, built from its raw YAML form `File`.
pub trait Validate: Sized {
    /// The file as written: serde structs with `deny_unknown_fields` and defaults.
    type File: DeserializeOwned;

    /// Checks every value of `file`, recording each problem; `None` only if something was
    /// recorded.
    fn validate(file: Self::File, problems: &mut Problems) -> Option<Self>;
}

/// Reads the configuration at `path` and validates it.
pub fn load<C: Validate>(path: &Path) -> Result<C, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem::new(None, format!("cannot read: {e}"))],
    })?;
    parse(path, &text)
}

/// Parses and validates `text`, the contents of the file `path` (which names it in errors).
pub fn parse<C: Validate>(path: &Path, text: &str) -> Result<C, ConfigError> {
    let error = |problems| ConfigError {
        file: path.to_owned(),
        problems,
    };
    let file: C::File =
        serde_yaml::from_str(text).map_err(|e| error(vec![Problem::new(None, e.to_string())]))?;
    let mut problems = Problems::default();
    match C::validate(file, &mut problems) {
        Some(config) if problems.is_empty() => Ok(config),
        _ if problems.is_empty() => Err(error(vec![Problem::new(
            None,
            "invalid (no reason recorded)".into(),
        )])),
        _ => Err(error(problems.list)),
    }
}

/// For a daemon's `main`: [`load`], or every problem printed on stderr (one `FILE: KEY:
/// MESSAGE` line each) and the exit code to return.
pub fn load_or_report<C: Validate>(path: &Path) -> Result<C, ExitCode> {
    load(path).map_err(|e| {
        for line in e.lines() {
            eprintln!("{line}");
        }
        ExitCode::FAILURE
    })
}

/// For `--check-config`: prints `problems` (found beyond the file itself, each starting with
/// its key) as `FILE: PROBLEM` lines on stderr and fails, or prints `FILE: OK` and succeeds.
pub fn report_check(path: &Path, problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("{}: {problem}", path.display());
    }
    if problems.is_empty() {
        println!("{}: OK", path.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A value whose parse error is kept, not raised, while the file is read, so that
/// [`Validate::validate`] can report it with the other problems ([`Problems::take`]).
#[derive(Debug, Clone)]
pub struct Checked<T>(Result<T, String>);

impl<T> Checked<T> {
    /// A value that parsed.
    pub fn ok(value: T) -> Self {
        Self(Ok(value))
    }

    /// The value, or the message saying why it did not parse.
    pub fn into_result(self) -> Result<T, String> {
        self.0
    }
}

impl<T: Default> Default for Checked<T> {
    fn default() -> Self {
        Self(Ok(T::default()))
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Malformed YAML still fails here; only a well-formed value of the wrong kind is kept.
        let value = serde_yaml::Value::deserialize(deserializer)?;
        Ok(Self(T::deserialize(value).map_err(|e| e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        listen: Checked<SocketAddr>,
        #[serde(default)]
        level: Checked<u8>,
        name: String,
    }

    #[derive(Debug)]
    struct Config {
        listen: SocketAddr,
        level: u8,
    }

    impl Validate for Config {
        type File = File;
        fn validate(file: File, problems: &mut Problems) -> Option<Self> {
            let listen = problems.take("listen", file.listen);
            let level = problems.take("level", file.level);
            if file.name.is_empty() {
                problems.add("name", "is empty");
            }
            Some(Config {
                listen: listen?,
                level: level?,
            })
        }
    }

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/x.yml"), text)
    }

    #[test]
    fn a_good_file_parses_with_defaults() {
        let c = parse_str("listen: \"127.0.0.1:1\"\nname: n\n").unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.level, 0);
    }

    #[test]
    fn every_bad_value_is_reported_with_file_and_key() {
        let e = parse_str("listen: nowhere\nlevel: 300\nname: \"\"\n").unwrap_err();
        let lines: Vec<String> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("/etc/x.yml: listen: "), "{lines:?}");
        assert!(lines[1].starts_with("/etc/x.yml: level: "), "{lines:?}");
        assert_eq!(lines[2], "/etc/x.yml: name: is empty");
        assert_eq!(e.to_string(), lines.join("\n"));
        assert_eq!(e.file(), Path::new("/etc/x.yml"));
    }

    #[test]
    fn a_problem_found_after_a_good_parse_still_fails() {
        let e = parse_str("listen: \"127.0.0.1:1\"\nname: \"\"\n").unwrap_err();
        assert_eq!(e.problems().len(), 1);
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_file() {
        for text in [
            "listen: \"127.0.0.1:1\"\nname: n\nlisen: 1\n",
            "{{{{",
            "",
            "- a list\n",
        ] {
            let e = parse_str(text).unwrap_err();
            assert!(e.to_string().starts_with("/etc/x.yml: "), "{e}");
        }
        let e = parse_str("listen: \"127.0.0.1:1\"\nname: n\nlisen: 1\n").unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    /// Found by the agent's `example_configurations_with_hostile_values` fuzz test: the YAML
    /// parser and the checks quote values and keys whole, so a 4,000-character value made a
    /// 4,000-character problem.
    #[test]
    fn problems_quoting_huge_values_are_cut_keeping_where() {
        let huge = ":".repeat(4000);
        for text in [
            format!("listen: \"127.0.0.1:1\"\nlevel: \"{huge}\"\nname: n\n"),
            format!("listen: \"127.0.0.1:1\"\nname: n\n? \"{huge}\"\n: 1\n"),
        ] {
            let e = parse_str(&text).unwrap_err();
            for problem in e.problems() {
                let shown = problem.to_string();
                assert!(shown.chars().count() <= MAX_PROBLEM_CHARS, "{shown}");
                assert!(shown.contains('…'), "{shown}");
            }
        }
        let e = parse_str(&format!(
            "listen: \"127.0.0.1:1\"\nname: n\n\"{huge}\": 1\n"
        ))
        .unwrap_err();
        assert!(e.to_string().ends_with("line 3 column 1"), "{e}");
        let mut problems = Problems::default();
        problems.add("x".repeat(500), "y".repeat(500));
        let shown = problems.list[0].to_string();
        assert_eq!(shown.chars().count(), MAX_PROBLEM_CHARS, "{shown}");
        assert!(
            shown.starts_with(&format!("{}…: yyy", "x".repeat(79))),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = load::<Config>(Path::new("/nonexistent/x.yml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/x.yml: cannot read: "),
            "{e}"
        );
    }
}

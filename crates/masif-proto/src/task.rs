//! Tasks: one action the package manager would perform, and the names that make one up.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest package name, version or agent name accepted, in characters: the original schema
/// stores them in `VARCHAR(191)` columns.
pub const MAX_FIELD_CHARS: usize = 191;

/// Why a name, version or task is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {MAX_FIELD_CHARS} characters ({chars})")]
    TooLong { field: &'static str, chars: usize },
    #[error("{field} contains a control character")]
    ControlCharacter { field: &'static str },
    #[error("{field} contains an invisible format character (Unicode Cf: a bidirectional override, a zero-width space, …)")]
    FormatCharacter { field: &'static str },
    /// The action as [`quote`]d: short, in quotes, escaped.
    #[error("unknown action {0} (expected install, update, configure, remove or purge)")]
    UnknownAction(String),
    #[error("action {action} {rule}")]
    WrongVersions { action: Action, rule: &'static str },
}

/// Most characters of client input quoted back in an error message, counted after escaping.
pub(crate) const MAX_QUOTE_CHARS: usize = 40;

/// `value` for an error message: in double quotes, escaped as Rust's `Debug` escapes
/// characters, cut to `max_chars` characters of escaped text (then `…`). The cut comes after
/// escaping, since one character can escape to ten (`\u{10ffff}`).
pub fn quote(value: &str, max_chars: usize) -> String {
    let mut quoted = String::from('"');
    let mut used = 0;
    for c in value.chars() {
        // As `str`'s `Debug` does: a single quote stays as it is.
        let escaped: String = match c {
            '\'' => c.into(),
            _ => c.escape_debug().collect(),
        };
        used += escaped.chars().count();
        if used > max_chars {
            quoted.push('…');
            break;
        }
        quoted.push_str(&escaped);
    }
    quoted.push('"');
    quoted
}

fn check_field(field: &'static str, value: &str) -> Result<(), TaskError> {
    if value.is_empty() {
        return Err(TaskError::Empty { field });
    }
    let chars = value.chars().count();
    if chars > MAX_FIELD_CHARS {
        return Err(TaskError::TooLong { field, chars });
    }
    if value.chars().any(char::is_control) {
        return Err(TaskError::ControlCharacter { field });
    }
    if value.chars().any(is_format) {
        return Err(TaskError::FormatCharacter { field });
    }
    Ok(())
}

/// Unicode's format characters (category Cf): bidirectional overrides and isolates,
/// zero-width spaces and joiners, the byte-order mark… Invisible, they make one name look like
/// another, or reorder what the UI shows.
pub(crate) fn is_format(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks the value: non-empty, at most [`MAX_FIELD_CHARS`] characters, no control
            /// characters.
            pub fn new(value: impl Into<String>) -> Result<Self, TaskError> {
                let value = value.into();
                check_field($field, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A package name as the package manager spells it.
    PackageName,
    "package"
);
name_type!(
    /// A package version as the package manager spells it.
    Version,
    "version"
);
name_type!(
    /// An agent's identity: the CN of its client certificate.
    AgentName,
    "agent name"
);

/// What the package manager would do to a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Install,
    Update,
    Configure,
    Remove,
    Purge,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Install,
        Action::Update,
        Action::Configure,
        Action::Remove,
        Action::Purge,
    ];

    /// The spelling used on the wire and in the database's `ENUM`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Update => "update",
            Action::Configure => "configure",
            Action::Remove => "remove",
            Action::Purge => "purge",
        }
    }

    /// Installs and removals are what a dependency can sneak in; the UI makes them stand out.
    pub fn is_install_or_removal(self) -> bool {
        matches!(self, Action::Install | Action::Remove | Action::Purge)
    }

    /// Which versions this action must carry (the original's rules).
    pub fn check_versions(
        self,
        from: Option<&Version>,
        to: Option<&Version>,
    ) -> Result<(), TaskError> {
        let rule = match (self, from.is_some(), to.is_some()) {
            (Action::Install, false, true) => return Ok(()),
            (Action::Install, _, _) => "needs to_version and no from_version",
            (Action::Update, true, true) => return Ok(()),
            (Action::Update, _, _) => "needs both from_version and to_version",
            (Action::Configure, true, false) | (Action::Configure, false, true) => return Ok(()),
            (Action::Configure, _, _) => "needs exactly one of from_version and to_version",
            (Action::Remove | Action::Purge, true, _) => return Ok(()),
            (Action::Remove | Action::Purge, false, _) => "needs from_version",
        };
        Err(TaskError::WrongVersions { action: self, rule })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = TaskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| TaskError::UnknownAction(quote(s, MAX_QUOTE_CHARS)))
    }
}

/// One action the package manager would perform. Only valid combinations can be built.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Task {
    package: PackageName,
    action: Action,
    from_version: Option<Version>,
    to_version: Option<Version>,
}

impl Task {
    pub fn new(
        package: PackageName,
        action: Action,
        from_version: Option<Version>,
        to_version: Option<Version>,
    ) -> Result<Self, TaskError> {
        action.check_versions(from_version.as_ref(), to_version.as_ref())?;
        Ok(Self {
            package,
            action,
            from_version,
            to_version,
        })
    }

    pub fn package(&self) -> &PackageName {
        &self.package
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn from_version(&self) -> Option<&Version> {
        self.from_version.as_ref()
    }

    pub fn to_version(&self) -> Option<&Version> {
        self.to_version.as_ref()
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.package)?;
        match (&self.from_version, &self.to_version) {
            (Some(from), Some(to)) => write!(f, " {from} -> {to}"),
            (Some(from), None) => write!(f, " {from}"),
            (None, Some(to)) => write!(f, " {to}"),
            (None, None) => Ok(()),
        }
    }
}

/// A set of tasks: duplicates collapse, iteration order is stable (sorted).
pub type TaskSet = BTreeSet<Task>;

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::new(s).unwrap()
    }

    #[test]
    fn versions_each_action_needs() {
        use Action::*;
        let ok = [
            (Install, None, Some(v("2"))),
            (Update, Some(v("1")), Some(v("2"))),
            (Configure, Some(v("1")), None),
            (Configure, None, Some(v("2"))),
            (Remove, Some(v("1")), None),
            (Remove, Some(v("1")), Some(v("2"))),
            (Purge, Some(v("1")), None),
        ];
        for (action, from, to) in ok {
            assert!(
                action.check_versions(from.as_ref(), to.as_ref()).is_ok(),
                "{action}"
            );
        }
        let bad = [
            (Install, Some(v("1")), Some(v("2"))),
            (Install, None, None),
            (Update, None, Some(v("2"))),
            (Update, Some(v("1")), None),
            (Configure, None, None),
            (Configure, Some(v("1")), Some(v("2"))),
            (Remove, None, Some(v("2"))),
            (Purge, None, None),
        ];
        for (action, from, to) in bad {
            assert!(
                action.check_versions(from.as_ref(), to.as_ref()).is_err(),
                "{action}"
            );
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(PackageName::new("perl").is_ok());
        assert_eq!(
            PackageName::new(""),
            Err(TaskError::Empty { field: "package" })
        );
        assert!(matches!(
            PackageName::new("a".repeat(192)),
            Err(TaskError::TooLong { chars: 192, .. })
        ));
        assert!(
            PackageName::new("ä".repeat(191)).is_ok(),
            "limit counts characters, not bytes"
        );
        assert!(matches!(
            Version::new("1\n2"),
            Err(TaskError::ControlCharacter { .. })
        ));
        for invisible in ["\u{202e}", "\u{200b}", "\u{2066}", "\u{feff}", "\u{ad}"] {
            let name = format!("open{invisible}ssl");
            assert!(
                matches!(
                    PackageName::new(name.as_str()),
                    Err(TaskError::FormatCharacter { field: "package" })
                ),
                "{name:?}"
            );
            assert!(Version::new(format!("1.0{invisible}")).is_err());
            assert!(AgentName::new(format!("web{invisible}01.example.com")).is_err());
        }
        assert!(PackageName::new("libc6-dev:amd64").is_ok());
    }

    #[test]
    fn actions_parse_and_print() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("Update".parse::<Action>().is_err());
    }
}

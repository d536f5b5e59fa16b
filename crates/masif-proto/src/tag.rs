//! Tags: names an agent's configuration gives its host (`tags: [web, prod]`), sent with the
//! v2 facts, by which administrators approve, schedule maintenance windows, limit how many
//! hosts upgrade at once and stage roll-outs.

use serde::Serialize;

/// Most characters of a tag.
pub const MAX_TAG_CHARS: usize = 64;
/// Most tags one agent may carry.
pub const MAX_TAGS: usize = 32;

/// A tag: 1 to [`MAX_TAG_CHARS`] characters of `A-Z a-z 0-9 . _ -`, starting with a letter or
/// a digit. Case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let first_ok = value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if value.len() > MAX_TAG_CHARS || !first_ok || !value.chars().all(allowed) {
            return Err(format!(
                "must be 1 to {MAX_TAG_CHARS} characters of A-Z, a-z, 0-9, '.', '_', '-', \
                 starting with a letter or digit"
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Tag::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Tag::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_plain_words() {
        for good in ["web", "prod-eu.1", "A_b", "9"] {
            assert!(Tag::new(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        for bad in [
            "",
            "-web",
            ".x",
            "a b",
            "wéb",
            "a/b",
            "a\u{200b}",
            long.as_str(),
        ] {
            assert!(Tag::new(bad).is_err(), "{bad:?}");
        }
    }
}

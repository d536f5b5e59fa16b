//! The database address (`db.url`): parsed once into [`DbUrl`], printed only with the password
//! redacted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// What a `db.url` must look like, for error messages.
const EXPECTED: &str = "expected mysql://user:password@host:port/database or sqlite:///path";

/// Most characters of a rejected URL quoted back in an error.
const QUOTE_MAX: usize = 60;

/// A database URL that names a back end and the database: `mysql://user:password@host:port/
/// database[?param=value&…]` or `sqlite:///absolute/path`. `Display` and `Debug` show the
/// password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// The whole `mysql://…` connection string, password included, for the driver. Its
    /// parameters are checked when the store connects.
    Mysql(String),
    /// The database file of a `sqlite:///…` URL.
    Sqlite(PathBuf),
}

/// Why a string is not a [`DbUrl`]; quotes at most a few dozen characters of it, redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}, got {quoted}")]
pub struct DbUrlError {
    reason: &'static str,
    quoted: String,
}

impl DbUrl {
    /// A `sqlite://` URL for the database file at `path` (which should be absolute).
    pub fn sqlite(path: impl AsRef<Path>) -> Self {
        DbUrl::Sqlite(path.as_ref().to_owned())
    }
}

impl FromStr for DbUrl {
    type Err = DbUrlError;

    /// Surrounding white space is ignored (as the UI always did).
    fn from_str(url: &str) -> Result<Self, DbUrlError> {
        let url = url.trim();
        let bad = |reason| DbUrlError {
            reason,
            quoted: quote(url),
        };
        if url.chars().any(char::is_control) {
            return Err(bad("contains a control character"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(EXPECTED));
        };
        match scheme {
            "mysql" => {
                // The host ends the authority (the password may contain '/' or '@').
                let after_user = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                let (host, database) = after_user.split_once('/').unwrap_or((after_user, ""));
                let database = database.split(['?', '#']).next().unwrap_or("");
                if host.is_empty() {
                    Err(bad(
                        "names no host (mysql://user:password@host:port/database)",
                    ))
                } else if database.is_empty() {
                    Err(bad(
                        "names no database (mysql://user:password@host:port/database)",
                    ))
                } else if url.contains(char::is_whitespace) {
                    Err(bad("contains a space (percent-encode it as %20)"))
                } else {
                    Ok(DbUrl::Mysql(url.to_owned()))
                }
            }
            "sqlite" => {
                if !rest.starts_with('/') {
                    Err(bad("expected sqlite:///absolute/path (three slashes)"))
                } else if rest.ends_with('/') {
                    Err(bad("names a directory, not a database file"))
                } else if rest.contains(['?', '#']) {
                    Err(bad("sqlite:// takes no parameters"))
                } else {
                    Ok(DbUrl::Sqlite(PathBuf::from(rest)))
                }
            }
            _ => Err(bad(EXPECTED)),
        }
    }
}

impl<'de> Deserialize<'de> for DbUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Mysql(url) => f.write_str(&redact(url)),
            DbUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

/// Most addresses `db.urls` may list.
pub const MAX_DB_URLS: usize = 16;

/// A configuration's database addresses: `db.url` (one) or `db.urls` (a list), exactly one of
/// them given. Each entry comes as parsed, or as the message saying why it did not parse; a
/// list is also checked as a whole: 1 to [`MAX_DB_URLS`] addresses, all `mysql://`, none
/// twice. `Err` holds every problem as
/// `(key, message)`, the key naming the entry (`db.urls[2]`) where one is at fault.
pub fn db_addresses(
    url: Option<Result<DbUrl, String>>,
    urls: Option<Vec<Result<DbUrl, String>>>,
) -> Result<Vec<DbUrl>, Vec<(String, String)>> {
    match (url, urls) {
        (Some(url), None) => url
            .map(|url| vec![url])
            .map_err(|e| vec![("db.url".into(), e)]),
        (None, Some(urls)) => {
            let mut problems = Vec::new();
            let parsed: Vec<Option<DbUrl>> = urls
                .into_iter()
                .enumerate()
                .map(|(i, url)| {
                    url.map_err(|e| problems.push((format!("db.urls[{i}]"), e)))
                        .ok()
                })
                .collect();
            problems.extend(check_url_list("db.urls", &parsed));
            if problems.is_empty() {
                Ok(parsed.into_iter().flatten().collect())
            } else {
                Err(problems)
            }
        }
        (Some(_), Some(_)) => Err(vec![(
            "db.urls".into(),
            "and db.url are both given: use one of them".into(),
        )]),
        (None, None) => Err(vec![(
            "db".into(),
            "needs url (one address) or urls (a list)".into(),
        )]),
    }
}

/// What is wrong with `urls` as the addresses of one database (`db.urls`, named `key` in the
/// problems): 1 to [`MAX_DB_URLS`] of them, all `mysql://` (SQLite is one file), no address
/// twice (the same host, port and database). An entry that is `None` did not parse (its
/// problem is reported already) and is only counted. Each problem is `(key, message)`, the
/// key naming the entry (`db.urls[2]`) where one is at fault. Empty when the list is good.
fn check_url_list(key: &str, urls: &[Option<DbUrl>]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if urls.is_empty() {
        problems.push((key.to_owned(), "needs at least one address".to_owned()));
    } else if urls.len() > MAX_DB_URLS {
        problems.push((
            key.to_owned(),
            format!("at most {MAX_DB_URLS} addresses, got {}", urls.len()),
        ));
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let Some(url) = url else {
            continue;
        };
        let entry = format!("{key}[{i}]");
        match url {
            DbUrl::Sqlite(_) => problems.push((
                entry,
                format!("{url}: a SQLite database is one file, use db.url"),
            )),
            DbUrl::Mysql(text) => {
                let address = address_of(text);
                match seen.iter().find(|(a, _)| *a == address) {
                    Some((_, first)) => problems.push((
                        entry,
                        format!("{url} is the same address as {key}[{first}]"),
                    )),
                    None => seen.push((address, i)),
                }
            }
        }
    }
    problems
}

/// Host, port (3306 when not given) and database of a `mysql://` URL, lowercased but the
/// database: what two addresses of the same node have in common.
fn address_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let after_user = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let (host, database) = after_user.split_once('/').unwrap_or((after_user, ""));
    let database = database.split(['?', '#']).next().unwrap_or("");
    let host = host.to_ascii_lowercase();
    let host = if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        && !host.ends_with(']')
    {
        host
    } else {
        format!("{host}:3306")
    };
    format!("{host}/{database}")
}

/// `url` with any password replaced by `***`. Whatever lies between the first `:` after the
/// user name and the last `@` counts as password, so a password holding `/`, `?` or `@` is
/// hidden too (at worst more than the password is).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// `url` redacted and cut to [`QUOTE_MAX`] characters, quoted.
fn quote(url: &str) -> String {
    let redacted = redact(url);
    let mut chars = redacted.chars();
    let head: String = chars.by_ref().take(QUOTE_MAX).collect();
    if chars.next().is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_parse() {
        let url: DbUrl = "mysql://masif:secret@127.0.0.1:3306/masif_upgrader?pool_max=4"
            .parse()
            .unwrap();
        assert_eq!(
            url,
            DbUrl::Mysql("mysql://masif:secret@127.0.0.1:3306/masif_upgrader?pool_max=4".into())
        );
        assert_eq!(
            url.to_string(),
            "mysql://masif:***@127.0.0.1:3306/masif_upgrader?pool_max=4"
        );
        assert!(!format!("{url:?}").contains("secret"));
        let url: DbUrl = "mysql://root@localhost/db".parse().unwrap();
        assert_eq!(url.to_string(), "mysql://root@localhost/db");
        let url: DbUrl = "sqlite:///var/lib/masif-upgrader/masif.db".parse().unwrap();
        assert_eq!(
            url,
            DbUrl::Sqlite(PathBuf::from("/var/lib/masif-upgrader/masif.db"))
        );
        assert_eq!(url.to_string(), "sqlite:///var/lib/masif-upgrader/masif.db");
        assert_eq!(DbUrl::sqlite("/x/y.db").to_string(), "sqlite:///x/y.db");
        let url: DbUrl = " mysql://h/db\n".parse().unwrap();
        assert_eq!(url, DbUrl::Mysql("mysql://h/db".into()));
        let url: DbUrl = "sqlite:///tmp/a b.db".parse().unwrap();
        assert_eq!(url, DbUrl::sqlite("/tmp/a b.db"));
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for (url, reason) in [
            ("postgres://u:pw@h/db", "expected mysql://"),
            ("", "expected mysql://"),
            ("mysql:/h/db", "expected mysql://"),
            ("MYSQL://h/db", "expected mysql://"),
            ("mysql://", "names no host"),
            ("mysql://u:pw@/db", "names no host"),
            ("mysql://u:pw@h", "names no database"),
            ("mysql://u:pw@h/", "names no database"),
            ("mysql://u:pw@h/?pool_max=1", "names no database"),
            ("mysql://u:p w@h/db", "contains a space"),
            ("mysql://h/d\nb", "control character"),
            ("mysql://h/d\u{1b}[31mb", "control character"),
            ("sqlite://relative.db", "three slashes"),
            ("sqlite://", "three slashes"),
            ("/var/lib/masif.db", "expected mysql://"),
            ("sqlite:///var/lib/", "directory"),
            ("sqlite:///x.db?mode=ro", "no parameters"),
        ] {
            let err = url.parse::<DbUrl>().unwrap_err().to_string();
            assert!(err.contains(reason), "{url:?}: {err}");
            assert!(!err.contains("pw@"), "{url:?}: {err}");
        }
    }

    #[test]
    fn hostile_urls_never_show_the_password() {
        for url in [
            "mysql://u:Qz/ss@h/db",
            "mysql://u:Qz@ss@h/db",
            "mysql://u:Qz?ss@h/db",
            "mysql://u:Qz#ss@h/db",
            "mysql://u:Qz:ss@h/db",
            "mysql://u:Qz%40zz@h/db?x=1",
            "postgres://u:Qz/ss@h/db",
            "mysql://u:Qz/ss@h",
            "mysql://u:Qz ss@h/db",
            "mysql://u:Qz\nss@h/db",
        ] {
            let shown = match url.parse::<DbUrl>() {
                Ok(parsed) => format!("{parsed} {parsed:?}"),
                Err(e) => e.to_string(),
            };
            assert!(!shown.contains("Qz"), "{url:?}: {shown}");
            assert!(!redact(url).contains("Qz"), "{url:?}");
        }
    }

    #[test]
    fn url_lists_are_checked_entry_by_entry() {
        let list = |urls: &[&str]| -> Vec<Option<DbUrl>> {
            urls.iter().map(|u| Some(u.parse().unwrap())).collect()
        };
        assert!(check_url_list(
            "db.urls",
            &list(&[
                "mysql://u:pw@a/db",
                "mysql://u:pw@b:3307/db",
                "mysql://u:pw@a:3307/db"
            ])
        )
        .is_empty());
        for (urls, key, says) in [
            (vec![], "db.urls", "at least one"),
            (
                vec!["mysql://a/db", "sqlite:///x.db"],
                "db.urls[1]",
                "one file",
            ),
            (
                vec!["mysql://u:pw@a/db", "mysql://v:pw@A:3306/db?pool_max=2"],
                "db.urls[1]",
                "same address as db.urls[0]",
            ),
            (
                vec!["mysql://[::1]/db", "mysql://[::1]:3306/db"],
                "db.urls[1]",
                "same address",
            ),
        ] {
            let problems = check_url_list("db.urls", &list(&urls));
            assert_eq!(problems.len(), 1, "{urls:?}: {problems:?}");
            assert_eq!(problems[0].0, key, "{urls:?}");
            assert!(problems[0].1.contains(says), "{urls:?}: {problems:?}");
            assert!(!problems[0].1.contains("pw"), "{problems:?}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("mysql://h{i}/db")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let problems = check_url_list("db.urls", &list(&many));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].1.contains("at most 16"), "{problems:?}");
        // An entry that did not parse is counted, not checked again.
        let mut partly = list(&["mysql://a/db", "mysql://a/db"]);
        partly.insert(0, None);
        let problems = check_url_list("db.urls", &partly);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "db.urls[2]");
        // Another database on the same server is another address.
        assert!(check_url_list("db.urls", &list(&["mysql://a/one", "mysql://a/two"])).is_empty());
    }

    #[test]
    fn long_urls_are_quoted_short() {
        let url = format!("postgres://{}", "x".repeat(10_000));
        let err = url.parse::<DbUrl>().unwrap_err().to_string();
        assert!(err.len() < 200, "{}", err.len());
    }

    #[test]
    fn deserialize_uses_the_same_rules() {
        use serde::de::value::{Error, StrDeserializer};
        let url = DbUrl::deserialize(StrDeserializer::<Error>::new("sqlite:///x.db")).unwrap();
        assert_eq!(url, DbUrl::sqlite("/x.db"));
        let err = DbUrl::deserialize(StrDeserializer::<Error>::new("mysql://u:pw@h"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("names no database") && !err.contains("pw"),
            "{err}"
        );
    }
}

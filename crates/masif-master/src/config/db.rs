//! `db:` of master.yml: the database's address (`url`) or addresses (`urls`, see
//! `masif_store::open_any`), and the bound on reports waiting for it.

use masif_daemon::config::{Checked, Problems};
use masif_store::DbUrl;
use serde::Deserialize;

/// `db:` — the shared database. `Debug` shows the URLs without their passwords.
#[derive(Debug)]
pub struct DbConfig {
    /// `db.url` as a list of one, or `db.urls`: the first that works is used, the next when
    /// it fails.
    pub urls: Vec<DbUrl>,
    /// Most reports waiting for the database at once; one more is answered 503.
    pub max_queued_reports: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DbFile {
    #[serde(default)]
    url: Option<Checked<DbUrl>>,
    #[serde(default)]
    urls: Option<Vec<Checked<DbUrl>>>,
    #[serde(default = "max_queued_reports")]
    max_queued_reports: usize,
}

fn max_queued_reports() -> usize {
    masif_store::DEFAULT_MAX_QUEUED_REPORTS
}

impl DbFile {
    pub(super) fn validate(self, problems: &mut Problems) -> Option<DbConfig> {
        if self.max_queued_reports == 0 {
            problems.add("db.max_queued_reports", "must be at least 1");
        }
        Some(DbConfig {
            urls: problems.check_all(masif_store::db_addresses(
                self.url.map(Checked::into_result),
                self.urls
                    .map(|urls| urls.into_iter().map(Checked::into_result).collect()),
            ))?,
            max_queued_reports: self.max_queued_reports,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::MasterConfig;
    use masif_daemon::config::ConfigError;

    fn parse(db: &str) -> Result<MasterConfig, ConfigError> {
        let text = format!(
            "api: {{ listen: \"0.0.0.0:8150\" }}\ntls: {{ discover: puppet }}\ndb:\n{db}\n"
        );
        masif_daemon::config::parse(Path::new("master.yml"), &text)
    }

    #[test]
    fn one_url_is_a_list_of_one() {
        let c = parse("  url: \"mysql://masif:secret@db1/masif\"").unwrap();
        assert_eq!(
            c.db.urls,
            ["mysql://masif:secret@db1/masif".parse().unwrap()]
        );
        let c = parse("  url: \"sqlite:///var/lib/masif.db\"").unwrap();
        assert_eq!(c.db.urls.len(), 1);
    }

    #[test]
    fn urls_are_read_in_order() {
        let c = parse(
            "  urls:\n    - \"mysql://masif:secret@db2:3306/masif\"\n    - \"mysql://masif:secret@db1:3306/masif\"\n  max_queued_reports: 10",
        )
        .unwrap();
        let hosts: Vec<String> = c.db.urls.iter().map(ToString::to_string).collect();
        assert_eq!(
            hosts,
            [
                "mysql://masif:***@db2:3306/masif",
                "mysql://masif:***@db1:3306/masif"
            ]
        );
        assert_eq!(c.db.max_queued_reports, 10);
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn every_bad_entry_is_reported_at_once() {
        let err = parse(
            "  urls:\n    - \"mysql://u:secret@db1/m\"\n    - \"sqlite:///x.db\"\n    - \"mysql://u:secret@DB1:3306/m\"\n    - \"postgres://u:secret@x/y\"",
        )
        .unwrap_err();
        let lines: Vec<String> = err.lines().collect();
        for key in ["db.urls[1]: ", "db.urls[2]: ", "db.urls[3]: "] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("master.yml: {key}"))),
                "{key} in {lines:?}"
            );
        }
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn bad_lists_name_the_key() {
        let seventeen: String = (0..17).map(|i| format!("\"mysql://h{i}/db\", ")).collect();
        for (db, key, says) in [
            ("  url: \"mysql://a/db\"\n  urls: [\"mysql://b/db\"]", "db.urls: ", "both"),
            ("  max_queued_reports: 5", "db: ", "url"),
            ("  urls: []", "db.urls: ", "at least one"),
            (&format!("  urls: [{seventeen}]"), "db.urls: ", "at most 16"),
            (
                "  urls: [\"mysql://u:secret@a/db\", \"postgres://u:secret@b/db\"]",
                "db.urls[1]: ",
                "expected mysql://",
            ),
            (
                "  urls: [\"mysql://a/db\", \"sqlite:///x.db\"]",
                "db.urls[1]: ",
                "one file",
            ),
            (
                "  urls: [\"mysql://u:secret@a/db\", \"mysql://b/db\", \"mysql://u:secret@a:3306/db\"]",
                "db.urls[2]: ",
                "same address as db.urls[0]",
            ),
            ("  urls: [\"mysql://a/\"]", "db.urls[0]: ", "names no database"),
            ("  urls: \"mysql://a/db\"", "", "urls"),
        ] {
            let err = parse(db).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("master.yml: {key}")),
                "{db}: {err}"
            );
            assert!(err.contains(says), "{db}: {err}");
            assert!(!err.contains("secret"), "{db}: {err}");
            assert_eq!(err.lines().count(), 1, "{db}: {err}");
        }
    }
}

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
            urls: addresses(self.url, self.urls, problems)?,
            max_queued_reports: self.max_queued_reports,
        })
    }
}

/// `db.url` or `db.urls` (exactly one of them), each address checked, the list as a whole
/// too (see `masif_store::check_url_list`).
pub(crate) fn addresses(
    url: Option<Checked<DbUrl>>,
    urls: Option<Vec<Checked<DbUrl>>>,
    problems: &mut Problems,
) -> Option<Vec<DbUrl>> {
    match (url, urls) {
        (Some(url), None) => problems.take("db.url", url).map(|url| vec![url]),
        (None, Some(urls)) => {
            let parsed: Vec<Option<DbUrl>> = urls
                .into_iter()
                .enumerate()
                .map(|(i, url)| problems.take(&format!("db.urls[{i}]"), url))
                .collect();
            let parsed: Vec<DbUrl> = parsed.into_iter().collect::<Option<_>>()?;
            let list = masif_store::check_url_list("db.urls", &parsed);
            let good = list.is_empty();
            for (key, message) in list {
                problems.add(key, message);
            }
            good.then_some(parsed)
        }
        (Some(_), Some(_)) => {
            problems.add("db.urls", "and db.url are both given: use one of them");
            None
        }
        (None, None) => {
            problems.add("db", "needs url (one address) or urls (a list)");
            None
        }
    }
}

//! The database URL of the MySQL back end: the store's own parameters (`max_attempts`,
//! `lock_wait_timeout`, `last_seen_interval`, `connect_timeout`, `max_join_size`) are taken
//! out, the rest goes to mysql_async with the pool size and session setup added.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, PoolConstraints};

use super::{reset_only_when_asked, session_setup, MysqlOptions};
use crate::{redact_url, Result, StoreError};

/// Driver options and store options from `url`, starting from `options`.
pub(super) fn parse_url(
    url: &str,
    mut options: MysqlOptions,
) -> Result<(OptsBuilder, MysqlOptions)> {
    let bad_url = |msg: String| StoreError::Url(redact_url(url), msg);
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut driver_params = Vec::new();
    let mut pool_max = None;
    let mut pool_min = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad_url(format!("{key} must be a positive whole number")))
        };
        match key {
            "max_attempts" => options.max_attempts = number()?,
            "lock_wait_timeout" => options.lock_wait_timeout = Some(number()?),
            "max_join_size" => options.max_join_size = Some(number()?),
            "last_seen_interval" => {
                options.last_seen_interval = Duration::from_secs(u64::from(number()?))
            }
            "connect_timeout" => {
                options.connect_timeout = Duration::from_secs(u64::from(number()?))
            }
            _ => {
                match key {
                    "pool_max" => pool_max = Some(number()?),
                    "pool_min" => pool_min = true,
                    _ => {}
                }
                driver_params.push(pair);
            }
        }
    }
    // mysql_async's default pool_min (10) would make a smaller pool_max an error.
    if pool_max.is_some() && !pool_min {
        driver_params.push("pool_min=1");
    }
    let driver_url = if driver_params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", driver_params.join("&"))
    };
    let opts = Opts::from_url(&driver_url).map_err(|e| bad_url(e.to_string()))?;
    if opts.db_name().is_none_or(str::is_empty) {
        return Err(bad_url("names no database".into()));
    }
    let mut pool_opts = opts.pool_opts().clone();
    if pool_max.is_none() {
        let constraints = PoolConstraints::new(1, options.pool_max)
            .ok_or_else(|| bad_url("pool_max must be at least 1".into()))?;
        pool_opts = pool_opts.with_constraints(constraints);
    }
    let builder = OptsBuilder::from_opts(opts)
        .pool_opts(reset_only_when_asked(pool_opts))
        .setup(session_setup(&options));
    Ok((builder, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(Opts, MysqlOptions)> {
        let defaults = MysqlOptions {
            pool_max: 5,
            ..MysqlOptions::default()
        };
        parse_url(url, defaults).map(|(b, o)| (b.into(), o))
    }

    #[test]
    fn pool_size_comes_from_the_url_or_the_options() {
        let max = |url: &str| parse(url).unwrap().0.pool_opts().constraints().max();
        assert_eq!(max("mysql://h/db"), 5);
        assert_eq!(max("mysql://h/db?pool_max=3"), 3);
        assert_eq!(max("mysql://h/db?pool_min=2&pool_max=3"), 3);
    }

    #[test]
    fn store_parameters_are_taken_out_of_the_url() {
        let (opts, options) = parse(
            "mysql://u:p@h:3306/db?max_attempts=3&lock_wait_timeout=2&last_seen_interval=300\
             &pool_max=4&connect_timeout=7&max_join_size=150000",
        )
        .unwrap();
        assert_eq!(options.max_attempts, 3);
        assert_eq!(options.lock_wait_timeout, Some(2));
        assert_eq!(options.last_seen_interval, Duration::from_secs(300));
        assert_eq!(options.connect_timeout, Duration::from_secs(7));
        assert_eq!(options.max_join_size, Some(150_000));
        assert_eq!(opts.db_name(), Some("db"));
        assert_eq!(opts.pool_opts().constraints().max(), 4);
    }

    #[test]
    fn bad_parameters_are_errors_naming_them_without_the_password() {
        for (url, expected) in [
            ("mysql://u:secret@h/db?max_attempts=0", "max_attempts"),
            (
                "mysql://u:secret@h/db?lock_wait_timeout=x",
                "lock_wait_timeout",
            ),
            (
                "mysql://u:secret@h/db?last_seen_interval=-1",
                "last_seen_interval",
            ),
            ("mysql://u:secret@h/db?pool_max=0", "pool_max"),
            ("mysql://u:secret@h/db?connect_timeout=0", "connect_timeout"),
            ("mysql://u:secret@h/db?max_join_size=0", "max_join_size"),
            ("mysql://u:secret@h/db?bogus=1", "bogus"),
            ("mysql://u:secret@h/", "names no database"),
            ("mysql://u:secret@h", "names no database"),
        ] {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }
}

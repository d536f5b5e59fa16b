//! The handlebars registry (built once at start-up from `templates/ui/`, strict, HTML
//! escaping on), its helpers, and rendering a page into a response.

use handlebars::{handlebars_helper, Handlebars};
use serde::Serialize;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::UiError;

/// The templates, compiled into the binary from `templates/ui/`.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("../../../templates/ui/layout.hbs")),
    ("login", include_str!("../../../templates/ui/login.hbs")),
    ("pending", include_str!("../../../templates/ui/pending.hbs")),
    (
        "select_agents",
        include_str!("../../../templates/ui/select_agents.hbs"),
    ),
    ("agents", include_str!("../../../templates/ui/agents.hbs")),
    ("agent", include_str!("../../../templates/ui/agent.hbs")),
    (
        "approvals",
        include_str!("../../../templates/ui/approvals.hbs"),
    ),
    ("reset", include_str!("../../../templates/ui/reset.hbs")),
    (
        "approving",
        include_str!("../../../templates/ui/approving.hbs"),
    ),
    ("audit", include_str!("../../../templates/ui/audit.hbs")),
    ("error", include_str!("../../../templates/ui/error.hbs")),
    ("pager", include_str!("../../../templates/ui/pager.hbs")),
    ("seen", include_str!("../../../templates/ui/seen.hbs")),
    (
        "last_run",
        include_str!("../../../templates/ui/last_run.hbs"),
    ),
    ("closure", include_str!("../../../templates/ui/closure.hbs")),
    (
        "row_badges",
        include_str!("../../../templates/ui/row_badges.hbs"),
    ),
    ("needs", include_str!("../../../templates/ui/needs.hbs")),
    ("tags", include_str!("../../../templates/ui/tags.hbs")),
    (
        "tag_links",
        include_str!("../../../templates/ui/tag_links.hbs"),
    ),
    (
        "rollouts",
        include_str!("../../../templates/ui/rollouts.hbs"),
    ),
    ("rollout", include_str!("../../../templates/ui/rollout.hbs")),
    (
        "rollout_new",
        include_str!("../../../templates/ui/rollout_new.hbs"),
    ),
    (
        "rollout_state",
        include_str!("../../../templates/ui/rollout_state.hbs"),
    ),
];

/// Static files served under `/static/`: name, content type, body.
pub(crate) const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../templates/ui/static/style.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../templates/ui/static/ui.js"),
    ),
];

/// The compiled templates.
pub(crate) struct Templates {
    hb: Handlebars<'static>,
}

handlebars_helper!(urlq: |s: str| percent_encode(s));
handlebars_helper!(datetime: |t: i64| format_time(t));
handlebars_helper!(opt_datetime: |t: Json| match t.as_i64() {
    Some(t) => format_time(t),
    None => "never".to_owned(),
});

impl Templates {
    /// Compiles every template; a syntax error names the template.
    pub(crate) fn new() -> Result<Self, UiError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.set_dev_mode(false);
        hb.register_escape_fn(handlebars::html_escape);
        hb.register_helper("urlq", Box::new(urlq));
        hb.register_helper("datetime", Box::new(datetime));
        hb.register_helper("opt_datetime", Box::new(opt_datetime));
        for (name, text) in TEMPLATES {
            hb.register_template_string(name, *text)
                .map_err(|e| UiError::Template(format!("templates/ui/{name}.hbs: {e}")))?;
        }
        Ok(Self { hb })
    }

    /// Renders `name` as an HTML page. A failure is logged and answered with a bare 500: the
    /// error text never reaches the page.
    pub(crate) fn render(&self, name: &str, data: &impl Serialize) -> Response {
        match self.hb.render(name, data) {
            Ok(html) => html_response(html, StatusCode::OK),
            Err(e) => {
                tracing::error!(template = name, error = %e, "render failed");
                html_response(
                    "<!doctype html><title>Internal error</title><p>Internal error: the page could not be rendered. The details are in the UI's log.</p>".to_owned(),
                    StatusCode::INTERNAL_SERVER_ERROR,
                )
            }
        }
    }

    /// The HTML `name` renders to (tests of a page's template).
    #[cfg(test)]
    pub(crate) fn render_text(&self, name: &str, data: &impl Serialize) -> String {
        self.hb.render(name, data).expect("the template renders")
    }
}

fn html_response(html: String, status: StatusCode) -> Response {
    let mut r = Response::new(html.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for query values).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs, skipping empty values (`?a=1&b=x%20y`, or "" for none).
pub(crate) fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", percent_encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn format_time(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        ),
        Err(_) => format!("{t} (invalid time)"),
    }
}

/// Now in unix seconds, the unit of the store's times.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How long ago `t` was at `now`, coarsely: `42 s ago`, `5 min ago`, `3 h 20 min ago`,
/// `4 days ago`. A time ahead of `now` (another host's clock) is `just now`.
pub(crate) fn format_age(now: i64, t: i64) -> String {
    let secs = now.saturating_sub(t);
    match secs {
        ..=0 => "just now".to_owned(),
        1..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => match (secs % 3600) / 60 {
            0 => format!("{} h ago", secs / 3600),
            m => format!("{} h {m} min ago", secs / 3600),
        },
        86_400..=172_799 => "1 day ago".to_owned(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A run's duration: `850 ms`, `12.4 s`, `3 min 5 s`, `1 h 2 min`.
pub(crate) fn format_duration_ms(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{}.{} s", secs, (ms % 1000) / 100),
        60_000..=3_599_999 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        Templates::new().unwrap();
    }

    #[test]
    fn values_are_escaped_in_text_and_attributes() {
        let t = Templates::new().unwrap();
        let r = t.render(
            "error",
            &serde_json::json!({
                "title": "<b>x</b>", "user": null, "csrf": "", "active": "",
                "status": 400, "message": "<script>alert(1)</script>\"'",
            }),
        );
        assert_eq!(r.status(), StatusCode::OK);
        let body = String::from_utf8(futures_body(r)).unwrap();
        assert!(!body.contains("<script>alert"), "{body}");
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{body}"
        );
    }

    #[test]
    fn a_render_failure_is_a_500_without_details() {
        let t = Templates::new().unwrap();
        // Strict mode: a missing field fails the render.
        let r = t.render("error", &serde_json::json!({}));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8(futures_body(r)).unwrap();
        assert!(!body.contains("strict"), "{body}");
    }

    #[test]
    fn urls_and_times_are_formatted() {
        assert_eq!(
            percent_encode("a b&c=\"d\"/é"),
            "a%20b%26c%3D%22d%22%2F%C3%A9"
        );
        assert_eq!(
            query_string(&[
                ("package", Some("lib c")),
                ("agent", None),
                ("page", Some(""))
            ]),
            "?package=lib%20c"
        );
        assert_eq!(query_string(&[]), "");
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert!(format_time(i64::MAX).contains("invalid"));
    }

    #[test]
    fn ages_and_durations_are_coarse() {
        let now = 1_000_000;
        for (ago, text) in [
            (-30, "just now"),
            (0, "just now"),
            (42, "42 s ago"),
            (60, "1 min ago"),
            (3599, "59 min ago"),
            (3600, "1 h ago"),
            (3600 + 20 * 60 + 5, "1 h 20 min ago"),
            (86_400, "1 day ago"),
            (4 * 86_400 + 7, "4 days ago"),
        ] {
            assert_eq!(format_age(now, now - ago), text, "{ago}");
        }
        assert_eq!(format_age(i64::MAX, i64::MIN), "106751991167300 days ago");
        for (ms, text) in [
            (0, "0 ms"),
            (850, "850 ms"),
            (12_480, "12.4 s"),
            (185_000, "3 min 5 s"),
            (3_720_000, "1 h 2 min"),
        ] {
            assert_eq!(format_duration_ms(ms), text, "{ms}");
        }
    }

    fn futures_body(r: Response) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes().to_vec() })
    }
}

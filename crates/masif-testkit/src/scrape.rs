//! Scraping a metrics listener the way Prometheus does, for tests: `GET /metrics` over plain
//! HTTP/1.1, and a strict reader of the OpenMetrics text format that the answer must be
//! (families with `# TYPE` and `# HELP`, samples with labels, `# EOF` last) into values a test
//! can assert exactly; and the metric names a Grafana dashboard's queries use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One answer of a metrics listener.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Sends `METHOD PATH` (with `connection: close`) to `addr` and reads the whole answer.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head =
            format!("{method} {path} HTTP/1.1\r\nhost: metrics\r\nconnection: close\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("the metrics listener did not answer");
    let text = String::from_utf8(raw).expect("the answer is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = dechunk(&headers, body);
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(headers: &BTreeMap<String, String>, body: &str) -> String {
    if headers.get("transfer-encoding").map(String::as_str) != Some("chunked") {
        return body.to_owned();
    }
    let mut rest = body;
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// `GET /metrics`, which must be 200 in the OpenMetrics text format, parsed.
pub async fn scrape(addr: SocketAddr) -> Metrics {
    let answer = request(addr, "GET", "/metrics").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{answer:?}"
    );
    Metrics::parse(&answer.body).unwrap_or_else(|e| panic!("{e}\n{}", answer.body))
}

/// One metric family: its type and help, and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: String,
    /// (sample name, labels, value), in order.
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// A parsed exposition: families by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub families: BTreeMap<String, Family>,
}

impl Metrics {
    /// Reads an OpenMetrics text exposition; any line out of place is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut metrics = Metrics::default();
        let mut current: Option<String> = None;
        let mut ended = false;
        for (n, line) in text.lines().enumerate() {
            let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            if ended {
                return Err(bad("after # EOF"));
            }
            if line == "# EOF" {
                ended = true;
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (keyword, name, value) = (parts.next(), parts.next(), parts.next());
                let (Some(keyword), Some(name), Some(value)) = (keyword, name, value) else {
                    return Err(bad("a comment that is not HELP, TYPE or UNIT"));
                };
                check_name(name).map_err(|e| bad(&e))?;
                let family = metrics
                    .families
                    .entry(name.to_owned())
                    .or_insert_with(|| Family {
                        kind: String::new(),
                        help: String::new(),
                        samples: Vec::new(),
                    });
                match keyword {
                    "HELP" => family.help = value.to_owned(),
                    "TYPE" => family.kind = value.to_owned(),
                    "UNIT" => {}
                    _ => return Err(bad("an unknown comment")),
                }
                current = Some(name.to_owned());
                continue;
            }
            let (name, labels, value) = sample(line).map_err(|e| bad(&e))?;
            let family_name = current
                .as_deref()
                .ok_or_else(|| bad("a sample before any family"))?;
            if !name.starts_with(family_name) {
                return Err(bad(&format!("a sample outside its family {family_name}")));
            }
            metrics
                .families
                .get_mut(family_name)
                .expect("the current family exists")
                .samples
                .push((name, labels, value));
        }
        if !ended {
            return Err("no # EOF at the end".into());
        }
        for (name, family) in &metrics.families {
            if family.kind.is_empty() {
                return Err(format!("{name} has no # TYPE"));
            }
        }
        Ok(metrics)
    }

    /// The value of the sample `name` with exactly `labels`; panics if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .values()
            .flat_map(|f| f.samples.iter())
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {self:#?}"))
    }

    /// The type of family `name`; panics if there is none.
    pub fn kind(&self, name: &str) -> &str {
        &self
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
            .kind
    }

    /// Every sample name, for checking that what a dashboard uses exists.
    pub fn sample_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .families
            .values()
            .flat_map(|f| f.samples.iter().map(|(n, _, _)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The shipped Grafana dashboard (`packaging/grafana/masif-upgrader.json`).
pub fn dashboard() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/grafana/masif-upgrader.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `masif_…` metric name in the `expr` of a Grafana dashboard's targets; panics if the
/// dashboard is not JSON or has no such query.
pub fn dashboard_metrics(json: &str) -> std::collections::BTreeSet<String> {
    let dashboard: serde_json::Value = serde_json::from_str(json).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has no queries");
    let mut names = std::collections::BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("masif_") {
            let starts_a_word = !rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if starts_a_word {
                names.insert(name.clone());
            }
            rest = &rest[at + name.len()..];
        }
    }
    names
}

fn collect_exprs(value: &serde_json::Value, exprs: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => exprs.push(expr.clone()),
                    _ => collect_exprs(value, exprs),
                }
            }
        }
        serde_json::Value::Array(values) => values.iter().for_each(|v| collect_exprs(v, exprs)),
        _ => {}
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a metric name"))
    }
}

type Sample = (String, BTreeMap<String, String>, f64);

/// `name{label="value",…} value`.
fn sample(line: &str) -> Result<Sample, String> {
    let (name_and_labels, value) = line.rsplit_once(' ').ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("{v:?} is not a number"))?,
    };
    let (name, labels) = match name_and_labels.split_once('{') {
        None => (name_and_labels, BTreeMap::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').ok_or("unclosed labels")?;
            (name, labels(inner)?)
        }
    };
    check_name(name)?;
    Ok((name.to_owned(), labels, value))
}

fn labels(mut inner: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    while !inner.is_empty() {
        let (key, rest) = inner.split_once("=\"").ok_or("a label without =\"")?;
        check_name(key)?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("a bad escape in a label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        inner = &rest[end + 1..];
        inner = inner.strip_prefix(',').unwrap_or(inner);
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exposition_reads_back_exactly() {
        let text = "# HELP a_things Things.\n# TYPE a_things counter\n\
                    a_things_total{kind=\"x\\\"y\",n=\"1\"} 3\n\
                    # HELP b_seconds Time.\n# TYPE b_seconds histogram\n\
                    b_seconds_bucket{le=\"0.5\"} 1\nb_seconds_bucket{le=\"+Inf\"} 2\n\
                    b_seconds_sum 0.75\nb_seconds_count 2\n# EOF\n";
        let m = Metrics::parse(text).unwrap();
        assert_eq!(m.kind("a_things"), "counter");
        assert_eq!(
            m.value("a_things_total", &[("kind", "x\"y"), ("n", "1")]),
            3.0
        );
        assert_eq!(m.value("b_seconds_bucket", &[("le", "+Inf")]), 2.0);
        assert_eq!(m.value("b_seconds_count", &[]), 2.0);
    }

    #[test]
    fn dashboard_queries_name_their_metrics() {
        let json = r#"{"panels":[{"targets":[
            {"expr":"sum by (le) (rate(masif_a_bucket[5m])) / masif_b"},
            {"expr":"up{job=\"x_masif_c\"}"}]}]}"#;
        let names: Vec<String> = dashboard_metrics(json).into_iter().collect();
        assert_eq!(names, ["masif_a_bucket", "masif_b"]);
    }

    #[test]
    fn malformed_expositions_are_refused() {
        for text in [
            "",
            "a 1\n# EOF\n",
            "# TYPE a gauge\na 1\n",
            "# TYPE a gauge\na x\n# EOF\n",
            "# TYPE a gauge\na{b=\"1} 1\n# EOF\n",
            "# TYPE a gauge\nb 1\n# EOF\n",
            "# TYPE a gauge\na 1\n# EOF\na 2\n",
            "# HELP a x\na 1\n# EOF\n",
        ] {
            assert!(Metrics::parse(text).is_err(), "{text:?}");
        }
    }
}

//! `master:` of `agent.yml`: one master (`host`) or several (`hosts`, the agent moving to
//! the next when the one in use does not answer), and the certificate name (`cn`) they all
//! present.

use std::collections::BTreeSet;

use masif_daemon::config::{Checked, Problems};
use serde::Deserialize;

/// Most masters `master.hosts` may list.
pub(crate) const MAX_MASTERS: usize = 16;

/// `master:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaster {
    host: Option<String>,
    #[serde(default)]
    hosts: Checked<Option<Vec<serde_yaml::Value>>>,
    cn: String,
}

/// The validated `master:`.
pub(super) struct MasterSettings {
    pub(super) hosts: Vec<String>,
    pub(super) cn: String,
}

/// Checks `master:`, recording each problem under its key (`master.hosts[1]`).
pub(super) fn master_settings(raw: RawMaster, problems: &mut Problems) -> Option<MasterSettings> {
    if rustls::pki_types::ServerName::try_from(raw.cn.as_str()).is_err() {
        problems.add(
            "master.cn",
            format!("{:?} is not a valid certificate name", raw.cn),
        );
    }
    let hosts = problems.take("master.hosts", raw.hosts)?;
    let hosts = match (raw.host, hosts) {
        (Some(_), Some(_)) => {
            problems.add(
                "master.hosts",
                "give master.host (one master) or master.hosts (several), not both",
            );
            return None;
        }
        (None, None) => {
            problems.add(
                "master.host",
                "missing: give master.host (one master) or master.hosts (several)",
            );
            return None;
        }
        (Some(host), None) => {
            problems.check("master.host", check_host(&host))?;
            vec![host]
        }
        (None, Some(list)) => check_hosts(&list, problems)?,
    };
    Some(MasterSettings { hosts, cn: raw.cn })
}

/// `master.hosts`: 1 to [`MAX_MASTERS`] distinct `host:port` strings.
fn check_hosts(raw: &[serde_yaml::Value], problems: &mut Problems) -> Option<Vec<String>> {
    if raw.is_empty() {
        problems.add(
            "master.hosts",
            format!("empty; list 1 to {MAX_MASTERS} masters as host:port"),
        );
        return None;
    }
    let mut ok = true;
    if raw.len() > MAX_MASTERS {
        problems.add(
            "master.hosts",
            format!("{} masters; at most {MAX_MASTERS}", raw.len()),
        );
        ok = false;
    }
    let mut seen = BTreeSet::new();
    let mut hosts = Vec::new();
    for (i, value) in raw.iter().enumerate() {
        let key = format!("master.hosts[{i}]");
        let Some(host) = value.as_str() else {
            problems.add(key, "not a string (expected host:port)");
            ok = false;
            continue;
        };
        if let Err(e) = check_host(host) {
            problems.add(key, e);
            ok = false;
        } else if !seen.insert(host.to_ascii_lowercase()) {
            problems.add(key, format!("{host:?} is given twice"));
            ok = false;
        }
        hosts.push(host.to_owned());
    }
    ok.then_some(hosts)
}

/// `name:port` or `[v6]:port`, with a port from 1 to 65535.
fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = host
        .rsplit_once(':')
        .ok_or_else(|| format!("{host:?} has no port (expected host:port)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{host:?}: port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(format!("{host:?}: port 0"));
    }
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("{host:?}: bad host name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::AgentConfig;
    use rstest::rstest;

    const TLS: &str = "tls: { discover: puppet }\n";

    fn parse(master: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(&format!("master: {master}\n{TLS}"), "a.yml").map_err(|e| e.to_string())
    }

    #[test]
    fn one_host_or_a_list_of_hosts() {
        let c = parse("{ host: \"m1:8150\", cn: m }").unwrap();
        assert_eq!(c.master_hosts, ["m1:8150"]);
        let c =
            parse("{ hosts: [\"m1:8150\", \"m2.example.com:8150\", \"[::1]:9\"], cn: m }").unwrap();
        assert_eq!(
            c.master_hosts,
            ["m1:8150", "m2.example.com:8150", "[::1]:9"]
        );
        assert_eq!(c.master_cn, "m");
        let c = parse("{ hosts: [\"m1:8150\"], cn: m }").unwrap();
        assert_eq!(c.master_hosts, ["m1:8150"]);
        let sixteen: Vec<String> = (1..=16).map(|i| format!("\"m{i}:8150\"")).collect();
        let c = parse(&format!("{{ hosts: [{}], cn: m }}", sixteen.join(", "))).unwrap();
        assert_eq!(c.master_hosts.len(), 16);
    }

    #[rstest]
    #[case::both(
        "{ host: \"m1:1\", hosts: [\"m2:1\"], cn: m }",
        "a.yml: master.hosts: give master.host (one master) or master.hosts (several), not both"
    )]
    #[case::neither(
        "{ cn: m }",
        "a.yml: master.host: missing: give master.host (one master) or master.hosts (several)"
    )]
    #[case::empty("{ hosts: [], cn: m }", "a.yml: master.hosts: empty; list 1 to 16")]
    #[case::not_a_list("{ hosts: \"m1:1\", cn: m }", "a.yml: master.hosts: ")]
    #[case::no_port(
        "{ hosts: [\"m1:1\", m2], cn: m }",
        "a.yml: master.hosts[1]: \"m2\" has no port"
    )]
    #[case::bad_port(
        "{ hosts: [\"m1:1\", \"m2:1\", \"m3:99999\"], cn: m }",
        "a.yml: master.hosts[2]: \"m3:99999\": port \"99999\""
    )]
    #[case::port_zero(
        "{ hosts: [\"m1:0\"], cn: m }",
        "a.yml: master.hosts[0]: \"m1:0\": port 0"
    )]
    #[case::bad_name(
        "{ hosts: [\"m 1:8150\"], cn: m }",
        "a.yml: master.hosts[0]: \"m 1:8150\": bad host name"
    )]
    #[case::not_a_string(
        "{ hosts: [\"m1:1\", [m2]], cn: m }",
        "a.yml: master.hosts[1]: not a string"
    )]
    #[case::twice(
        "{ hosts: [\"m1:1\", \"m2:1\", \"M1:1\"], cn: m }",
        "a.yml: master.hosts[2]: \"M1:1\" is given twice"
    )]
    #[case::unknown_key("{ hosts: [\"m1:1\"], cn: m, host_list: [] }", "host_list")]
    #[case::bad_cn(
        "{ hosts: [\"m1:1\"], cn: \"not a name\" }",
        "a.yml: master.cn: \"not a name\" is not a valid"
    )]
    fn bad_lists_name_the_key(#[case] master: &str, #[case] problem: &str) {
        let msg = parse(master).unwrap_err();
        assert!(msg.contains(problem), "{master}: {msg}");
    }

    #[test]
    fn more_than_sixteen_masters_are_refused() {
        let many: Vec<String> = (1..=17).map(|i| format!("\"m{i}:8150\"")).collect();
        let msg = parse(&format!("{{ hosts: [{}], cn: m }}", many.join(", "))).unwrap_err();
        assert!(
            msg.starts_with("a.yml: master.hosts: 17 masters; at most 16"),
            "{msg}"
        );
    }

    #[test]
    fn every_bad_entry_is_reported_at_once() {
        let msg = parse("{ hosts: [m1, \"m2:1\", 7, \"m2:1\"], cn: \"not a name\" }").unwrap_err();
        let lines: Vec<&str> = msg.lines().collect();
        for key in [
            "master.cn",
            "master.hosts[0]",
            "master.hosts[2]",
            "master.hosts[3]",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("a.yml: {key}: "))),
                "{key} in {lines:?}"
            );
        }
        assert_eq!(lines.len(), 4, "{lines:?}");
    }
}

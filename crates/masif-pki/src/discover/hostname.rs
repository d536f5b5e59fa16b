//! The host's fully qualified name, the default certificate name of every PKI, found without DNS.
//!
//! Like `hostname -f` with files-only resolution (what Puppet and Icinga 2 fall back to): the
//! host name, then its canonical name in `/etc/hosts`, then `domain`/`search` from
//! `/etc/resolv.conf`. With a `root` prefix, the files under it are read instead of the kernel's
//! host name, so a mounted tree is judged as the host it belongs to.

use std::path::Path;

use super::under;
use crate::error::{PkiError, Result};

/// The lowercase FQDN of the host (or of the tree mounted at `root`).
pub(crate) fn fqdn(root: Option<&Path>) -> Result<String> {
    let host = short_hostname(root)?;
    if host.contains('.') {
        return Ok(host);
    }
    let hosts = std::fs::read_to_string(under(root, "/etc/hosts")).unwrap_or_default();
    if let Some(name) = canonical_from_hosts(&host, &hosts) {
        return Ok(name);
    }
    let resolv = std::fs::read_to_string(under(root, "/etc/resolv.conf")).unwrap_or_default();
    Ok(match domain_from_resolv(&resolv) {
        Some(domain) => format!("{host}.{domain}"),
        None => host,
    })
}

fn short_hostname(root: Option<&Path>) -> Result<String> {
    let candidates: Vec<std::path::PathBuf> = match root {
        Some(_) => vec![under(root, "/etc/hostname")],
        None => vec!["/proc/sys/kernel/hostname".into(), "/etc/hostname".into()],
    };
    for path in &candidates {
        if let Ok(text) = std::fs::read_to_string(path) {
            let name = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !name.is_empty() {
                return Ok(name);
            }
        }
    }
    Err(PkiError::Discover {
        source_name: "hostname".into(),
        reason: format!(
            "cannot find the host name (tried {}); give the certificate name explicitly",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The first name of an `/etc/hosts` line that lists `host`, if it is `host.<domain>`.
fn canonical_from_hosts(host: &str, hosts: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let names: Vec<String> = line
            .split_whitespace()
            .skip(1)
            .map(str::to_ascii_lowercase)
            .collect();
        let canonical = names.first()?;
        let prefix = format!("{host}.");
        (names.iter().any(|n| n == host) && canonical.starts_with(&prefix))
            .then(|| canonical.clone())
    })
}

/// `domain X`, else the first `search` entry, of a resolv.conf.
fn domain_from_resolv(resolv: &str) -> Option<String> {
    let mut search = None;
    for line in resolv.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("domain"), Some(domain)) => {
                return Some(domain.trim_end_matches('.').to_ascii_lowercase())
            }
            (Some("search"), Some(first)) if search.is_none() => {
                search = Some(first.trim_end_matches('.').to_ascii_lowercase())
            }
            _ => {}
        }
    }
    search
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_name_comes_from_the_hosts_line_listing_the_host() {
        let hosts = "127.0.0.1 localhost\n# 10.0.0.9 web1.wrong.example web1\n10.0.0.5 web1.example.com web1 # comment\n";
        assert_eq!(
            canonical_from_hosts("web1", hosts).as_deref(),
            Some("web1.example.com")
        );
        assert_eq!(canonical_from_hosts("web2", hosts), None);
        assert_eq!(canonical_from_hosts("web1", "10.0.0.5 web1\n"), None);
    }

    #[test]
    fn domain_prefers_domain_over_search() {
        assert_eq!(
            domain_from_resolv("search a.example b.example\ndomain c.example.\n").as_deref(),
            Some("c.example")
        );
        assert_eq!(
            domain_from_resolv("nameserver 1.1.1.1\nsearch A.example b\n").as_deref(),
            Some("a.example")
        );
        assert_eq!(domain_from_resolv("nameserver 1.1.1.1\n"), None);
    }

    #[test]
    fn fqdn_of_a_mounted_tree() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("hostname"), "Node7\n").unwrap();
        assert_eq!(fqdn(Some(dir.path())).unwrap(), "node7");
        std::fs::write(etc.join("resolv.conf"), "search lab.example\n").unwrap();
        assert_eq!(fqdn(Some(dir.path())).unwrap(), "node7.lab.example");
        std::fs::write(etc.join("hosts"), "192.0.2.7 node7.dc1.example node7\n").unwrap();
        assert_eq!(fqdn(Some(dir.path())).unwrap(), "node7.dc1.example");
        std::fs::write(etc.join("hostname"), "node7.full.example\n").unwrap();
        assert_eq!(fqdn(Some(dir.path())).unwrap(), "node7.full.example");
        std::fs::remove_file(etc.join("hostname")).unwrap();
        assert!(fqdn(Some(dir.path()))
            .unwrap_err()
            .to_string()
            .contains("etc/hostname"));
    }

    #[test]
    fn fqdn_of_this_host_is_not_empty() {
        assert!(!fqdn(None).unwrap().is_empty());
    }
}

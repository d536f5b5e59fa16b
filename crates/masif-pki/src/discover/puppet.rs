//! Puppet agent certificates: the ssldir of the official packages (`/etc/puppetlabs/puppet/ssl`)
//! or of Debian's (`/var/lib/puppet/ssl`), certname from `puppet.conf` or the FQDN.

use std::path::Path;

use super::{choose_name, fail, names_in, optional_crl, under, Discovered};
use crate::error::Result;
use crate::source::Discover;
use crate::tls::TlsFiles;

/// Where one kind of Puppet installation keeps things.
struct Layout {
    label: &'static str,
    confdir: &'static str,
    vardir: &'static str,
    ssldir: &'static str,
}

/// The official (Puppet/OpenVox) packages first, then Debian's.
const LAYOUTS: [Layout; 2] = [
    Layout {
        label: "official packages",
        confdir: "/etc/puppetlabs/puppet",
        vardir: "/opt/puppetlabs/puppet/cache",
        ssldir: "/etc/puppetlabs/puppet/ssl",
    },
    Layout {
        label: "Debian packages",
        confdir: "/etc/puppet",
        vardir: "/var/cache/puppet",
        ssldir: "/var/lib/puppet/ssl",
    },
];

pub(super) fn discover(root: Option<&Path>, name: Option<&str>) -> Result<Discovered> {
    let mut checked = Vec::new();
    for layout in &LAYOUTS {
        let conf_path = under(root, format!("{}/puppet.conf", layout.confdir));
        let conf = std::fs::read_to_string(&conf_path).unwrap_or_default();
        let setting = |key: &str| {
            agent_setting(&conf, key).map(|v| {
                v.replace("$confdir", layout.confdir)
                    .replace("$vardir", layout.vardir)
            })
        };
        let mut notes = vec![format!("Puppet layout: {}", layout.label)];
        let ssldir = match setting("ssldir") {
            Some(dir) => {
                notes.push(format!("ssldir {dir} from {}", conf_path.display()));
                under(root, dir)
            }
            None => under(root, layout.ssldir),
        };
        if !ssldir.is_dir() {
            checked.push(format!("{} (no such directory)", ssldir.display()));
            continue;
        }
        let configured = setting("certname").map(|c| {
            (
                c.to_ascii_lowercase(),
                format!("certname in {}", conf_path.display()),
            )
        });
        let name = choose_name(name, configured, root, &mut notes)?;
        let cert = ssldir.join("certs").join(format!("{name}.pem"));
        if !cert.is_file() {
            let present: Vec<String> = names_in(&ssldir.join("certs"), ".pem")
                .into_iter()
                .filter(|n| n != "ca")
                .collect();
            checked.push(format!(
                "{} (missing{})",
                cert.display(),
                match present.is_empty() {
                    true => String::new(),
                    false => format!("; found {}", present.join(", ")),
                }
            ));
            continue;
        }
        notes.push(format!("ssldir {}", ssldir.display()));
        let files = TlsFiles {
            cert,
            key: ssldir.join("private_keys").join(format!("{name}.pem")),
            ca: ssldir.join("certs").join("ca.pem"),
            crl: optional_crl(ssldir.join("crl.pem"), &mut notes),
        };
        return Ok(Discovered {
            source: Discover::Puppet.to_string(),
            name,
            files,
            notes,
        });
    }
    Err(fail(
        &Discover::Puppet,
        format!("no agent certificate found: checked {}", checked.join(", ")),
    ))
}

/// A setting as the agent sees it: `[agent]` wins over `[main]`; other sections are ignored.
fn agent_setting(conf: &str, key: &str) -> Option<String> {
    let mut section = "main".to_owned();
    let (mut main, mut agent) = (None, None);
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key || v.trim().is_empty() {
            continue;
        }
        let value = Some(v.trim().trim_matches('"').to_owned());
        match section.as_str() {
            "main" => main = value,
            "agent" => agent = value,
            _ => {}
        }
    }
    agent.or(main)
}

#[cfg(test)]
mod tests {
    use super::agent_setting;

    #[test]
    fn agent_section_wins_over_main_and_others_are_ignored() {
        let conf = "certname = main.example\n[server]\ncertname = server.example\n[agent]\n  certname = Agent.example # comment\n";
        assert_eq!(
            agent_setting(conf, "certname").as_deref(),
            Some("Agent.example")
        );
        let conf = "[main]\ncertname = main.example\nssldir = $vardir/ssl\n[user]\ncertname = u\n";
        assert_eq!(
            agent_setting(conf, "certname").as_deref(),
            Some("main.example")
        );
        assert_eq!(
            agent_setting(conf, "ssldir").as_deref(),
            Some("$vardir/ssl")
        );
        assert_eq!(
            agent_setting("[main]\n# certname = x\ncertname =\n", "certname"),
            None
        );
        assert_eq!(
            agent_setting("garbage without equals\n[[[\n", "certname"),
            None
        );
    }
}

//! Icinga 2 node certificates: `/var/lib/icinga2/certs` (2.8+) or `/etc/icinga2/pki` (older),
//! named after `const NodeName` in `constants.conf` or the FQDN.

use std::path::{Path, PathBuf};

use super::{choose_name, fail, names_in, under, Discovered};
use crate::error::Result;
use crate::source::Discover;
use crate::tls::TlsFiles;

const CONSTANTS: &str = "/etc/icinga2/constants.conf";
const API_CONF: &str = "/etc/icinga2/features-enabled/api.conf";
/// Certificate directories, newest layout first.
const DIRS: [&str; 2] = ["/var/lib/icinga2/certs", "/etc/icinga2/pki"];

pub(super) fn discover(root: Option<&Path>, name: Option<&str>) -> Result<Discovered> {
    let constants = under(root, CONSTANTS);
    let configured = std::fs::read_to_string(&constants)
        .ok()
        .and_then(|text| string_constant(&text, "NodeName"))
        .map(|n| (n, format!("NodeName in {}", constants.display())));
    let mut notes = Vec::new();
    let name = choose_name(name, configured, root, &mut notes)?;
    let mut checked = Vec::new();
    for dir in DIRS.iter().map(|d| under(root, d)) {
        let cert = dir.join(format!("{name}.crt"));
        if !cert.is_file() {
            let present = names_in(&dir, ".crt");
            checked.push(match present.is_empty() {
                true => format!("{} (missing)", cert.display()),
                false => format!("{} (missing; found {})", cert.display(), present.join(", ")),
            });
            continue;
        }
        notes.push(format!("certificate directory {}", dir.display()));
        let crl = api_crl_path(root, &mut notes);
        return Ok(Discovered {
            source: Discover::Icinga2.to_string(),
            files: TlsFiles {
                cert,
                key: dir.join(format!("{name}.key")),
                ca: dir.join("ca.crt"),
                crl,
            },
            name,
            notes,
        });
    }
    Err(fail(
        &Discover::Icinga2,
        format!("no certificate for {name}: checked {}", checked.join(", ")),
    ))
}

/// The CRL named by `crl_path = "…"` in the enabled api feature; Icinga 2 publishes none itself.
fn api_crl_path(root: Option<&Path>, notes: &mut Vec<String>) -> Option<PathBuf> {
    let api = under(root, API_CONF);
    let path = std::fs::read_to_string(&api)
        .ok()
        .and_then(|text| string_attribute(&text, "crl_path"))
        .map(|p| under(root, p));
    match path {
        Some(path) => {
            notes.push(format!(
                "CRL {} from crl_path in {}",
                path.display(),
                api.display()
            ));
            Some(path)
        }
        None => {
            notes.push(format!(
                "no crl_path in {}: revocation is not checked",
                api.display()
            ));
            None
        }
    }
}

/// The value of `const NAME = "value"` (outside `//`, `#` and `/* */` comments).
fn string_constant(text: &str, name: &str) -> Option<String> {
    code_lines(text).find_map(|line| {
        let rest = line.strip_prefix("const")?.trim_start();
        let rest = rest.strip_prefix(name)?.trim_start().strip_prefix('=')?;
        quoted(rest)
    })
}

/// The value of `name = "value"` inside an object definition.
fn string_attribute(text: &str, name: &str) -> Option<String> {
    code_lines(text).find_map(|line| {
        let rest = line.strip_prefix(name)?.trim_start().strip_prefix('=')?;
        quoted(rest)
    })
}

/// The lines of an Icinga 2 config with comments removed and whitespace trimmed.
fn code_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut in_block = false;
    text.lines().filter_map(move |raw| {
        let mut line = String::new();
        let mut rest = raw;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                match rest.find("/*") {
                    Some(start) => {
                        line.push_str(&rest[..start]);
                        rest = &rest[start + 2..];
                        in_block = true;
                    }
                    None => {
                        line.push_str(rest);
                        break;
                    }
                }
            }
        }
        let line = line.trim();
        (!line.starts_with("//") && !line.starts_with('#') && !line.is_empty())
            .then(|| line.to_owned())
    })
}

/// The content of a leading double-quoted string literal (no escapes inside names).
fn quoted(text: &str) -> Option<String> {
    let inner = text.trim_start().strip_prefix('"')?;
    let end = inner.find('"')?;
    let value = &inner[..end];
    (!value.is_empty() && !value.contains('\\')).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_is_read_outside_comments() {
        let text = r#"
/* const NodeName = "block.example" */
// const NodeName = "line.example"
# const NodeName = "hash.example"
const ZoneName = "zone"
const NodeName = "node1.example.com"
"#;
        assert_eq!(
            string_constant(text, "NodeName").as_deref(),
            Some("node1.example.com")
        );
        assert_eq!(string_constant(text, "ZoneName").as_deref(), Some("zone"));
        assert_eq!(
            string_constant("/*\nconst NodeName = \"x\"\n*/\n", "NodeName"),
            None
        );
        assert_eq!(
            string_constant("const NodeName = NodeName + \"x\"", "NodeName"),
            None
        );
        assert_eq!(string_constant("const NodeNameX = \"x\"", "NodeName"), None);
    }

    #[test]
    fn crl_path_is_read_from_the_api_object() {
        let text = "object ApiListener \"api\" {\n  accept_config = true\n  crl_path = \"/etc/icinga2/pki/crl.pem\"\n}\n";
        assert_eq!(
            string_attribute(text, "crl_path").as_deref(),
            Some("/etc/icinga2/pki/crl.pem")
        );
        assert_eq!(
            string_attribute("  // crl_path = \"/x\"\n", "crl_path"),
            None
        );
    }
}

//! Finding a host's certificate, key, CA bundle and CRL in an existing PKI (Puppet, Icinga 2, easy-rsa).
//!
//! Every default path can be moved under a `root` prefix, as if the tree were mounted there
//! (for tests, containers and checking another host's disk).

mod easyrsa;
pub(crate) mod hostname;
mod icinga2;
mod puppet;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{PkiError, Result};
use crate::source::{valid_name, Discover, DiscoverRequest, Role};
use crate::tls::TlsFiles;

/// What discovery found, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovered {
    /// The source that was searched (`puppet`, `icinga2`, `easyrsa:DIR`).
    pub source: String,
    /// The certificate name that was looked for.
    pub name: String,
    pub files: TlsFiles,
    /// How the name and directories were chosen, for `masif-pki discover`.
    pub notes: Vec<String>,
}

/// Finds the TLS files described by `request`. The same files serve both roles with every
/// source supported today; `role` is there so a source may tell them apart.
pub fn discover(request: &DiscoverRequest, role: Role) -> Result<Discovered> {
    let _ = role;
    let root = request.root.as_deref();
    let name = match &request.name {
        Some(name) if !valid_name(name) => {
            return Err(fail(
                &request.discover,
                format!("{name:?} is not a valid certificate name"),
            ))
        }
        Some(name) => Some(name.as_str()),
        None => None,
    };
    match &request.discover {
        Discover::Puppet => puppet::discover(root, name),
        Discover::Icinga2 => icinga2::discover(root, name),
        Discover::EasyRsa(dir) => easyrsa::discover(&under(root, dir), root, name),
    }
}

/// Tries Puppet, then Icinga 2; the error lists what each said.
pub fn discover_any(name: Option<&str>, root: Option<&Path>, role: Role) -> Result<Discovered> {
    let mut reasons = Vec::new();
    for source in [Discover::Puppet, Discover::Icinga2] {
        let request = DiscoverRequest {
            discover: source,
            name: name.map(String::from),
            root: root.map(Path::to_path_buf),
        };
        match discover(&request, role) {
            Ok(found) => return Ok(found),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    Err(PkiError::Discover {
        source_name: "puppet or icinga2".into(),
        reason: format!("nothing found ({})", reasons.join("; ")),
    })
}

/// `path` under `root` (as if the tree were mounted there); `path` itself without a root.
pub(crate) fn under(root: Option<&Path>, path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    match root {
        None => path.to_path_buf(),
        Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
    }
}

/// A discovery error for `source`.
fn fail(source: &Discover, reason: impl Into<String>) -> PkiError {
    PkiError::Discover {
        source_name: source.to_string(),
        reason: reason.into(),
    }
}

/// The certificate name to look for: given, else from the PKI's config, else the FQDN.
fn choose_name(
    given: Option<&str>,
    configured: Option<(String, String)>,
    root: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<String> {
    if let Some(name) = given {
        notes.push(format!("name {name} given explicitly"));
        return Ok(name.to_owned());
    }
    let (name, origin) = match configured {
        Some((name, origin)) => (name, origin),
        None => (hostname::fqdn(root)?, "the host's FQDN".to_owned()),
    };
    if !valid_name(&name) {
        return Err(PkiError::Discover {
            source_name: "name".into(),
            reason: format!("{name:?} from {origin} is not a valid certificate name"),
        });
    }
    notes.push(format!("name {name} from {origin}"));
    Ok(name)
}

/// The optional CRL: `path` if it exists, with a note either way.
fn optional_crl(path: PathBuf, notes: &mut Vec<String>) -> Option<PathBuf> {
    if path.exists() {
        notes.push(format!("CRL {}", path.display()));
        Some(path)
    } else {
        notes.push(format!(
            "no CRL at {}: revocation is not checked",
            path.display()
        ));
        None
    }
}

/// File names in `dir` ending in `suffix`, for "found only …" hints.
fn names_in(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(suffix).map(String::from))
        .collect();
    names.sort();
    names
}

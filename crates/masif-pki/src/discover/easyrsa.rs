//! easy-rsa 3 PKI directories: `ca.crt`, `issued/<name>.crt`, `private/<name>.key`, `crl.pem`.

use std::path::Path;

use super::{choose_name, fail, names_in, optional_crl, Discovered};
use crate::error::Result;
use crate::source::Discover;
use crate::tls::TlsFiles;

pub(super) fn discover(dir: &Path, root: Option<&Path>, name: Option<&str>) -> Result<Discovered> {
    let source = Discover::EasyRsa(dir.to_path_buf());
    let ca = dir.join("ca.crt");
    if !ca.is_file() {
        return Err(fail(
            &source,
            format!(
                "{} is not an easy-rsa PKI (no ca.crt; run `masif-pki init`)",
                dir.display()
            ),
        ));
    }
    let mut notes = vec![format!("easy-rsa PKI {}", dir.display())];
    let name = choose_name(name, None, root, &mut notes)?;
    let cert = dir.join("issued").join(format!("{name}.crt"));
    if !cert.is_file() {
        let issued = names_in(&dir.join("issued"), ".crt");
        return Err(fail(
            &source,
            format!(
                "no certificate {} (issued: {}); issue one with `masif-pki issue {} {name} --client|--server|--both`",
                cert.display(),
                if issued.is_empty() { "none".into() } else { issued.join(", ") },
                dir.display()
            ),
        ));
    }
    let files = TlsFiles {
        cert,
        key: dir.join("private").join(format!("{name}.key")),
        ca,
        crl: optional_crl(dir.join("crl.pem"), &mut notes),
    };
    Ok(Discovered {
        source: source.to_string(),
        name,
        files,
        notes,
    })
}

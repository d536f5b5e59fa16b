//! The index files of a sandbox's flat `file:` repository, written in Rust instead of by
//! dpkg-scanpackages and apt-ftparchive: a `Packages` stanza per `.deb` (its control fields
//! plus `Filename`, `Size` and `SHA256`) and a `Release` file with its date and the SHA256
//! and size of `Packages`. Input that would corrupt a stanza is refused.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{Error, Result};

/// One of the sandbox's repositories, told apart by their `Release` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Archive {
    /// The main repository, `repo/`: apt prints its versions' origin as `Sandbox:12/stable`.
    Main,
    /// The security repository, `security/`: `Debian-Security:12/stable-security`, as
    /// Debian's security archive.
    Security,
}

impl Archive {
    /// The fields of `Release` before its date. apt refuses a repository whose Origin, Label
    /// or Codename change between two updates, so they are fixed per archive. Label, Version
    /// and Suite make the `LABEL:VERSION/SUITE` part of apt's simulation lines.
    fn release_head(self) -> &'static str {
        match self {
            Archive::Main => {
                "Origin: Sandbox\nLabel: Sandbox\nSuite: stable\nVersion: 12\nCodename: sandbox\n"
            }
            Archive::Security => {
                "Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\nVersion: 12\n\
                 Codename: bookworm-security\n"
            }
        }
    }
}

/// A `.deb` as the repository lists it.
#[derive(Debug)]
pub(crate) struct RepoDeb<'a> {
    file: &'a str,
    control: &'a [(String, String)],
    size: usize,
    sha256: String,
}

impl<'a> RepoDeb<'a> {
    /// The `.deb` called `file` in the repository's directory, built from `control`, whose
    /// contents are `bytes`.
    pub(crate) fn new(file: &'a str, control: &'a [(String, String)], bytes: &[u8]) -> Self {
        Self {
            file,
            control,
            size: bytes.len(),
            sha256: hex_sha256(bytes),
        }
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One control paragraph: a `Name: value` line per field, in order. Refuses field names that
/// are empty, repeated, start with `#` or `-`, or hold anything but printable ASCII other than
/// `:`; and values that are empty or hold control characters (a newline would start a new
/// field or stanza).
pub(crate) fn stanza(fields: &[(String, String)]) -> Result<String> {
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        let name_ok = !name.is_empty()
            && !name.starts_with(['#', '-'])
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !name_ok {
            return Err(Error::Sandbox(format!("bad control field name {name:?}")));
        }
        if fields[..i]
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(Error::Sandbox(format!("control field {name} given twice")));
        }
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            return Err(Error::Sandbox(format!(
                "bad value of control field {name}: {value:?}"
            )));
        }
        out.push_str(&format!("{name}: {value}\n"));
    }
    Ok(out)
}

/// The `Packages` file listing `debs`: their control fields, then `Filename` (relative to the
/// repository), `Size` and `SHA256`; stanzas separated by a blank line.
pub(crate) fn packages_file(debs: &[RepoDeb<'_>]) -> Result<String> {
    let mut stanzas = Vec::with_capacity(debs.len());
    for deb in debs {
        if deb.file.is_empty() || deb.file.contains('/') || deb.file.starts_with('.') {
            return Err(Error::Sandbox(format!(
                "bad repository file name {:?}",
                deb.file
            )));
        }
        let mut fields = deb.control.to_vec();
        fields.extend([
            ("Filename".to_owned(), format!("./{}", deb.file)),
            ("Size".to_owned(), deb.size.to_string()),
            ("SHA256".to_owned(), deb.sha256.clone()),
        ]);
        stanzas.push(stanza(&fields)?);
    }
    Ok(stanzas.join("\n"))
}

/// The `Release` file of `archive` whose `Packages` file is `packages`, dated `date`.
/// It is not signed: the sandbox's sources.list marks the repository `[trusted=yes]`.
pub(crate) fn release_file(archive: Archive, packages: &[u8], date: OffsetDateTime) -> String {
    format!(
        "{}Date: {}\nSHA256:\n {} {} Packages\n",
        archive.release_head(),
        rfc1123(date),
        hex_sha256(packages),
        packages.len()
    )
}

/// `Sat, 05 Dec 2026 00:37:15 UTC`: the date format of Release files.
fn rfc1123(date: OffsetDateTime) -> String {
    let utc = date.to_offset(time::UtcOffset::UTC);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        &utc.weekday().to_string()[..3],
        utc.day(),
        &utc.month().to_string()[..3],
        utc.year(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_stanza_is_one_line_per_field() {
        let text = stanza(&fields(&[
            ("Package", "beta"),
            ("Depends", "gamma (>= 1.0)"),
        ]))
        .unwrap();
        assert_eq!(text, "Package: beta\nDepends: gamma (>= 1.0)\n");
    }

    #[test]
    fn what_would_corrupt_a_stanza_is_refused() {
        for bad in [
            ("Package", "beta\nEvil: yes"),
            ("Package", "beta\n\nPackage: evil"),
            ("Package", "beta\r"),
            ("Package", "tab\there"),
            ("Package", ""),
            ("Package", "  "),
            ("", "beta"),
            ("Pack age", "beta"),
            ("Package:", "beta"),
            ("-Package", "beta"),
            ("#Package", "beta"),
            ("Paquet\u{e9}", "beta"),
        ] {
            let err = stanza(&fields(&[bad])).unwrap_err();
            assert!(
                err.to_string().starts_with("sandbox: bad "),
                "{bad:?}: {err}"
            );
        }
        let twice = stanza(&fields(&[("Package", "a"), ("package", "b")])).unwrap_err();
        assert!(twice.to_string().contains("given twice"), "{twice}");
    }

    #[test]
    fn packages_lists_each_deb_with_its_size_and_hash() {
        let alpha = fields(&[("Package", "alpha"), ("Version", "1.0")]);
        let beta = fields(&[("Package", "beta"), ("Version", "2.0")]);
        let text = packages_file(&[
            RepoDeb::new("alpha_1.0_all.deb", &alpha, b"abc"),
            RepoDeb::new("beta_2.0_all.deb", &beta, b""),
        ])
        .unwrap();
        assert_eq!(
            text,
            "Package: alpha\nVersion: 1.0\nFilename: ./alpha_1.0_all.deb\nSize: 3\n\
             SHA256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n\
             \n\
             Package: beta\nVersion: 2.0\nFilename: ./beta_2.0_all.deb\nSize: 0\n\
             SHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        );
    }

    #[test]
    fn packages_refuses_bad_file_names_and_fields_it_sets_itself() {
        let ok = fields(&[("Package", "alpha")]);
        for file in [
            "",
            "../alpha.deb",
            "sub/alpha.deb",
            ".hidden.deb",
            "a\nb.deb",
        ] {
            assert!(
                packages_file(&[RepoDeb::new(file, &ok, b"")]).is_err(),
                "{file:?}"
            );
        }
        let sized = fields(&[("Package", "alpha"), ("Size", "1")]);
        let err = packages_file(&[RepoDeb::new("alpha.deb", &sized, b"")]).unwrap_err();
        assert!(err.to_string().contains("Size given twice"), "{err}");
    }

    #[test]
    fn release_names_the_packages_file_with_its_hash_and_date() {
        let date = OffsetDateTime::from_unix_timestamp(1_796_430_000)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        let text = release_file(Archive::Main, b"abc", date);
        assert_eq!(
            text,
            "Origin: Sandbox\nLabel: Sandbox\nSuite: stable\nVersion: 12\nCodename: sandbox\n\
             Date: Sat, 05 Dec 2026 00:20:00 UTC\nSHA256:\n \
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3 Packages\n"
        );
        let security = release_file(Archive::Security, b"abc", date);
        assert!(
            security.starts_with(
                "Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\nVersion: 12\n\
                 Codename: bookworm-security\nDate: "
            ),
            "{security}"
        );
    }
}

//! Reading certificates, private keys and CRLs from PEM or DER files, with errors that name the file.

use std::io::Read;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::{PkiError, Result};

/// Largest certificate, key or CRL file we read (CRLs of big PKIs can reach megabytes).
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// Reads a whole file, refusing empty (or whitespace-only) and oversized ones.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| PkiError::read(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PkiError::read(path, e))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(PkiError::invalid(
            path,
            format!("file is larger than {MAX_FILE_SIZE} bytes"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(PkiError::invalid(path, "file is empty"));
    }
    Ok(bytes)
}

/// Whether the bytes look like PEM text rather than DER.
fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// All recognised PEM sections of a file, in order.
fn pem_sections(path: &Path, bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| PkiError::invalid(path, format!("malformed PEM: {}", pem_error(&e))))
}

/// Most characters of a file's line quoted in a message (after escaping).
const MAX_QUOTE_CHARS: usize = 60;

/// What is wrong with a PEM file, quoting at most [`MAX_QUOTE_CHARS`] of it (the PEM parser's
/// own message lists every byte of the offending line as a number).
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("section {} has no END line", quote(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line {}", quote(line))
        }
        other => other.to_string(),
    }
}

/// `bytes` as text in quotes, escaped, cut to [`MAX_QUOTE_CHARS`] characters (then `…`).
fn quote(bytes: &[u8]) -> String {
    let mut quoted = String::from('"');
    let mut used = 0;
    for c in String::from_utf8_lossy(bytes).chars() {
        // As `str`'s `Debug` does: a single quote stays as it is.
        let escaped: String = match c {
            '\'' => c.into(),
            _ => c.escape_debug().collect(),
        };
        used += escaped.chars().count();
        if used > MAX_QUOTE_CHARS {
            quoted.push('…');
            break;
        }
        quoted.push_str(&escaped);
    }
    quoted.push('"');
    quoted
}

/// Human names of the PEM sections found, for "found … instead" messages.
fn describe(sections: &[(SectionKind, Vec<u8>)]) -> String {
    if sections.is_empty() {
        return "no recognised PEM section".into();
    }
    let names: Vec<&str> = sections
        .iter()
        .map(|(kind, _)| match kind {
            SectionKind::Certificate => "certificate",
            SectionKind::PublicKey => "public key",
            SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey => {
                "private key"
            }
            SectionKind::Crl => "CRL",
            SectionKind::Csr => "certificate request",
            _ => "other PEM section",
        })
        .collect();
    format!("found: {}", names.join(", "))
}

/// Loads one or more certificates (a chain or a CA bundle), PEM or DER; zero is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    load_all(
        path,
        SectionKind::Certificate,
        ("certificate", "is not valid X.509"),
        |der| x509_parser::parse_x509_certificate(der).map(drop),
    )
}

/// The items of one kind in a file: its PEM sections of `kind`, or the whole file as one DER
/// item; zero is an error and each must pass `parse`. `noun` names the kind in messages,
/// `malformed` says what is wrong with a PEM item `parse` refuses.
fn load_all<T, E: std::fmt::Display>(
    path: &Path,
    kind: SectionKind,
    (noun, malformed): (&str, &str),
    parse: impl Fn(&[u8]) -> std::result::Result<(), E>,
) -> Result<Vec<T>>
where
    T: From<Vec<u8>> + AsRef<[u8]>,
{
    let bytes = read_file(path)?;
    let pem = is_pem(&bytes);
    let items: Vec<T> = if pem {
        let sections = pem_sections(path, &bytes)?;
        let items: Vec<T> = sections
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, der)| T::from(der.clone()))
            .collect();
        if items.is_empty() {
            return Err(PkiError::invalid(
                path,
                format!("contains no {noun} ({})", describe(&sections)),
            ));
        }
        items
    } else {
        vec![T::from(bytes)]
    };
    for (i, item) in items.iter().enumerate() {
        if let Err(e) = parse(item.as_ref()) {
            let what = if pem {
                format!("{noun} {} {malformed}: {e}", i + 1)
            } else {
                format!("neither a PEM file nor a DER {noun}: {e}")
            };
            return Err(PkiError::invalid(path, what));
        }
    }
    Ok(items)
}

/// Loads exactly one private key (PKCS#1, PKCS#8 or SEC1), PEM or DER, and checks that the
/// ring provider can use it.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read_file(path)?;
    let key = if is_pem(&bytes) {
        if bytes.windows(17).any(|w| w == b"ENCRYPTED PRIVATE")
            || bytes.windows(22).any(|w| w == b"Proc-Type: 4,ENCRYPTED")
        {
            return Err(PkiError::invalid(
                path,
                "private key is encrypted; masif needs an unencrypted key (easy-rsa: nopass)",
            ));
        }
        let sections = pem_sections(path, &bytes)?;
        let mut keys = sections
            .iter()
            .filter_map(|(kind, der)| PrivateKeyDer::from_pem(*kind, der.clone()));
        let key = keys.next().ok_or_else(|| {
            PkiError::invalid(
                path,
                format!("contains no private key ({})", describe(&sections)),
            )
        })?;
        if keys.next().is_some() {
            return Err(PkiError::invalid(
                path,
                "contains more than one private key",
            ));
        }
        key
    } else {
        PrivateKeyDer::try_from(bytes).map_err(|e| {
            PkiError::invalid(
                path,
                format!("neither a PEM file nor a DER private key: {e}"),
            )
        })?
    };
    crate::tls::provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| PkiError::invalid(path, format!("unusable private key: {e}")))?;
    Ok(key)
}

/// Loads one or more CRLs, PEM or DER; zero is an error and each must parse.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    load_all(path, SectionKind::Crl, ("CRL", "is malformed"), |der| {
        x509_parser::parse_x509_crl(der).map(drop)
    })
}

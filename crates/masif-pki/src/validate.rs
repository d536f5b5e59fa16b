//! Judging a host's TLS files for a role: every problem becomes a finding, none stops the others.

use std::path::Path;

use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use crate::crl::{inspect_crls, CrlInfo};
use crate::error::{PkiError, Result};
use crate::finding::Findings;
pub use crate::finding::{Aspect, CheckOptions, Finding, Report, Severity};
use crate::load::{load_certs, load_crls, load_key};
use crate::perms::key_mode_problem;
use crate::source::Role;
use crate::tls::{key_matches, provider, TlsFiles};
use crate::x509::{CertFacts, Eku};

/// Checks `files` for `options.role` and reports every problem.
pub fn check(files: &TlsFiles, options: &CheckOptions) -> Report {
    let mut out = Findings(Vec::new());
    let chain = out.file(load_certs(&files.cert));
    let key = out.file(load_key(&files.key));
    let cas = out.file(load_certs(&files.ca));
    let crls = match &files.crl {
        Some(path) => out.file(load_crls(path)).map(|c| (path.as_path(), c)),
        None => {
            out.ok(
                Aspect::Crl,
                "no CRL configured: revoked peers are not refused",
            );
            None
        }
    };
    check_permissions(files, options, &mut out);
    if let (Some(chain), Some(key)) = (&chain, &key) {
        match key_matches(chain, key) {
            Ok(true) => out.ok(Aspect::Key, "private key matches the certificate"),
            Ok(false) => out.crit(
                Aspect::Key,
                format!(
                    "{}: private key does not match the certificate in {}",
                    files.key.display(),
                    files.cert.display()
                ),
            ),
            Err(e) => out.crit(
                Aspect::Key,
                format!("cannot compare key and certificate: {e}"),
            ),
        }
    }
    let leaf = chain.as_ref().and_then(|chain| {
        CertFacts::parse(&chain[0])
            .map_err(|e| out.crit(Aspect::File, format!("{}: {e}", files.cert.display())))
            .ok()
    });
    let ca_facts: Vec<CertFacts> = cas
        .iter()
        .flatten()
        .filter_map(|c| CertFacts::parse(c).ok())
        .collect();
    if let Some(leaf) = &leaf {
        check_validity(leaf, options, &mut out);
        check_usage(leaf, options.role, &mut out);
        check_names(leaf, options, &mut out);
    }
    for (i, ca) in ca_facts.iter().enumerate() {
        let issues_leaf = leaf.as_ref().is_some_and(|l| l.issuer == ca.subject);
        check_ca_validity(i + 1, ca, issues_leaf, options, &mut out);
    }
    if let (Some(chain), Some(cas), Some(leaf)) = (&chain, &cas, &leaf) {
        check_chain(chain, cas, leaf, options, &files.ca, &mut out);
    }
    if let (Some((path, crls)), Some(cas)) = (&crls, &cas) {
        match inspect_crls(crls, cas) {
            Err(e) => out.crit(Aspect::Crl, format!("{}: {e}", path.display())),
            Ok(infos) => check_crls(
                &infos,
                path,
                &files.ca,
                &ca_facts,
                leaf.as_ref(),
                options,
                &mut out,
            ),
        }
    }
    Report {
        role: options.role,
        files: files.clone(),
        findings: out.0,
        days_left: leaf
            .as_ref()
            .map(|l| (l.not_after - options.now).whole_days()),
        common_name: leaf.and_then(|l| l.common_name),
    }
}

/// The check master and agent run at start-up. `Ok` holds the WARNING findings (for the log;
/// OK findings are left out); a CRITICAL finding makes it an error whose message carries every
/// CRITICAL line exactly as `masif-pki check` prints it.
pub fn startup_check(
    role: Role,
    files: &TlsFiles,
    expected_name: Option<&str>,
) -> Result<Vec<Finding>> {
    let mut options = CheckOptions::new(role);
    options.expected_name = expected_name.map(String::from);
    let report = check(files, &options);
    let critical: Vec<String> = report
        .at(Severity::Critical)
        .map(|f| f.to_string())
        .collect();
    if !critical.is_empty() {
        return Err(PkiError::Check(critical.join("\n")));
    }
    Ok(report.at(Severity::Warning).cloned().collect())
}

/// A UTC date and time as `2026-11-25 16:53 UTC`.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn check_permissions(files: &TlsFiles, options: &CheckOptions, out: &mut Findings) {
    match key_mode_problem(&files.key) {
        Some((true, message)) => out.crit(Aspect::Permissions, message),
        Some((false, message)) => out.warn(Aspect::Permissions, message),
        None => {}
    }
    if let Some(user) = &options.service_user {
        let problems: Vec<String> = files.paths().filter_map(|p| user.cannot_read(p)).collect();
        if problems.is_empty() {
            out.ok(
                Aspect::Permissions,
                format!("user {} can read every file", user.name),
            );
        }
        for problem in problems {
            out.crit(Aspect::Permissions, problem);
        }
    }
}

fn check_validity(leaf: &CertFacts, options: &CheckOptions, out: &mut Findings) {
    let now = options.now;
    let days = (leaf.not_after - now).whole_days();
    if now < leaf.not_before {
        out.crit(
            Aspect::Validity,
            format!(
                "certificate is not valid before {}",
                format_time(leaf.not_before)
            ),
        );
    } else if now > leaf.not_after {
        out.crit(
            Aspect::Validity,
            format!("certificate expired on {}", format_time(leaf.not_after)),
        );
    } else if days < options.warn_days {
        out.warn(
            Aspect::Validity,
            format!(
                "certificate expires in {days} days, on {}",
                format_time(leaf.not_after)
            ),
        );
    } else {
        out.ok(
            Aspect::Validity,
            format!(
                "certificate valid until {} ({days} days left)",
                format_time(leaf.not_after)
            ),
        );
    }
}

fn check_ca_validity(
    index: usize,
    ca: &CertFacts,
    issues_leaf: bool,
    options: &CheckOptions,
    out: &mut Findings,
) {
    let what = format!("CA certificate {index} ({})", ca.subject);
    if !ca.is_ca {
        out.warn(
            Aspect::Chain,
            format!("{what} is not a CA certificate (no basicConstraints CA:TRUE); is a host certificate in the CA file?"),
        );
    }
    let now = options.now;
    let expired = now > ca.not_after || now < ca.not_before;
    if expired {
        let message = match now < ca.not_before {
            true => format!("{what} is not valid before {}", format_time(ca.not_before)),
            false => format!("{what} expired on {}", format_time(ca.not_after)),
        };
        match issues_leaf {
            true => out.crit(Aspect::Validity, message),
            false => out.warn(Aspect::Validity, message),
        }
    } else if (ca.not_after - now).whole_days() < options.warn_days {
        out.warn(
            Aspect::Validity,
            format!("{what} expires on {}", format_time(ca.not_after)),
        );
    }
}

fn check_usage(leaf: &CertFacts, role: Role, out: &mut Findings) {
    let (needed, fits) = match (role, leaf.eku) {
        (_, Eku::Absent) => {
            out.ok(Aspect::Usage, "no extended key usage: any use allowed");
            return;
        }
        (Role::Agent, Eku::Present { client_auth, .. }) => ("clientAuth", client_auth),
        (Role::Master, Eku::Present { server_auth, .. }) => ("serverAuth", server_auth),
    };
    let has = match leaf.eku {
        Eku::Present {
            server_auth: true,
            client_auth: true,
        } => "serverAuth and clientAuth",
        Eku::Present {
            server_auth: true, ..
        } => "serverAuth only",
        Eku::Present {
            client_auth: true, ..
        } => "clientAuth only",
        _ => "neither serverAuth nor clientAuth",
    };
    if fits {
        out.ok(
            Aspect::Usage,
            format!("extended key usage allows {needed} ({has})"),
        );
    } else {
        out.crit(
            Aspect::Usage,
            format!(
                "extended key usage allows {has}, but {} needs {needed} (easy-rsa: issue with --{} or --both)",
                match role {
                    Role::Agent => "an agent",
                    Role::Master => "the master",
                },
                match role {
                    Role::Agent => "client",
                    Role::Master => "server",
                }
            ),
        );
    }
}

fn check_names(leaf: &CertFacts, options: &CheckOptions, out: &mut Findings) {
    if options.role == Role::Agent && leaf.common_names > 1 {
        out.crit(
            Aspect::Name,
            format!(
                "certificate has {} common names: the master refuses it (one CN names the agent)",
                leaf.common_names
            ),
        );
        return;
    }
    match (&leaf.common_name, options.role) {
        (None, Role::Agent) => out.crit(
            Aspect::Name,
            "certificate has no common name: the master knows agents by their CN",
        ),
        (None, Role::Master) => out.ok(Aspect::Name, "certificate has no common name"),
        (Some(cn), Role::Agent) => match &options.expected_name {
            Some(expected) if !expected.eq_ignore_ascii_case(cn) => out.warn(
                Aspect::Name,
                format!("common name {cn} differs from the expected {expected}: the master will know this agent as {cn}"),
            ),
            _ => out.ok(Aspect::Name, format!("agent name (CN) {cn}")),
        },
        (Some(_), Role::Master) => {}
    }
    if options.role != Role::Master {
        return;
    }
    let Some(expected) = options.expected_name.as_ref().or(leaf.common_name.as_ref()) else {
        return;
    };
    if leaf.dns_names.is_empty() {
        out.crit(
            Aspect::Name,
            format!("certificate has no DNS subject alternative name; agents check only the SAN, so they will refuse it (expected {expected})"),
        );
    } else if leaf.matches_name(expected) {
        out.ok(
            Aspect::Name,
            format!("agents expecting {expected} accept this certificate"),
        );
    } else {
        out.crit(
            Aspect::Name,
            format!(
                "agents expecting {expected} will refuse this certificate (its DNS names: {})",
                leaf.dns_names.join(", ")
            ),
        );
    }
}

fn check_chain(
    chain: &[CertificateDer<'static>],
    cas: &[CertificateDer<'static>],
    leaf: &CertFacts,
    options: &CheckOptions,
    ca_path: &Path,
    out: &mut Findings,
) {
    let anchors: Vec<_> = cas
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let Ok(end_entity) = webpki::EndEntityCert::try_from(&chain[0]) else {
        out.crit(
            Aspect::Chain,
            "certificate cannot be parsed for path building",
        );
        return;
    };
    // Judge the chain on its own: validity and EKU have their own findings.
    let at = options.now.clamp(
        leaf.not_before + time::Duration::SECOND,
        leaf.not_after - time::Duration::SECOND,
    );
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        at.unix_timestamp().max(0) as u64
    ));
    let usage = match (options.role, leaf.eku) {
        // The role's usage when the EKU allows it (or is absent) ...
        (
            Role::Agent,
            Eku::Absent
            | Eku::Present {
                client_auth: true, ..
            },
        ) => webpki::KeyUsage::client_auth(),
        (
            Role::Master,
            Eku::Absent
            | Eku::Present {
                server_auth: true, ..
            },
        ) => webpki::KeyUsage::server_auth(),
        // ... else the one it has, so a wrong EKU is one usage finding, not a chain error too.
        (
            _,
            Eku::Present {
                client_auth: true, ..
            },
        ) => webpki::KeyUsage::client_auth(),
        _ => webpki::KeyUsage::server_auth(),
    };
    let algs = provider().signature_verification_algorithms.all;
    match end_entity.verify_for_usage(algs, &anchors, &chain[1..], at, usage, None, None) {
        Ok(_) => out.ok(
            Aspect::Chain,
            format!("certificate chains to {}", ca_path.display()),
        ),
        Err(webpki::Error::UnknownIssuer) => out.crit(
            Aspect::Chain,
            format!(
                "certificate (issuer {}) does not chain to any certificate in {}",
                leaf.issuer,
                ca_path.display()
            ),
        ),
        Err(e) => out.crit(
            Aspect::Chain,
            format!(
                "certificate does not verify against {}: {e}",
                ca_path.display()
            ),
        ),
    }
}

fn check_crls(
    infos: &[CrlInfo],
    path: &Path,
    ca_path: &Path,
    cas: &[CertFacts],
    leaf: Option<&CertFacts>,
    options: &CheckOptions,
    out: &mut Findings,
) {
    for info in infos {
        let what = format!("{}: CRL {} ({})", path.display(), info.index, info.issuer);
        if let Some(reason) = info.unusable_reason(ca_path) {
            out.crit(Aspect::Crl, format!("{}: {reason}", path.display()));
            continue;
        }
        let until = info
            .next_update
            .map(format_time)
            .unwrap_or_else(|| "no next update".into());
        if info.expired_at(options.now) {
            out.warn(
                Aspect::Crl,
                format!("{what} expired on {until}; it still applies, but publish a new one (easy-rsa: masif-pki crl DIR)"),
            );
        } else if info
            .next_update
            .is_some_and(|t| (t - options.now).whole_days() < options.warn_days)
        {
            out.warn(Aspect::Crl, format!("{what} expires on {until}"));
        } else {
            out.ok(
                Aspect::Crl,
                format!(
                    "{what} valid until {until}, {} revoked",
                    info.revoked_serials.len()
                ),
            );
        }
    }
    for (i, ca) in cas.iter().enumerate() {
        if !infos.iter().any(|info| info.signed_by == Some(i + 1)) {
            out.warn(
                Aspect::Crl,
                format!(
                    "no CRL from CA certificate {} ({}) in {}: peers it issued will be refused",
                    i + 1,
                    ca.subject,
                    path.display()
                ),
            );
        }
    }
    let Some(leaf) = leaf else { return };
    let revoked_by = infos.iter().find(|info| {
        info.signed_by.is_some()
            && info.issuer == leaf.issuer
            && info.revoked_serials.contains(&leaf.serial)
    });
    match revoked_by {
        Some(info) => out.crit(
            Aspect::Revocation,
            format!(
                "certificate (serial {}) is revoked by CRL {} of {}",
                leaf.serial_hex(),
                info.index,
                path.display()
            ),
        ),
        None => out.ok(Aspect::Revocation, "certificate is not revoked"),
    }
}

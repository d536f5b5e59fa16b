//! The outcome of a check: findings (severity, aspect, message), the options a check takes
//! and the report that sums them up.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::Result;
use crate::perms::Account;
use crate::source::Role;
use crate::tls::TlsFiles;

/// How bad a finding is; the order is the monitoring-plugin order of exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Severity {
    /// The monitoring-plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> i32 {
        self as i32
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
            Severity::Unknown => "UNKNOWN",
        })
    }
}

/// Which aspect a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aspect {
    /// Reading and parsing a file.
    File,
    /// File modes and who can read them.
    Permissions,
    /// The private key against the certificate.
    Key,
    /// The certificate against the CA file.
    Chain,
    /// Not-before / not-after of the certificate and the CAs.
    Validity,
    /// Extended key usage against the role.
    Usage,
    /// Common name and subject alternative names.
    Name,
    /// The CRL file itself.
    Crl,
    /// Whether the certificate is revoked.
    Revocation,
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok();
        f.write_str(text.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// One observation about the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub aspect: Aspect,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.aspect, self.message)
    }
}

/// What to check the files for.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub role: Role,
    /// For the master: the name agents expect in its certificate (default: its CN).
    /// For an agent: the name it should carry (a differing CN is a warning).
    pub expected_name: Option<String>,
    /// Warn this many days before a certificate or CRL expires.
    pub warn_days: i64,
    /// Also check that this account can read every file.
    pub service_user: Option<Account>,
    /// The time to judge validity at.
    pub now: OffsetDateTime,
}

impl CheckOptions {
    /// Defaults: warn 30 days ahead, judge now, no service user.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            expected_name: None,
            warn_days: 30,
            service_user: None,
            now: OffsetDateTime::now_utc(),
        }
    }
}

/// Every finding about a set of files, and the figures for performance data.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub role: Role,
    pub files: TlsFiles,
    pub findings: Vec<Finding>,
    /// Whole days until the certificate expires (negative: expired), when it could be read.
    pub days_left: Option<i64>,
    /// The certificate's common name, when it could be read.
    pub common_name: Option<String>,
}

impl Report {
    /// The worst severity found (OK when there is nothing to report).
    pub fn status(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    /// The findings at `severity`.
    pub fn at(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == severity)
    }
}

/// Collects findings.
pub(crate) struct Findings(pub(crate) Vec<Finding>);

impl Findings {
    pub(crate) fn add(&mut self, severity: Severity, aspect: Aspect, message: impl Into<String>) {
        self.0.push(Finding {
            severity,
            aspect,
            message: message.into(),
        });
    }
    pub(crate) fn ok(&mut self, aspect: Aspect, message: impl Into<String>) {
        self.add(Severity::Ok, aspect, message)
    }
    pub(crate) fn warn(&mut self, aspect: Aspect, message: impl Into<String>) {
        self.add(Severity::Warning, aspect, message)
    }
    pub(crate) fn crit(&mut self, aspect: Aspect, message: impl Into<String>) {
        self.add(Severity::Critical, aspect, message)
    }
    /// The value, or a CRITICAL file finding.
    pub(crate) fn file<T>(&mut self, loaded: Result<T>) -> Option<T> {
        loaded
            .map_err(|e| self.crit(Aspect::File, e.to_string()))
            .ok()
    }
}

//! The `masif-pki` command line: `check` (a monitoring plugin), `discover`, and easy-rsa commands.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Parser, Subcommand};
use serde_json::json;

use crate::discover::{discover, discover_any, Discovered};
use crate::easyrsa::{EasyRsa, Purpose, DEFAULT_CA_NAME};
use crate::error::PkiError;
use crate::load::{load_certs, load_crls};
use crate::perms::Account;
use crate::source::{Discover, DiscoverRequest, Role, TlsSource};
use crate::tls::TlsFiles;
use crate::validate::{check, format_time, CheckOptions, Report, Severity};
use crate::x509::CertFacts;

/// Find, check and make the certificates of Masif Upgrader.
#[derive(Debug, Parser)]
#[command(name = "masif-pki", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the certificate, key, CA and CRL for a role (a monitoring plugin: exit 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Check(CheckArgs),
    /// Show which files a PKI source yields, without judging them.
    Discover(Locate),
    /// Create a new easy-rsa PKI in DIR (CA and an empty CRL).
    Init {
        dir: PathBuf,
        /// Common name of the CA.
        #[arg(long, default_value = DEFAULT_CA_NAME)]
        ca_name: String,
        #[command(flatten)]
        easyrsa: EasyRsaPath,
    },
    /// Issue a certificate and key for NAME in the PKI in DIR.
    Issue(IssueArgs),
    /// Revoke the certificate of NAME (then publish with `crl`).
    Revoke {
        dir: PathBuf,
        name: String,
        #[command(flatten)]
        easyrsa: EasyRsaPath,
    },
    /// Write a new CRL (DIR/crl.pem); a running master picks it up without a restart.
    Crl {
        dir: PathBuf,
        #[command(flatten)]
        easyrsa: EasyRsaPath,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("purpose").required(true).args(["client", "server", "both"])))]
pub struct IssueArgs {
    pub dir: PathBuf,
    pub name: String,
    /// For an agent (EKU clientAuth).
    #[arg(long)]
    pub client: bool,
    /// For a master (EKU serverAuth).
    #[arg(long)]
    pub server: bool,
    /// For a host that is both master and agent.
    #[arg(long)]
    pub both: bool,
    #[command(flatten)]
    pub easyrsa: EasyRsaPath,
}

#[derive(Debug, Args)]
pub struct EasyRsaPath {
    /// The easy-rsa script to run.
    #[arg(long, value_name = "PATH", default_value = crate::easyrsa::DEFAULT_SCRIPT)]
    pub easyrsa: PathBuf,
}

/// Where the files are: a source to discover, or explicit files.
#[derive(Debug, Args)]
pub struct Locate {
    /// A masif-master or masif-agent configuration file: use the files its `tls:` key names.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// puppet, icinga2, easyrsa:DIR or files (default: files when --cert is given, else
    /// puppet then icinga2).
    #[arg(long)]
    pub source: Option<String>,
    /// The host's certificate (PEM or DER; intermediates may follow).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Its private key (PKCS#1, PKCS#8 or SEC1; PEM or DER).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The CA certificate(s) peers chain to.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The CRL(s) of the CA(s) (optional).
    #[arg(long, value_name = "FILE")]
    pub crl: Option<PathBuf>,
    /// The certificate name (Puppet certname, Icinga 2 NodeName, easy-rsa entity); for the
    /// master also the name agents expect in its certificate.
    #[arg(long, value_name = "CERTNAME")]
    pub name: Option<String>,
    /// A prefix put before every default path, as if the tree were mounted there.
    #[arg(long, value_name = "PREFIX")]
    pub root: Option<PathBuf>,
    /// The role the files are for: agent or master (required by `check`).
    #[arg(long)]
    pub role: Option<Role>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub locate: Locate,
    /// Warn this many days before the certificate or the CRL expires.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub warn_days: i64,
    /// Also check that this user can read every file.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// What a command printed and its exit code.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
}

impl Outcome {
    fn new(code: i32, stdout: impl Into<String>) -> Self {
        Self {
            code,
            stdout: stdout.into(),
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Check(args) => run_check(&args),
        Command::Discover(locate) => run_discover(&locate),
        Command::Init {
            dir,
            ca_name,
            easyrsa,
        } => easy(&easyrsa, &dir, |e| {
            e.init(&ca_name)?;
            Ok(format!(
                "created PKI {} with CA {ca_name:?}\nCA certificate: {}\nCRL: {}\n",
                e.dir().display(),
                e.dir().join("ca.crt").display(),
                e.dir().join("crl.pem").display()
            ))
        }),
        Command::Issue(args) => {
            let purpose = match (args.client, args.server) {
                (true, _) => Purpose::Client,
                (_, true) => Purpose::Server,
                _ => Purpose::Both,
            };
            easy(&args.easyrsa, &args.dir, |e| {
                let (cert, key) = e.issue(&args.name, purpose)?;
                Ok(format!(
                    "certificate: {}\nkey: {}\n",
                    cert.display(),
                    key.display()
                ))
            })
        }
        Command::Revoke { dir, name, easyrsa } => easy(&easyrsa, &dir, |e| {
            e.revoke(&name)?;
            Ok(format!(
                "revoked {name}; publish it with `masif-pki crl {}`\n",
                e.dir().display()
            ))
        }),
        Command::Crl { dir, easyrsa } => easy(&easyrsa, &dir, |e| {
            Ok(format!("CRL: {}\n", e.crl()?.display()))
        }),
    }
}

fn easy(
    path: &EasyRsaPath,
    dir: &Path,
    f: impl FnOnce(&EasyRsa) -> Result<String, PkiError>,
) -> Outcome {
    match EasyRsa::new(Some(&path.easyrsa), dir).and_then(|e| f(&e)) {
        Ok(text) => Outcome::new(0, text),
        Err(e) => Outcome::new(1, format!("masif-pki: {e}\n")),
    }
}

/// Usage problems are UNKNOWN (3) for `check`, as monitoring plugins do.
fn usage(message: impl std::fmt::Display) -> Outcome {
    Outcome::new(
        Severity::Unknown.exit_code(),
        format!("MASIF-PKI UNKNOWN - {message}\n"),
    )
}

/// What to look at: explicit files or a discovery, as the flags say.
enum Target {
    Files(TlsFiles),
    Found(Discovered),
}

fn locate(args: &Locate) -> Result<Result<Target, PkiError>, String> {
    let explicit =
        args.cert.is_some() || args.key.is_some() || args.ca.is_some() || args.crl.is_some();
    if let Some(config) = &args.config {
        if explicit || args.source.is_some() {
            return Err(
                "--config cannot be combined with --source or --cert/--key/--ca/--crl".into(),
            );
        }
        return Ok(
            TlsSource::from_config_file(config).and_then(|source| match source {
                TlsSource::Files(files) if args.root.is_none() => Ok(Target::Files(files)),
                TlsSource::Files(_) => Err(PkiError::Config(format!(
                    "{} names files; --root applies to discovered paths only",
                    config.display()
                ))),
                TlsSource::Discover(mut request) => {
                    request.name = args.name.clone().or(request.name);
                    request.root = args.root.clone().or(request.root);
                    discover(&request, role(args)).map(Target::Found)
                }
            }),
        );
    }
    let source = match args.source.as_deref() {
        None if explicit => "files",
        None => "",
        Some(s) => s,
    };
    if source == "files" {
        let (Some(cert), Some(key), Some(ca)) = (&args.cert, &args.key, &args.ca) else {
            return Err("--source files needs --cert, --key and --ca".into());
        };
        if args.root.is_some() {
            return Err("--root applies to discovered paths, not to --cert/--key/--ca".into());
        }
        return Ok(Ok(Target::Files(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            crl: args.crl.clone(),
        })));
    }
    if explicit {
        return Err(format!(
            "--cert/--key/--ca/--crl cannot be combined with --source {source}"
        ));
    }
    let found = if source.is_empty() {
        discover_any(args.name.as_deref(), args.root.as_deref(), role(args))
    } else {
        let discover_source: Discover = source.parse()?;
        let request = DiscoverRequest {
            discover: discover_source,
            name: args.name.clone(),
            root: args.root.clone(),
        };
        discover(&request, role(args))
    };
    Ok(found.map(Target::Found))
}

/// The role given, agent by default (for `discover`, which does not judge).
fn role(args: &Locate) -> Role {
    args.role.unwrap_or(Role::Agent)
}

fn run_check(args: &CheckArgs) -> Outcome {
    let Some(role) = args.locate.role else {
        return usage("check needs --role agent or --role master");
    };
    let mut options = CheckOptions::new(role);
    options.warn_days = args.warn_days;
    options.expected_name = args.locate.name.clone();
    if let Some(user) = &args.user {
        match Account::lookup(user) {
            Ok(account) => options.service_user = Some(account),
            Err(e) => return usage(e),
        }
    }
    let (files, found) = match locate(&args.locate) {
        Err(e) => return usage(e),
        Ok(Err(e)) => {
            let text = format!("MASIF-PKI CRITICAL - {e}\n");
            return Outcome::new(
                Severity::Critical.exit_code(),
                match args.locate.json {
                    true => json!({"status": Severity::Critical, "exit_code": 2, "error": e.to_string()}).to_string() + "\n",
                    false => text,
                },
            );
        }
        Ok(Ok(Target::Files(files))) => (files, None),
        Ok(Ok(Target::Found(found))) => (found.files.clone(), Some(found)),
    };
    if options.expected_name.is_none() {
        options.expected_name = found.as_ref().map(|f| f.name.clone());
    }
    let report = check(&files, &options);
    let status = report.status();
    let stdout = match args.locate.json {
        true => {
            json!({
                "status": status,
                "exit_code": status.exit_code(),
                "source": found.as_ref().map_or("files".to_owned(), |f| f.source.clone()),
                "name": found.as_ref().map(|f| f.name.clone()),
                "report": report,
            })
            .to_string()
                + "\n"
        }
        false => render_check(&report, args.warn_days),
    };
    Outcome::new(status.exit_code(), stdout)
}

/// The monitoring-plugin text: a summary line with performance data, then one line per finding,
/// worst first.
pub fn render_check(report: &Report, warn_days: i64) -> String {
    let status = report.status();
    let count = |s| report.at(s).count();
    let who = report
        .common_name
        .as_deref()
        .map_or(format!("{} certificate", report.role), |cn| {
            format!("{} certificate {cn}", report.role)
        });
    let headline = match report.findings.iter().find(|f| f.severity == status) {
        Some(first) if status != Severity::Ok => format!(
            "{who}: {} critical, {} warning{}: {}",
            count(Severity::Critical),
            count(Severity::Warning),
            if count(Severity::Warning) == 1 {
                ""
            } else {
                "s"
            },
            first.message
        ),
        _ => match report.days_left {
            Some(days) => format!("{who} valid for {days} more days"),
            None => who,
        },
    };
    let mut out = format!("MASIF-PKI {status} - {headline}");
    if let Some(days) = report.days_left {
        let _ = write!(out, " | days_left={days};{warn_days}:;0:");
    }
    out.push('\n');
    let mut findings: Vec<_> = report.findings.iter().collect();
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for finding in findings {
        let _ = writeln!(out, "{finding}");
    }
    out
}

fn run_discover(args: &Locate) -> Outcome {
    let found = match locate(args) {
        Err(e) => return Outcome::new(3, format!("masif-pki: {e}\n")),
        Ok(Err(e)) => return Outcome::new(1, format!("masif-pki: {e}\n")),
        Ok(Ok(Target::Files(_))) => {
            return Outcome::new(3, "masif-pki: discover needs a --source other than files\n")
        }
        Ok(Ok(Target::Found(found))) => found,
    };
    if args.json {
        return Outcome::new(0, serde_json::to_string(&found).unwrap_or_default() + "\n");
    }
    let f = &found.files;
    let mut out = format!("source: {}\nname: {}\n", found.source, found.name);
    let _ = writeln!(out, "cert: {}{}", f.cert.display(), describe_certs(&f.cert));
    let _ = writeln!(out, "key: {}{}", f.key.display(), exists(&f.key));
    let _ = writeln!(out, "ca: {}{}", f.ca.display(), describe_certs(&f.ca));
    match &f.crl {
        Some(crl) => {
            let what = match load_crls(crl) {
                Ok(crls) => format!(
                    " ({} CRL{})",
                    crls.len(),
                    if crls.len() == 1 { "" } else { "s" }
                ),
                Err(e) => format!(" ({e})"),
            };
            let _ = writeln!(out, "crl: {}{what}", crl.display());
        }
        None => out.push_str("crl: none\n"),
    }
    for note in &found.notes {
        let _ = writeln!(out, "note: {note}");
    }
    Outcome::new(0, out)
}

fn exists(path: &Path) -> &'static str {
    match path.exists() {
        true => "",
        false => " (missing)",
    }
}

/// " (CN …, until …; …)" for each certificate in a file, or the load error.
fn describe_certs(path: &Path) -> String {
    match load_certs(path) {
        Err(e) => format!(" ({e})"),
        Ok(certs) => {
            let parts: Vec<String> = certs
                .iter()
                .map(|c| match CertFacts::parse(c) {
                    Ok(f) => format!("{}, until {}", f.subject, format_time(f.not_after)),
                    Err(e) => e.to_string(),
                })
                .collect();
            format!(" ({})", parts.join("; "))
        }
    }
}

//! The host's own facts, read from files every cycle (cheap reads, no process): the OS's
//! `PRETTY_NAME` (os-release), the kernel release, and whether a reboot is required (the
//! reboot-required file and the packages its `.pkgs` file names). Every file is read at most
//! [`MAX_READ_BYTES`]; whatever is odd in it is dropped with a debug log, never an error.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use masif_proto::facts::{FactText, MAX_FACT_CHARS, MAX_LISTED_PACKAGES};
use masif_proto::PackageName;

/// Most bytes read of one fact file (a hostile `.pkgs` file may be huge).
const MAX_READ_BYTES: u64 = 1 << 20;

/// Where the host's facts are read from. The defaults are the host's own files; tests point
/// them into a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactFiles {
    /// os-release files, the first one that exists is read (`/etc/os-release`, then
    /// `/usr/lib/os-release`).
    pub os_release: Vec<PathBuf>,
    /// The running kernel's release (`/proc/sys/kernel/osrelease`, what `uname -r` prints).
    pub kernel_release: PathBuf,
    /// The file whose existence means "reboot required" (`/var/run/reboot-required`); the
    /// packages asking for it are named one per line in the same path plus `.pkgs`.
    pub reboot_required: PathBuf,
}

/// The default of `reboot_required_file:`.
pub const DEFAULT_REBOOT_REQUIRED_FILE: &str = "/var/run/reboot-required";

impl Default for FactFiles {
    fn default() -> Self {
        Self {
            os_release: vec!["/etc/os-release".into(), "/usr/lib/os-release".into()],
            kernel_release: "/proc/sys/kernel/osrelease".into(),
            reboot_required: DEFAULT_REBOOT_REQUIRED_FILE.into(),
        }
    }
}

/// What the files said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostFacts {
    pub(crate) os: Option<FactText>,
    pub(crate) kernel: Option<FactText>,
    pub(crate) reboot_required: bool,
    pub(crate) reboot_packages: BTreeSet<PackageName>,
}

impl FactFiles {
    /// Reads the host's facts now. A missing or odd file leaves its fact out.
    pub(crate) fn read(&self) -> HostFacts {
        let os = self
            .os_release
            .iter()
            .find_map(|p| read_capped(p))
            .and_then(|text| pretty_name(&text))
            .and_then(|name| fact_text("os", &name));
        let kernel =
            read_capped(&self.kernel_release).and_then(|text| fact_text("kernel", text.trim()));
        let reboot_required = self.reboot_required.exists();
        let reboot_packages = if reboot_required {
            read_capped(&self.reboot_packages_file())
                .map(|text| package_lines(&text, "reboot_packages"))
                .unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        HostFacts {
            os,
            kernel,
            reboot_required,
            reboot_packages,
        }
    }

    /// The reboot-required file's path plus `.pkgs`.
    pub fn reboot_packages_file(&self) -> PathBuf {
        let mut name = self.reboot_required.clone().into_os_string();
        name.push(".pkgs");
        name.into()
    }
}

/// The file's text (invalid UTF-8 replaced), at most [`MAX_READ_BYTES`]; `None` if it cannot
/// be read.
fn read_capped(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_READ_BYTES).read_to_end(&mut bytes) {
        tracing::debug!(path = %path.display(), error = %e, "fact file unreadable; left out");
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A text fact as the master accepts it: cut to [`MAX_FACT_CHARS`] characters; dropped (with
/// a debug log) if empty or holding a control or format character.
pub(crate) fn fact_text(what: &str, value: &str) -> Option<FactText> {
    let value: String = value.chars().take(MAX_FACT_CHARS).collect();
    match FactText::new(value) {
        Ok(text) => Some(text),
        Err(reason) => {
            tracing::debug!(fact = what, %reason, "fact left out");
            None
        }
    }
}

/// `PRETTY_NAME` of an os-release text (os-release(5): shell-style `KEY=value`, the value
/// optionally in double or single quotes, backslash escaping `"`, `\`, `$` and `` ` `` in
/// double quotes). The last assignment wins, as in a shell.
pub(crate) fn pretty_name(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("PRETTY_NAME="))
        .filter_map(unquote)
        .next_back()
}

fn unquote(value: &str) -> Option<String> {
    let value = value.trim_end();
    if let Some(inner) = value.strip_prefix('\'') {
        return inner.strip_suffix('\'').map(str::to_owned);
    }
    let Some(inner) = value.strip_prefix('"') else {
        // Unquoted: a single word.
        return (!value.contains(char::is_whitespace)).then(|| value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Package names one per line (a `.pkgs` file, `apt-mark showhold`): blank lines skipped,
/// lines that are not a Debian package name (optionally with `:ARCH`) dropped with a debug
/// log, at most [`MAX_LISTED_PACKAGES`] kept.
pub(crate) fn package_lines(text: &str, what: &str) -> BTreeSet<PackageName> {
    let mut names = BTreeSet::new();
    let mut dropped = 0usize;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match PackageName::new(line)
            .ok()
            .filter(|_| is_package_name(line))
        {
            Some(name) if names.len() < MAX_LISTED_PACKAGES => {
                names.insert(name);
            }
            Some(_) | None => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::debug!(
            fact = what,
            dropped,
            "lines that are no package name, or beyond the cap, left out"
        );
    }
    names
}

/// Debian policy §5.6.1: lower-case letters, digits, `+`, `-`, `.`, starting with a letter or
/// digit, at least two characters; apt adds `:ARCH` for foreign architectures.
fn is_package_name(s: &str) -> bool {
    let (name, arch) = match s.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (s, None),
    };
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let arch_ok = arch.is_none_or(|a| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    name_ok && arch_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_name_is_read_as_a_shell_would() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                      VERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let cases = [
            ("PRETTY_NAME='Single quoted'\n", Some("Single quoted")),
            ("PRETTY_NAME=Plain\n", Some("Plain")),
            (
                "PRETTY_NAME=\"Say \\\"hi\\\" \\$HOME \\\\\"\n",
                Some("Say \"hi\" $HOME \\"),
            ),
            ("  PRETTY_NAME=\"Indented\"  \n", Some("Indented")),
            (
                "PRETTY_NAME=\"first\"\nPRETTY_NAME=\"second\"\n",
                Some("second"),
            ),
            ("NAME=\"no pretty\"\n", None),
            ("PRETTY_NAME=\"unterminated\n", None),
            ("PRETTY_NAME=two words\n", None),
            ("PRETTY_NAME=\"a\"b\"\n", None),
            ("# PRETTY_NAME=\"commented\"\n", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(pretty_name(text).as_deref(), expected, "{text:?}");
        }
    }

    #[test]
    fn text_facts_are_cut_or_dropped() {
        let long = "x".repeat(MAX_FACT_CHARS + 50);
        assert_eq!(
            fact_text("os", &long).unwrap().as_str().chars().count(),
            MAX_FACT_CHARS
        );
        assert_eq!(fact_text("os", ""), None);
        assert_eq!(fact_text("os", "Debian\u{1b}[31m"), None);
        assert_eq!(fact_text("os", "Debian\u{202e}21"), None);
        assert_eq!(fact_text("os", "Debian\u{200b}"), None);
        assert_eq!(
            fact_text("kernel", "6.1.0-28-amd64").unwrap().as_str(),
            "6.1.0-28-amd64"
        );
    }

    #[test]
    fn hostile_pkgs_lines_are_dropped() {
        let text = "linux-image-6.1.0-28-amd64\n\n  libc6:i386  \nlibc6\nlibc6\n\
                    evil\u{1b}[2J\nde\u{200b}lta\nBad-Case\n-o=Dpkg::Options\nsh -c x\n\
                    x\n{}\n\u{feff}bom\ng++-12\n";
        let names: Vec<String> = package_lines(text, "test")
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "g++-12",
                "libc6",
                "libc6:i386",
                "linux-image-6.1.0-28-amd64"
            ]
        );
        let many: String = (0..MAX_LISTED_PACKAGES + 10)
            .map(|i| format!("pkg{i}\n"))
            .collect();
        assert_eq!(package_lines(&many, "test").len(), MAX_LISTED_PACKAGES);
    }

    #[test]
    fn files_are_read_and_missing_ones_leave_facts_out() {
        let dir = tempfile::tempdir().unwrap();
        let files = FactFiles {
            os_release: vec![dir.path().join("missing"), dir.path().join("os-release")],
            kernel_release: dir.path().join("osrelease"),
            reboot_required: dir.path().join("reboot-required"),
        };
        assert_eq!(files.read(), HostFacts::default());
        std::fs::write(dir.path().join("os-release"), "PRETTY_NAME=\"Test OS 1\"\n").unwrap();
        std::fs::write(dir.path().join("osrelease"), "6.1.0-28-amd64\n").unwrap();
        std::fs::write(dir.path().join("reboot-required.pkgs"), "linux-base\n").unwrap();
        let read = files.read();
        assert_eq!(read.os.unwrap().as_str(), "Test OS 1");
        assert_eq!(read.kernel.unwrap().as_str(), "6.1.0-28-amd64");
        // The .pkgs file alone does not mean a reboot is required.
        assert!(!read.reboot_required && read.reboot_packages.is_empty());
        std::fs::write(
            dir.path().join("reboot-required"),
            "*** System restart required ***\n",
        )
        .unwrap();
        let read = files.read();
        assert!(read.reboot_required);
        assert_eq!(read.reboot_packages.len(), 1);
    }

    #[test]
    fn the_hosts_own_files_are_read() {
        let read = FactFiles::default().read();
        assert!(read.kernel.is_some(), "/proc/sys/kernel/osrelease");
    }
}

//! dpkg run the way apt-get runs it: the program (`Dir::Bin::dpkg`) and options
//! (`DPkg::Options`) read with `apt-config dump` under the same environment (so `APT_CONFIG`
//! of a sandbox root applies, and dpkg sees that root's database), for `dpkg --audit`.

use std::path::PathBuf;

use super::{last_lines, Apt};
use crate::audit::Audit;
use crate::{Error, Result};

/// `apt-config dump`'s format: one `KEY=VALUE` line per item (list items end in `::`).
const DUMP_FORMAT: &str = "%f=%v%n";

impl Apt {
    /// `dpkg --audit` with apt's dpkg program and options.
    pub(super) async fn dpkg_audit(&self) -> Result<Audit> {
        let (dpkg, options) = self.dpkg_command().await?;
        let out = self
            .runner
            .command(&dpkg)
            .args(&options)
            .arg("--audit")
            .timeout(self.settings.plan_timeout)
            .run()
            .await?;
        // dpkg 1.21 exits 0 with findings, later versions 1.
        if !matches!(out.code(), Some(0 | 1)) || out.truncated {
            return Err(Error::AptFailed {
                command: format!("{} {} --audit", dpkg.display(), options.join(" ")),
                status: out.describe_status(),
                stderr: last_lines(&out.stderr, 5),
            });
        }
        Ok(Audit::parse(&out.stdout))
    }

    /// The dpkg program and options apt-get would run, from the `apt-config` beside it.
    async fn dpkg_command(&self) -> Result<(PathBuf, Vec<String>)> {
        let path = self.settings.path.with_file_name("apt-config");
        let out = self
            .runner
            .command(&path)
            .args(&self.settings.options)
            .args([
                "dump",
                "--format",
                DUMP_FORMAT,
                "Dir::Bin::dpkg",
                "DPkg::Options",
            ])
            .timeout(self.settings.plan_timeout)
            .run()
            .await?;
        let command = format!("{} dump", path.display());
        if !out.success() || out.truncated {
            return Err(Error::AptFailed {
                command,
                status: out.describe_status(),
                stderr: last_lines(&out.stderr, 5),
            });
        }
        dpkg_invocation(&out.stdout).map_err(|stderr| Error::AptFailed {
            command,
            status: "unusable answer".into(),
            stderr,
        })
    }
}

/// The dpkg program (an absolute path) and its options from `apt-config dump` output.
fn dpkg_invocation(dump: &str) -> Result<(PathBuf, Vec<String>), String> {
    let mut program = None;
    let mut options = Vec::new();
    for line in dump.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.eq_ignore_ascii_case("Dir::Bin::dpkg") {
            program = Some(PathBuf::from(value));
        } else if key.eq_ignore_ascii_case("DPkg::Options::") && !value.is_empty() {
            options.push(value.to_owned());
        }
    }
    match program {
        Some(p) if p.is_absolute() => Ok((p, options)),
        Some(p) => Err(format!(
            "Dir::Bin::dpkg {} is not an absolute path",
            p.display()
        )),
        None => Err("no Dir::Bin::dpkg".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkgs_program_and_options_are_read_from_apt_config() {
        // As apt 2.6 prints it for a sandbox's APT_CONFIG.
        let dump = "Dir::Bin::dpkg=/usr/bin/dpkg\nDPkg::Options=\n\
                    DPkg::Options::=--root=/sb/root\nDPkg::Options::=--force-not-root\n";
        let (program, options) = dpkg_invocation(dump).unwrap();
        assert_eq!(program, PathBuf::from("/usr/bin/dpkg"));
        assert_eq!(options, ["--root=/sb/root", "--force-not-root"]);
        // A host without DPkg::Options.
        let (_, options) = dpkg_invocation("Dir::Bin::dpkg=/usr/bin/dpkg\n").unwrap();
        assert!(options.is_empty());
        assert!(dpkg_invocation("Dir::Bin::dpkg=dpkg\n").is_err());
        assert!(dpkg_invocation("").is_err());
    }
}

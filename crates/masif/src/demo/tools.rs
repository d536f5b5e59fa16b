//! The Debian tools the demo's sandboxes need, looked up in `PATH` before anything starts, so a
//! machine without apt or dpkg gets one clear message instead of a failure halfway.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use masif_testkit::sandbox::{Tool, TOOLS};

/// Programs the demo runs, with the Debian package providing each: exactly those the sandbox
/// runs to build, copy and publish, which are also all its agents run.
pub(super) const REQUIRED: &[Tool] = TOOLS;

/// Succeeds if every required program is in `path` (a `PATH`-style list); otherwise the error
/// names what is missing and the packages to install.
pub(super) fn check(path: Option<&OsStr>) -> anyhow::Result<()> {
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let missing: Vec<&Tool> = REQUIRED
        .iter()
        .filter(|tool| find(&dirs, tool.program).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let programs: Vec<&str> = missing.iter().map(|t| t.program).collect();
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    anyhow::bail!(
        "masif demo runs real apt-get and dpkg on fake packages, but {} not found in PATH \
         (a Debian or Ubuntu system is needed; install with: apt-get install {})",
        programs.join(", "),
        packages.join(" ")
    )
}

/// The first executable file called `program` in `dirs`.
pub(super) fn find(dirs: &[PathBuf], program: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_are_named_with_their_packages() {
        let empty = tempfile::tempdir().unwrap();
        let err = check(Some(empty.path().as_os_str()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("but apt-get, apt-config, apt-mark, dpkg, dpkg-deb not found in PATH"),
            "{err}"
        );
        assert!(err.contains("apt-get install apt dpkg)"), "{err}");
        let err = check(None).unwrap_err().to_string();
        assert!(err.contains("not found in PATH"), "{err}");
    }

    #[test]
    fn only_executable_files_count() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("apt-get");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::create_dir(dir.path().join("dpkg")).unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        assert_eq!(find(&dirs, "apt-get"), None);
        assert_eq!(find(&dirs, "dpkg"), None);
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find(&dirs, "apt-get"), Some(plain));
    }

    #[test]
    fn this_machine_has_them() {
        // The test machine is Debian (scripts/test-all.sh).
        check(std::env::var_os("PATH").as_deref()).unwrap();
    }
}

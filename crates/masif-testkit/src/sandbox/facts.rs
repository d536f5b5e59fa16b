//! What a sandbox offers for the agent's host facts: packages held with `apt-mark hold`
//! (dpkg's `hold` selection in the sandbox's database) and a reboot-required file inside the
//! sandbox root, with its `.pkgs` companion. (The security archive, whose versions apt shows
//! with the origin `Debian-Security:12/stable-security`, is [`Sandbox::publish_security`].)

use std::path::PathBuf;

use masif_agent::FactFiles;

use super::{io, Sandbox, APT_MARK};
use crate::Result;

impl Sandbox {
    /// Holds `package` (dpkg's `hold` selection), as `apt-mark hold` does on a host: apt
    /// keeps it back from every upgrade. Runs the host's `apt-mark` with the sandbox's
    /// `APT_CONFIG`, so the `dpkg --set-selections` it calls gets the sandbox's `--root`.
    pub async fn hold(&self, package: &str) -> Result<()> {
        self.mark("hold", package).await
    }

    /// Undoes [`Sandbox::hold`].
    pub async fn unhold(&self, package: &str) -> Result<()> {
        self.mark("unhold", package).await
    }

    async fn mark(&self, how: &str, package: &str) -> Result<()> {
        self.step(
            "apt-mark",
            self.runner
                .command(APT_MARK.path())
                .args([how, "--", package]),
        )
        .await?;
        Ok(())
    }

    /// The sandbox's reboot-required file (`root/var/run/reboot-required`), the agent's
    /// `reboot_required_file:`. It does not exist until [`Sandbox::require_reboot`].
    pub fn reboot_required_file(&self) -> PathBuf {
        self.root().join("var/run/reboot-required")
    }

    /// Where an agent planning in this sandbox reads the host's facts: the host's os-release
    /// and kernel release, the sandbox's reboot-required file.
    pub fn fact_files(&self) -> FactFiles {
        FactFiles {
            reboot_required: self.reboot_required_file(),
            ..FactFiles::default()
        }
    }

    /// Creates the reboot-required file, as a package's postinst does on Debian
    /// (`/usr/share/update-notifier/notify-reboot-required`), and writes `packages` to its
    /// `.pkgs` file, one a line, as given (tests may pass hostile lines).
    pub fn require_reboot(&self, packages: &[&str]) -> Result<()> {
        let file = self.reboot_required_file();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
        }
        std::fs::write(&file, "*** System restart required ***\n").map_err(io(file.display()))?;
        let pkgs = self.fact_files().reboot_packages_file();
        let lines: String = packages.iter().map(|p| format!("{p}\n")).collect();
        std::fs::write(&pkgs, lines).map_err(io(pkgs.display()))
    }

    /// Removes the reboot-required file and its `.pkgs` (as a reboot does).
    pub fn clear_reboot(&self) -> Result<()> {
        for file in [
            self.reboot_required_file(),
            self.fact_files().reboot_packages_file(),
        ] {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(file.display())(e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

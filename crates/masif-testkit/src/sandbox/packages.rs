//! Fake Debian packages for sandboxes: their description, the standard set the tests and the
//! demo use, and building each into a `.deb` with `dpkg-deb`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use masif_agent::exec::Runner;

use super::repo;
use crate::{Error, Result};

/// When a package version becomes visible in the sandbox's repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Published from the start (installed at creation unless marked otherwise).
    V1,
    /// Published by [`super::Sandbox::publish`]`(Stage::V2)`, next to the V1 versions.
    V2,
    /// Published by [`super::Sandbox::publish`]`(Stage::V3)`, next to the V1 and V2 versions:
    /// the package lists changing again, e.g. between an approval and the run.
    V3,
}

/// A package's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `all`.
    All,
    /// The host's (`dpkg --print-architecture`).
    Native,
}

/// One version of a fake package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePackage {
    pub name: String,
    pub version: String,
    pub arch: Arch,
    /// Extra control fields as lines, e.g. `Depends: gamma (>= 1.0)`.
    pub fields: Vec<String>,
    /// Body of a `/bin/sh` postinst. Maintainer scripts run on the host (chrootless) with
    /// `DPKG_ROOT` set: they may only echo, sleep and exit, or touch `$DPKG_ROOT/…`.
    pub postinst: Option<String>,
    pub stage: Stage,
    /// Installed when the sandbox is created (only for [`Stage::V1`]).
    pub installed: bool,
}

impl FakePackage {
    /// A plain V1 package of architecture `all`, installed at creation.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            arch: Arch::All,
            fields: Vec::new(),
            postinst: None,
            stage: Stage::V1,
            installed: true,
        }
    }

    /// Published only with [`Stage::V2`] (and so not installed at creation).
    pub fn v2(mut self) -> Self {
        self.stage = Stage::V2;
        self.installed = false;
        self
    }

    /// Published only with [`Stage::V3`] (and so not installed at creation).
    pub fn v3(mut self) -> Self {
        self.stage = Stage::V3;
        self.installed = false;
        self
    }

    pub fn native(mut self) -> Self {
        self.arch = Arch::Native;
        self
    }

    pub fn field(mut self, line: &str) -> Self {
        self.fields.push(line.into());
        self
    }

    pub fn postinst(mut self, body: &str) -> Self {
        self.postinst = Some(body.into());
        self
    }

    pub fn not_installed(mut self) -> Self {
        self.installed = false;
        self
    }

    /// Names and versions must be what dpkg accepts, and fields single lines.
    pub(crate) fn validate(&self) -> Result<()> {
        let name_ok = self.name.len() >= 2
            && self
                .name
                .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        let version_ok = self.version.starts_with(|c: char| c.is_ascii_digit())
            && self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c));
        let fields_ok = self.fields.iter().all(|f| f.contains(": "))
            && repo::stanza(&self.control_fields("amd64")).is_ok();
        if !(name_ok && version_ok && fields_ok) {
            return Err(Error::Sandbox(format!(
                "bad fake package {} {} (fields {:?})",
                self.name, self.version, self.fields
            )));
        }
        Ok(())
    }

    pub(crate) fn arch_name<'a>(&self, native: &'a str) -> &'a str {
        match self.arch {
            Arch::All => "all",
            Arch::Native => native,
        }
    }

    /// The control fields of the package built for a host of architecture `native`, in order.
    pub(crate) fn control_fields(&self, native: &str) -> Vec<(String, String)> {
        let field = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        let mut fields = vec![
            field("Package", &self.name),
            field("Version", &self.version),
            field("Architecture", self.arch_name(native)),
            field("Maintainer", "Masif Sandbox <sandbox@example.invalid>"),
            field("Section", "misc"),
            field("Priority", "optional"),
        ];
        fields.extend(self.fields.iter().map(|line| {
            let (name, value) = line.split_once(": ").unwrap_or((line, ""));
            field(name, value)
        }));
        fields.push(field(
            "Description",
            &format!(
                "fake package {} {} for apt sandboxes",
                self.name, self.version
            ),
        ));
        fields
    }

    /// The `DEBIAN/control` file.
    pub(crate) fn control(&self, native: &str) -> Result<String> {
        repo::stanza(&self.control_fields(native))
    }

    /// Builds the `.deb` into `out_dir` (using `work` for the package tree) and returns its
    /// file name.
    pub(crate) async fn build(
        &self,
        runner: &Runner,
        native: &str,
        work: &Path,
        out_dir: &Path,
    ) -> Result<String> {
        self.validate()?;
        let io = |what: &str, source: std::io::Error| Error::Io {
            context: format!("{what} of {}", self.name),
            source,
        };
        let tree = work.join(format!("{}_{}", self.name, self.version));
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(tree.join("DEBIAN")).map_err(|e| io("package tree", e))?;
        // The mode of the tree's top directory becomes the mode of the sandbox root's `./`.
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("package tree", e))?;
        let share = tree.join("usr/share").join(&self.name);
        std::fs::create_dir_all(&share).map_err(|e| io("package tree", e))?;
        std::fs::write(
            share.join("VERSION"),
            format!("{} {}\n", self.name, self.version),
        )
        .map_err(|e| io("VERSION", e))?;
        std::fs::write(tree.join("DEBIAN/control"), self.control(native)?)
            .map_err(|e| io("control", e))?;
        if let Some(body) = &self.postinst {
            let script = tree.join("DEBIAN/postinst");
            std::fs::write(&script, format!("#!/bin/sh\n{body}\n"))
                .map_err(|e| io("postinst", e))?;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io("postinst", e))?;
        }
        let file = format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch_name(native)
        );
        let out = runner
            .command(super::DPKG_DEB.path())
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&tree)
            .arg(out_dir.join(&file))
            .timeout(Duration::from_secs(60))
            .run()
            .await?;
        let _ = std::fs::remove_dir_all(&tree);
        if !out.success() {
            return Err(Error::Sandbox(format!(
                "dpkg-deb --build {}: {}",
                self.name,
                out.stderr.trim()
            )));
        }
        Ok(file)
    }
}

/// The standard fixtures (notes/apt-sandbox.md §1): alpha (plain update), beta whose 2.0
/// needs the new gamma, delta whose 2.0 conflicts with (removes) epsilon, zeta whose 2.0
/// postinst fails, and slow (published, not installed; postinst sleeps `SLOW_SECONDS`,
/// default 5).
pub fn standard_packages() -> Vec<FakePackage> {
    vec![
        FakePackage::new("alpha", "1.0").native(),
        FakePackage::new("alpha", "2.0").native().v2(),
        FakePackage::new("beta", "1.0"),
        FakePackage::new("beta", "2.0")
            .field("Depends: gamma (>= 1.0)")
            .v2(),
        FakePackage::new("gamma", "1.0").v2(),
        FakePackage::new("delta", "1.0"),
        FakePackage::new("delta", "2.0")
            .field("Conflicts: epsilon")
            .v2(),
        FakePackage::new("epsilon", "1.0"),
        FakePackage::new("zeta", "1.0").postinst("echo \"zeta 1.0 postinst: $*\"; exit 0"),
        FakePackage::new("zeta", "2.0")
            .postinst("echo \"zeta 2.0 postinst: $* -- failing on purpose\" >&2; exit 1")
            .v2(),
        FakePackage::new("slow", "1.0")
            .postinst("echo \"slow postinst: sleeping ${SLOW_SECONDS:-5}s\"; sleep \"${SLOW_SECONDS:-5}\"")
            .not_installed(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_set_is_valid() {
        for p in standard_packages() {
            p.validate().unwrap();
        }
    }

    #[test]
    fn bad_fixture_descriptions_are_refused() {
        let bad = [
            FakePackage::new("A", "1.0"),
            FakePackage::new("x", "1.0"),
            FakePackage::new("ok", "one"),
            FakePackage::new("ok", "1.0 2"),
            FakePackage::new("ok", "1.0").field("Depends gamma"),
            FakePackage::new("ok", "1.0").field("Depends: a\nEvil: b"),
            FakePackage::new("ok", "1.0").field("Bad Name: b"),
            FakePackage::new("ok", "1.0").field("Depends: "),
            FakePackage::new("../x", "1.0"),
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
    }

    #[test]
    fn control_files_carry_the_extra_fields() {
        let c = FakePackage::new("beta", "2.0")
            .field("Depends: gamma (>= 1.0)")
            .control("amd64")
            .unwrap();
        assert!(c.contains("Package: beta\nVersion: 2.0\nArchitecture: all\n"));
        assert!(c.contains("\nDepends: gamma (>= 1.0)\n"));
    }
}

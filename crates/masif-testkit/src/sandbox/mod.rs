//! APT sandboxes for tests and `masif demo`: the real `apt-get` and `dpkg` working on fake
//! packages without touching the host's package database (notes/apt-sandbox.md). A sandbox
//! holds `.deb`s built with `dpkg-deb`, a flat `file:` repository whose `Packages` and
//! `Release` files are written here ([`repo`]), a root with its own dpkg database, and the
//! `apt.conf` that `APT_CONFIG` points at (read before the host's `apt.conf.d`, so host hooks
//! stay out). Every command runs through the agent's own wrapper
//! ([`masif_agent::exec::Runner`]); the programs are the [`Tool`]s of this module.
//!
//! ```no_run
//! # async fn demo() -> masif_testkit::Result<()> {
//! use masif_testkit::sandbox::{standard_packages, Sandbox, Stage};
//! let sb = Sandbox::create("/tmp/sb".as_ref(), &standard_packages()).await?;
//! sb.publish(Stage::V2).await?;                   // alpha 2.0 etc. become available
//! let apt = masif_agent::apt::Apt::new(sb.apt_settings());
//! assert_eq!(sb.installed_version("alpha").await?.as_deref(), Some("1.0"));
//! # Ok(()) }
//! ```

mod facts;
mod interrupt;
mod lock;
mod packages;
mod repo;

pub use interrupt::{descendants, kill_tree, BLOCKING_POSTINST};
pub use lock::{LockHolder, SandboxLock};
pub use packages::{standard_packages, Arch, FakePackage, Stage};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use masif_agent::apt::AptSettings;
use masif_agent::exec::{Invocation, Runner};

use crate::{Error, Result};
use repo::Archive;

/// Marks a directory as a sandbox (so it may be rebuilt).
const MARKER: &str = ".masif-apt-sandbox";
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// A program a sandbox runs, and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The program's name; the sandbox runs `/usr/bin/<program>`.
    pub program: &'static str,
    /// The Debian package to install when it is missing.
    pub package: &'static str,
}

impl Tool {
    /// Where the sandbox runs it from.
    pub fn path(self) -> PathBuf {
        Path::new("/usr/bin").join(self.program)
    }
}

const APT_GET: Tool = Tool {
    program: "apt-get",
    package: "apt",
};
const DPKG: Tool = Tool {
    program: "dpkg",
    package: "dpkg",
};
const DPKG_DEB: Tool = Tool {
    program: "dpkg-deb",
    package: "dpkg",
};
const DPKG_QUERY: Tool = Tool {
    program: "dpkg-query",
    package: "dpkg",
};
const APT_MARK: Tool = Tool {
    program: "apt-mark",
    package: "apt",
};
const APT_CONFIG: Tool = Tool {
    program: "apt-config",
    package: "apt",
};
const PERL: Tool = Tool {
    program: "perl",
    package: "perl-base",
};

/// Every program that creating, copying and publishing a sandbox runs, which is also all an
/// agent planning and upgrading in it runs (apt-get, which calls dpkg and dpkg-deb; apt-mark,
/// which lists held packages; apt-config, which tells how apt runs dpkg, for `dpkg --audit`):
/// what `masif demo` needs. Only the test helpers
/// [`Sandbox::packages`] (and the lookups built on it: dpkg-query) and [`Sandbox::hold_lock`]
/// (perl) run more.
pub const TOOLS: &[Tool] = &[APT_GET, APT_CONFIG, APT_MARK, DPKG, DPKG_DEB];

/// A package as the sandbox's dpkg database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageState {
    /// `${db:Status-Abbrev}` without trailing blanks: `ii`, `iF` (half-configured), `rc`…
    pub status: String,
    pub version: String,
}

/// One sandbox directory: `pool/`, `repo/`, `root/`, `apt.conf`, `tmp/`.
#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
    arch: String,
    runner: Runner,
    /// The `.deb`s in `pool/`, in the order they were built.
    debs: Arc<Vec<BuiltDeb>>,
}

/// A `.deb` built into `pool/<stage>/`, with the control fields it was built from.
#[derive(Debug)]
struct BuiltDeb {
    stage: Stage,
    file: String,
    control: Vec<(String, String)>,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: what.to_string(),
        source,
    }
}

/// The directory of an archive's repository.
fn repo_dir(archive: Archive) -> &'static str {
    match archive {
        Archive::Main => "repo",
        Archive::Security => "security",
    }
}

/// The pool directory of a stage's `.deb`s.
fn stage_dir(stage: Stage) -> &'static str {
    match stage {
        Stage::V1 => "v1",
        Stage::V2 => "v2",
        Stage::V3 => "v3",
    }
}

impl Sandbox {
    /// Builds a sandbox in `dir` (which must be empty, missing, or an earlier sandbox): the
    /// `.deb`s of `packages`, the repository with the [`Stage::V1`] versions, the root with
    /// the V1 packages marked `installed` installed by the real apt-get.
    pub async fn create(dir: &Path, packages: &[FakePackage]) -> Result<Self> {
        for p in packages {
            p.validate()?;
        }
        let (dir, runner) = prepare(dir)?;
        let out = runner
            .command(DPKG.path())
            .arg("--print-architecture")
            .run()
            .await?;
        let arch = out.stdout.trim().to_owned();
        if !out.success() || arch.is_empty() {
            return Err(Error::Sandbox(format!(
                "dpkg --print-architecture: {}",
                out.stderr.trim()
            )));
        }
        let mut sandbox = Self {
            dir,
            arch,
            runner,
            debs: Arc::default(),
        };
        sandbox.debs = Arc::new(sandbox.build_packages(packages).await?);
        sandbox.make_root()?;
        sandbox.publish(Stage::V1).await?;
        let install: Vec<&str> = packages
            .iter()
            .filter(|p| p.stage == Stage::V1 && p.installed)
            .map(|p| p.name.as_str())
            .collect();
        if !install.is_empty() {
            sandbox.apt_get_install(&install).await?;
        }
        Ok(sandbox)
    }

    /// A copy of this sandbox in `dir` (packages, repository, installed state), without
    /// building anything again: a fraction of [`Sandbox::create`]'s time, for many agents.
    /// The copy's apt lists are fetched anew from its own repository.
    pub async fn clone_to(&self, dir: &Path) -> Result<Self> {
        if dir.canonicalize().is_ok_and(|d| d == self.dir) {
            return Err(Error::Sandbox(
                "a sandbox cannot be cloned onto itself".into(),
            ));
        }
        let (dir, runner) = prepare(dir)?;
        let copy = Self {
            dir,
            arch: self.arch.clone(),
            runner,
            debs: Arc::clone(&self.debs),
        };
        for sub in ["pool", "repo", "root"] {
            copy_tree(&self.dir.join(sub), &copy.dir.join(sub))?;
        }
        let security = self.dir.join(repo_dir(Archive::Security));
        if security.is_dir() {
            copy_tree(&security, &copy.dir.join(repo_dir(Archive::Security)))?;
        }
        // The lists are named after the repository's path: the copy's differ.
        let lists = copy.root().join("var/lib/apt/lists");
        for e in std::fs::read_dir(&lists).map_err(io(lists.display()))? {
            let e = e.map_err(io(lists.display()))?;
            let name = e.file_name();
            if e.path().is_file() && name != "lock" {
                std::fs::remove_file(e.path()).map_err(io(e.path().display()))?;
            }
        }
        copy.write_apt_config()?;
        copy.step(
            "apt-get update",
            copy.runner.command(APT_GET.path()).args(["update", "-qq"]),
        )
        .await?;
        Ok(copy)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sandbox root (its own `/`): dpkg database, apt state, installed files.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The file `APT_CONFIG` must name.
    pub fn apt_config(&self) -> PathBuf {
        self.dir.join("apt.conf")
    }

    /// The environment that points the real apt-get at this sandbox.
    pub fn apt_env(&self) -> Vec<(String, String)> {
        self.runner
            .env()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    /// APT back-end settings for this sandbox (the host's `/usr/bin/apt-get`).
    pub fn apt_settings(&self) -> AptSettings {
        AptSettings {
            env: self.apt_env(),
            ..AptSettings::default()
        }
    }

    async fn build_packages(&self, packages: &[FakePackage]) -> Result<Vec<BuiltDeb>> {
        let work = self.dir.join("build");
        std::fs::create_dir_all(&work).map_err(io("build"))?;
        let mut built = Vec::with_capacity(packages.len());
        for p in packages {
            let out = self.dir.join("pool").join(stage_dir(p.stage));
            std::fs::create_dir_all(&out).map_err(io("pool"))?;
            let file = p.build(&self.runner, &self.arch, &work, &out).await?;
            built.push(BuiltDeb {
                stage: p.stage,
                file,
                control: p.control_fields(&self.arch),
            });
        }
        let _ = std::fs::remove_dir_all(&work);
        Ok(built)
    }

    fn make_root(&self) -> Result<()> {
        let r = self.root();
        for d in [
            "etc/apt/apt.conf.d",
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "etc/apt/trusted.gpg.d",
            "etc/apt/auth.conf.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/log/apt",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/lib/dpkg/alternatives",
            "var/run",
        ] {
            std::fs::create_dir_all(r.join(d)).map_err(io(d))?;
        }
        // Empty databases, and the lock files up front so a lock can be held before apt ran.
        for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"]
            .into_iter()
            .chain(
                [
                    SandboxLock::DpkgFrontend,
                    SandboxLock::Dpkg,
                    SandboxLock::Archives,
                    SandboxLock::Lists,
                ]
                .map(SandboxLock::relative),
            )
        {
            std::fs::write(r.join(f), "").map_err(io(f))?;
        }
        self.write_apt_config()
    }

    /// `sources.list` (the flat repository, and the security repository once published) and
    /// the `APT_CONFIG` file, for this directory.
    fn write_apt_config(&self) -> Result<()> {
        let r = self.root();
        let mut sources = String::new();
        for archive in [Archive::Main, Archive::Security] {
            let repo = self.dir.join(repo_dir(archive));
            if archive == Archive::Main || repo.is_dir() {
                sources.push_str(&format!("deb [trusted=yes] file:{} ./\n", repo.display()));
            }
        }
        std::fs::write(r.join("etc/apt/sources.list"), sources).map_err(io("sources.list"))?;
        std::fs::write(self.apt_config(), apt_conf(&r)).map_err(io("apt.conf"))?;
        Ok(())
    }

    async fn step(&self, what: &str, inv: Invocation<'_>) -> Result<String> {
        let out = inv.timeout(STEP_TIMEOUT).run().await?;
        if !out.success() {
            return Err(Error::Sandbox(format!(
                "{what} ({}): {}{}",
                out.describe_status(),
                out.stdout.trim(),
                out.stderr.trim()
            )));
        }
        Ok(out.stdout)
    }

    /// Publishes the packages of `stage` and the earlier stages (as a real archive keeps the
    /// installed versions) and runs `apt-get update`. The repository's `Packages` and
    /// `Release` files are written here, so no apt-utils or dpkg-dev is needed.
    pub async fn publish(&self, stage: Stage) -> Result<()> {
        self.write_repo(Archive::Main, |deb| deb.stage <= stage)?;
        self.apt_get_update().await
    }

    /// Publishes the packages of exactly `stage` (not the earlier stages) in a second
    /// repository, `security/`, whose `Release` file has `Label: Debian-Security` and `Suite:
    /// stable-security`, and runs `apt-get update`. A version only there is printed by apt as
    /// `(2.0 Debian-Security:12/stable-security [amd64])`; one published in both repositories
    /// as `(2.0 Sandbox:12/stable, Debian-Security:12/stable-security [amd64])`.
    pub async fn publish_security(&self, stage: Stage) -> Result<()> {
        self.write_repo(Archive::Security, |deb| deb.stage == stage)?;
        self.write_apt_config()?;
        self.apt_get_update().await
    }

    /// Writes the repository of `archive` with the `.deb`s `include` picks, replacing it
    /// whole.
    fn write_repo(&self, archive: Archive, include: impl Fn(&BuiltDeb) -> bool) -> Result<()> {
        let new = self.dir.join("repo.new");
        let _ = std::fs::remove_dir_all(&new);
        std::fs::create_dir_all(&new).map_err(io("repo.new"))?;
        let mut published = Vec::new();
        for deb in self.debs.iter().filter(|d| include(d)) {
            let from = self
                .dir
                .join("pool")
                .join(stage_dir(deb.stage))
                .join(&deb.file);
            let bytes = std::fs::read(&from).map_err(io(from.display()))?;
            std::fs::write(new.join(&deb.file), &bytes).map_err(io("repo.new"))?;
            published.push(repo::RepoDeb::new(&deb.file, &deb.control, &bytes));
        }
        let packages = repo::packages_file(&published)?;
        std::fs::write(new.join("Packages"), &packages).map_err(io("Packages"))?;
        let release = repo::release_file(
            archive,
            packages.as_bytes(),
            time::OffsetDateTime::now_utc(),
        );
        std::fs::write(new.join("Release"), release).map_err(io("Release"))?;
        let repo = self.dir.join(repo_dir(archive));
        let _ = std::fs::remove_dir_all(&repo);
        std::fs::rename(&new, &repo).map_err(io(repo.display()))?;
        Ok(())
    }

    async fn apt_get_update(&self) -> Result<()> {
        self.step(
            "apt-get update",
            self.runner.command(APT_GET.path()).args(["update", "-qq"]),
        )
        .await?;
        Ok(())
    }

    async fn apt_get_install(&self, packages: &[&str]) -> Result<()> {
        self.step(
            "apt-get install",
            self.runner
                .command(APT_GET.path())
                .args(["install", "-yqq"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .await?;
        Ok(())
    }

    /// Every package the sandbox's dpkg database knows.
    pub async fn packages(&self) -> Result<BTreeMap<String, PackageState>> {
        let admindir = format!("--admindir={}", self.root().join("var/lib/dpkg").display());
        let out = self
            .runner
            .command(DPKG_QUERY.path())
            .arg(admindir)
            .args(["-W", "-f=${Package}|${db:Status-Abbrev}|${Version}\n"])
            .run()
            .await?;
        if !out.success() && !out.stdout.is_empty() {
            return Err(Error::Sandbox(format!("dpkg-query: {}", out.stderr.trim())));
        }
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, '|');
                let (name, status, version) = (f.next()?, f.next()?, f.next()?);
                Some((
                    name.to_owned(),
                    PackageState {
                        status: status.trim_end().to_owned(),
                        version: version.to_owned(),
                    },
                ))
            })
            .collect())
    }

    /// What the dpkg database says of `package` (`None` if it never was installed).
    pub async fn package_state(&self, package: &str) -> Result<Option<PackageState>> {
        Ok(self.packages().await?.remove(package))
    }

    /// The version of `package` if it is fully installed (`ii`, or `hi` when held).
    pub async fn installed_version(&self, package: &str) -> Result<Option<String>> {
        Ok(self
            .package_state(package)
            .await?
            // Installed and fully configured: wanted `install` (ii) or `hold` (hi).
            .filter(|s| matches!(s.status.as_str(), "ii" | "hi"))
            .map(|s| s.version))
    }

    /// Saves the root (dpkg database, apt lists, installed files) for [`Sandbox::restore`].
    pub fn snapshot(&self) -> Result<()> {
        let snap = self.dir.join("root.snap");
        let _ = std::fs::remove_dir_all(&snap);
        copy_tree(&self.root(), &snap)
    }

    /// Puts the root back as it was at the last [`Sandbox::snapshot`] (milliseconds).
    pub fn restore(&self) -> Result<()> {
        let snap = self.dir.join("root.snap");
        if !snap.is_dir() {
            return Err(Error::Sandbox("no snapshot to restore".into()));
        }
        std::fs::remove_dir_all(self.root()).map_err(io("root"))?;
        copy_tree(&snap, &self.root())
    }
}

/// Makes `dir` ready to hold a sandbox (creating it; emptying an earlier sandbox, never a
/// foreign directory) and returns its canonical path and the runner pointed at it.
fn prepare(dir: &Path) -> Result<(PathBuf, Runner)> {
    std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
    let dir = dir.canonicalize().map_err(io(dir.display()))?;
    if dir == Path::new("/") {
        return Err(Error::Sandbox("refusing to use / as a sandbox".into()));
    }
    let mut entries = std::fs::read_dir(&dir).map_err(io(dir.display()))?;
    if entries.next().is_some() {
        if !dir.join(MARKER).exists() {
            return Err(Error::Sandbox(format!(
                "{} is not empty and not a sandbox; refusing to wipe it",
                dir.display()
            )));
        }
        for sub in [
            "pool",
            "repo",
            "repo.new",
            "security",
            "root",
            "root.snap",
            "tmp",
            "build",
        ] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
    }
    std::fs::write(dir.join(MARKER), "").map_err(io("marker"))?;
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io("tmp"))?;
    let runner = Runner::new([
        ("APT_CONFIG", dir.join("apt.conf").into_os_string()),
        ("TMPDIR", tmp.into_os_string()),
    ]);
    Ok((dir, runner))
}

/// The `APT_CONFIG` file of a sandbox root `r` (notes/apt-sandbox.md §3).
fn apt_conf(r: &Path) -> String {
    let r = r.display();
    let dpkg = DPKG.path();
    let dpkg = dpkg.display();
    format!(
        r#"// APT configuration of a Masif apt sandbox: APT_CONFIG=<this file> apt-get ...
Dir "{r}/";
Dir::State::status "{r}/var/lib/dpkg/status";
Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "{r}/etc/apt/apt.conf.d";
Dir::Etc::SourceList "{r}/etc/apt/sources.list";
Dir::Etc::SourceParts "{r}/etc/apt/sources.list.d";
Dir::Bin::dpkg "{dpkg}";
DPkg::Options {{
  "--root={r}";
  "--log={r}/var/log/dpkg.log";
  "--force-script-chrootless";
  "--force-not-root";
  "--force-bad-path";
}};
APT::Sandbox::User "root";
APT::Get::Show-User-Simulation-Note "false";
Acquire::Languages "none";
"#
    )
}

/// Copies a directory tree (files, directories, symlinks) keeping permissions.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from).map_err(io(from.display()))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(io(from.display()))?;
        std::os::unix::fs::symlink(target, to).map_err(io(to.display()))?;
    } else if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(io(to.display()))?;
        for e in std::fs::read_dir(from).map_err(io(from.display()))? {
            let e = e.map_err(io(from.display()))?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        std::fs::set_permissions(to, meta.permissions()).map_err(io(to.display()))?;
    } else {
        std::fs::copy(from, to).map_err(io(from.display()))?;
    }
    Ok(())
}

//! The demo's working directory: a fresh temporary one removed at exit, or the `--keep`
//! directory, which must be new or empty and is left in place.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where database, PKI and sandboxes live while the demo runs.
#[derive(Debug)]
pub(super) struct Workdir {
    path: PathBuf,
    /// `Some` for a temporary directory: dropping it removes everything.
    temporary: Option<tempfile::TempDir>,
}

impl Workdir {
    /// A temporary directory, or `keep` (created if missing; refused unless empty, so an old
    /// demo's state is never mixed into a new one).
    pub(super) fn create(keep: Option<&Path>) -> anyhow::Result<Self> {
        match keep {
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("masif-demo-")
                    .tempdir()
                    .context("creating a temporary directory")?;
                Ok(Self {
                    path: dir.path().to_path_buf(),
                    temporary: Some(dir),
                })
            }
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("--keep {}: cannot create", dir.display()))?;
                let mut entries = std::fs::read_dir(dir)
                    .with_context(|| format!("--keep {}: cannot read", dir.display()))?;
                if entries.next().is_some() {
                    anyhow::bail!(
                        "--keep {}: directory is not empty; give a new or empty directory",
                        dir.display()
                    );
                }
                let path = std::fs::canonicalize(dir)
                    .with_context(|| format!("--keep {}", dir.display()))?;
                Ok(Self {
                    path,
                    temporary: None,
                })
            }
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory stays after [`Workdir::finish`].
    pub(super) fn is_kept(&self) -> bool {
        self.temporary.is_none()
    }

    /// Removes a temporary directory (reporting failure); a kept one stays.
    pub(super) fn finish(self) -> anyhow::Result<()> {
        match self.temporary {
            Some(dir) => dir
                .close()
                .with_context(|| format!("removing {}", self.path.display())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_directory_is_removed() {
        let dir = Workdir::create(None).unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("file"), "x").unwrap();
        assert!(!dir.is_kept());
        dir.finish().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_kept_directory_must_be_empty_and_stays() {
        let parent = tempfile::tempdir().unwrap();
        let keep = parent.path().join("new/demo");
        let dir = Workdir::create(Some(&keep)).unwrap();
        assert!(dir.is_kept());
        std::fs::write(dir.path().join("file"), "x").unwrap();
        dir.finish().unwrap();
        assert!(keep.join("file").exists());
        let err = Workdir::create(Some(&keep)).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        // A file where the directory should be.
        let err = Workdir::create(Some(&keep.join("file"))).unwrap_err();
        assert!(format!("{err:#}").contains("file"), "{err:#}");
    }
}

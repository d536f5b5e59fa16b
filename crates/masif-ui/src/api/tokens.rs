//! API tokens (`auth.tokens`): a file of `name:hash` lines read with the htpasswd parser,
//! re-read when it changes on disk, and the tokens already verified remembered by their
//! SHA-256 digest so that later requests cost no hash check.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::auth::htpasswd::Users;
use crate::UiError;

/// What identifies a version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// The digest a verified token is remembered by.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

struct State {
    tokens: Users,
    stamp: Option<Stamp>,
    /// Bumped by every reload: a check that began before one is not remembered.
    generation: u64,
    /// Verified tokens by digest, with the name of their line (at most one per line).
    verified: HashMap<TokenDigest, String>,
}

/// The API tokens of a running UI.
pub struct ApiTokens {
    path: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().expect("token state poisoned");
        f.debug_struct("ApiTokens")
            .field("path", &self.path)
            .field("tokens", &state.tokens)
            .finish()
    }
}

impl ApiTokens {
    /// Reads the token file at `path`; errors name the file and the line, never a hash.
    pub fn load(path: &Path) -> Result<Self, UiError> {
        let before = stamp(path).ok();
        let tokens = Users::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(State {
                tokens,
                stamp: before,
                generation: 0,
                verified: HashMap::new(),
            }),
        })
    }

    /// Number of token lines.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .expect("token state poisoned")
            .tokens
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file when it changed on disk (checked on every bearer request: one `stat`).
    /// A file that no longer reads or parses is logged and accepts no token until it is
    /// fixed: a token removed with a typo must not stay valid.
    fn refresh(&self, state: &mut State) {
        let now = stamp(&self.path).ok();
        if now == state.stamp && now.is_some() {
            return;
        }
        state.stamp = now;
        state.generation += 1;
        state.verified.clear();
        match Users::load(&self.path) {
            Ok(tokens) => {
                tracing::info!(path = %self.path.display(), tokens = tokens.len(), "API token file re-read");
                state.tokens = tokens;
            }
            Err(e) => {
                tracing::error!(error = %e, "API token file unusable: no token is accepted until it is fixed");
                state.tokens = Users::default();
            }
        }
    }

    /// The name of an already verified token, or the tokens to check it against and the
    /// generation to hand back to [`ApiTokens::remember`].
    pub(crate) fn lookup(&self, digest: &TokenDigest) -> Result<String, (Users, u64)> {
        let mut state = self.state.lock().expect("token state poisoned");
        self.refresh(&mut state);
        match state.verified.get(digest) {
            Some(name) => Ok(name.clone()),
            None => Err((state.tokens.clone(), state.generation)),
        }
    }

    /// Remembers a verified token, unless the file was re-read since its check began.
    pub(crate) fn remember(&self, digest: TokenDigest, name: &str, generation: u64) {
        let mut state = self.state.lock().expect("token state poisoned");
        if state.generation == generation && state.verified.len() <= state.tokens.len() {
            state.verified.insert(digest, name.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(name: &str, token: &str) -> String {
        format!("{name}:{}\n", bcrypt::hash(token, 4).unwrap())
    }

    #[test]
    fn tokens_are_remembered_until_the_file_changes() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(line("ci", "s3cret").as_bytes()).unwrap();
        let tokens = ApiTokens::load(f.path()).unwrap();
        assert_eq!(tokens.len(), 1);
        let d = digest("s3cret");
        let (users, generation) = tokens.lookup(&d).unwrap_err();
        assert_eq!(users.name_of_secret("s3cret").as_deref(), Some("ci"));
        tokens.remember(d, "ci", generation);
        assert_eq!(tokens.lookup(&d).unwrap(), "ci");
        // Rewritten without the token: forgotten.
        std::fs::write(f.path(), line("other", "x")).unwrap();
        let (users, _) = tokens.lookup(&d).unwrap_err();
        assert_eq!(users.name_of_secret("s3cret"), None);
        // Broken: no token at all.
        std::fs::write(f.path(), "other:plaintext\n").unwrap();
        let (users, _) = tokens.lookup(&digest("x")).unwrap_err();
        assert!(users.is_empty());
    }

    #[test]
    fn a_check_that_straddles_a_reload_is_not_remembered() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), line("ci", "t")).unwrap();
        let tokens = ApiTokens::load(f.path()).unwrap();
        let (_, generation) = tokens.lookup(&digest("t")).unwrap_err();
        std::fs::write(f.path(), line("ci", "t") + &line("b", "u")).unwrap();
        assert!(tokens.lookup(&digest("u")).is_err());
        tokens.remember(digest("t"), "ci", generation);
        assert!(tokens.lookup(&digest("t")).is_err());
    }

    #[test]
    fn bad_files_are_errors_naming_the_line() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "# tokens\nci\n").unwrap();
        let e = ApiTokens::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(ApiTokens::load(Path::new("/nonexistent/tokens")).is_err());
    }
}

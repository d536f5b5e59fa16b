//! Local users from an htpasswd-style file: `user:hash` lines with bcrypt (`$2y$`, `$2b$`,
//! `$2a$`, as `htpasswd -B` writes them) or argon2 (PHC strings) hashes.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordVerifier};

use crate::UiError;

/// Largest htpasswd file read (bytes); a real one is a few hundred bytes per user.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(String),
    Argon2(String),
}

/// The users allowed to log in, by name.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<String, Hash>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: hashes stay out of logs.
        let mut names: Vec<_> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

impl Users {
    /// Reads the file at `path`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Self, UiError> {
        let err = |msg: String| UiError::Htpasswd(format!("{}: {msg}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses htpasswd text: blank lines and `#` comments are skipped; any other line must be
    /// `user:hash` with a supported hash. Errors name the line, never the hash.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_name = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {n}: expected user:hash"));
            };
            if user.is_empty() || user.chars().any(char::is_control) {
                return Err(format!("line {n}: empty or invalid user name"));
            }
            let hash = if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                hash.parse::<bcrypt::HashParts>()
                    .map_err(|_| format!("line {n}: malformed bcrypt hash for user {user:?}"))?;
                Hash::Bcrypt(hash.to_owned())
            } else if hash.starts_with("$argon2") {
                let complete =
                    PasswordHash::new(hash).is_ok_and(|p| p.salt.is_some() && p.hash.is_some());
                if !complete {
                    return Err(format!("line {n}: malformed argon2 hash for user {user:?}"));
                }
                Hash::Argon2(hash.to_owned())
            } else {
                return Err(format!(
                    "line {n}: unsupported hash for user {user:?} (use bcrypt, htpasswd -B, or argon2)"
                ));
            };
            if by_name.insert(user.to_owned(), hash).is_some() {
                return Err(format!("line {n}: user {user:?} appears twice"));
            }
        }
        Ok(Self { by_name })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `password` is `user`'s. Slow on purpose (the hash's cost): call it from a
    /// blocking thread. Unknown users cost a bcrypt verification too, so timing does not tell
    /// which names exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.by_name.get(user) {
            Some(Hash::Bcrypt(h)) => bcrypt::verify(password, h).unwrap_or(false),
            Some(Hash::Argon2(h)) => PasswordHash::new(h)
                .map(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, dummy_bcrypt());
                false
            }
        }
    }
}

/// A bcrypt hash (cost 10) of a random password, verified for unknown users.
fn dummy_bcrypt() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let pw: [u8; 16] = rand::random();
        bcrypt::hash(pw, 10).expect("bcrypt of a fixed-size input")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn argon2_hash(pw: &str) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        argon2::Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn bcrypt_and_argon2_users_log_in() {
        let b = bcrypt::hash("bpw", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let text = format!("# admins\n\nalice:{b}\nbob:{}\n", argon2_hash("apw"));
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.verify("alice", "bpw"));
        assert!(!users.verify("alice", "apw"));
        assert!(users.verify("bob", "apw"));
        assert!(!users.verify("bob", ""));
        assert!(!users.verify("carol", "bpw"));
    }

    #[test]
    fn bad_lines_are_named_without_the_hash() {
        let cases = [
            ("alice\n", "line 1: expected user:hash"),
            ("alice:$apr1$abc$def\n", "unsupported hash"),
            (
                "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
                "unsupported hash",
            ),
            ("alice:plaintext\n", "unsupported hash"),
            ("alice:$2y$10$short\n", "malformed bcrypt"),
            ("alice:$argon2id$v=19$garbage\n", "malformed argon2"),
            (":$2y$10$abc\n", "invalid user name"),
        ];
        for (text, want) in cases {
            let e = Users::parse(text).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("short") && !e.contains("garbage"), "{e}");
        }
        let b = bcrypt::hash("x", 4).unwrap();
        let e = Users::parse(&format!("a:{b}\na:{b}\n")).unwrap_err();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
    }

    #[test]
    fn oversized_files_are_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = Users::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}

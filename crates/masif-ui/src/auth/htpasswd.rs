//! Local users from an htpasswd-style file: `user:hash` lines with bcrypt (`$2y$`, `$2b$`,
//! `$2a$`, as `htpasswd -B` writes them) or argon2 (PHC strings) hashes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::UiError;

/// Largest htpasswd file read (bytes); a real one is a few hundred bytes per user.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(String),
    Argon2(String),
}

/// What a hash costs to check: its algorithm and parameters, without salt or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashCost {
    Bcrypt {
        cost: u32,
    },
    Argon2 {
        algorithm: String,
        version: Option<u32>,
        params: String,
        output_len: Option<usize>,
    },
}

/// bcrypt costs below this are warned about at start-up.
pub(crate) const MIN_BCRYPT_COST: u32 = 10;

/// The users allowed to log in, by name.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<String, Hash>,
    /// The names in file order.
    order: Vec<String>,
    /// The first user's hash: the dummy checked for unknown names is made like it.
    first: Option<Hash>,
    /// Made on first use (a high cost makes it slow).
    dummy: Arc<OnceLock<Hash>>,
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
        let mut order = Vec::new();
        let mut first = None;
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
            first.get_or_insert_with(|| hash.clone());
            if by_name.insert(user.to_owned(), hash).is_some() {
                return Err(format!("line {n}: user {user:?} appears twice"));
            }
            order.push(user.to_owned());
        }
        Ok(Self {
            by_name,
            order,
            first,
            dummy: Arc::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `password` is `user`'s. Slow on purpose (the hash's cost): call it from a
    /// blocking thread. An unknown user costs a check of a dummy hash with the first user's
    /// algorithm and parameters, so timing does not tell which names exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.by_name.get(user) {
            Some(hash) => check(hash, password),
            None => {
                let _ = check(self.dummy(), password);
                false
            }
        }
    }

    /// The first name (in file order) whose hash `secret` matches: how a bearer token, which
    /// names no user, is checked. Slow on purpose (one hash check per line): call it from a
    /// blocking thread.
    pub(crate) fn name_of_secret(&self, secret: &str) -> Option<String> {
        self.order
            .iter()
            .find(|name| self.by_name.get(*name).is_some_and(|h| check(h, secret)))
            .cloned()
    }

    /// The users whose bcrypt cost is below [`MIN_BCRYPT_COST`], by name.
    pub(crate) fn weak_bcrypt(&self) -> Vec<(&str, u32)> {
        let mut weak: Vec<_> = self
            .by_name
            .iter()
            .filter_map(|(name, hash)| match cost(hash) {
                HashCost::Bcrypt { cost } if cost < MIN_BCRYPT_COST => Some((name.as_str(), cost)),
                _ => None,
            })
            .collect();
        weak.sort();
        weak
    }

    /// The names of users whose hash costs differ from the first user's (timing could tell
    /// them apart from unknown names), by name.
    pub(crate) fn other_costs(&self) -> Vec<&str> {
        let Some(first) = self.first.as_ref().map(cost) else {
            return Vec::new();
        };
        let mut other: Vec<_> = self
            .by_name
            .iter()
            .filter(|(_, hash)| cost(hash) != first)
            .map(|(name, _)| name.as_str())
            .collect();
        other.sort();
        other
    }

    fn dummy(&self) -> &Hash {
        self.dummy.get_or_init(|| dummy_like(self.first.as_ref()))
    }

    #[cfg(test)]
    pub(crate) fn dummy_cost(&self) -> HashCost {
        cost(self.dummy())
    }
}

fn check(hash: &Hash, password: &str) -> bool {
    match hash {
        Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        Hash::Argon2(h) => PasswordHash::new(h)
            .map(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false),
    }
}

/// The algorithm and parameters of a hash that [`Users::parse`] accepted.
fn cost(hash: &Hash) -> HashCost {
    match hash {
        Hash::Bcrypt(h) => HashCost::Bcrypt {
            cost: h
                .parse::<bcrypt::HashParts>()
                .map(|p| p.get_cost())
                .unwrap_or(bcrypt::DEFAULT_COST),
        },
        Hash::Argon2(h) => {
            let parsed = PasswordHash::new(h).expect("checked when parsed");
            HashCost::Argon2 {
                algorithm: parsed.algorithm.to_string(),
                version: parsed.version,
                params: parsed.params.to_string(),
                output_len: parsed.hash.map(|h| h.len()),
            }
        }
    }
}

/// A hash of a random password made like `template` (bcrypt cost 10 without one).
fn dummy_like(template: Option<&Hash>) -> Hash {
    let password: [u8; 16] = rand::random();
    let bcrypt_of =
        |cost| Hash::Bcrypt(bcrypt::hash(password, cost).expect("bcrypt of a fixed-size input"));
    match template {
        Some(h @ Hash::Bcrypt(_)) => match cost(h) {
            HashCost::Bcrypt { cost } => bcrypt_of(cost),
            HashCost::Argon2 { .. } => unreachable!("a bcrypt hash"),
        },
        Some(Hash::Argon2(h)) => {
            let parsed = PasswordHash::new(h).expect("checked when parsed");
            let made = argon2_like(&parsed, &password);
            made.map(Hash::Argon2)
                .unwrap_or_else(|| bcrypt_of(bcrypt::DEFAULT_COST))
        }
        None => bcrypt_of(bcrypt::DEFAULT_COST),
    }
}

/// An argon2 PHC string of `password` with `like`'s algorithm, version and parameters.
fn argon2_like(like: &PasswordHash<'_>, password: &[u8]) -> Option<String> {
    let algorithm = argon2::Algorithm::try_from(like.algorithm).ok()?;
    let version = match like.version {
        Some(v) => argon2::Version::try_from(v).ok()?,
        None => argon2::Version::default(),
    };
    let params = argon2::Params::try_from(like).ok()?;
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).ok()?;
    let hasher = argon2::Argon2::new(algorithm, version, params);
    let hash = hasher.hash_password(password, &salt).ok()?;
    Some(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(users.name_of_secret("apw").as_deref(), Some("bob"));
        assert_eq!(users.name_of_secret("bpw").as_deref(), Some("alice"));
        assert_eq!(users.name_of_secret("nope"), None);
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

    #[test]
    fn the_dummy_is_made_like_the_first_user() {
        let b5 = bcrypt::hash("x", 5).unwrap().replacen("$2b$", "$2y$", 1);
        let b4 = bcrypt::hash("y", 4).unwrap();
        let users = Users::parse(&format!("alice:{b5}\nbob:{b4}\n")).unwrap();
        assert_eq!(users.dummy_cost(), HashCost::Bcrypt { cost: 5 });
        assert!(!users.verify("carol", "x"));
        assert_eq!(users.other_costs(), ["bob"]);
        assert_eq!(users.weak_bcrypt(), [("alice", 5), ("bob", 4)]);

        let params = argon2::Params::new(4096, 3, 2, Some(24)).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
            .hash_password(b"apw", &salt)
            .unwrap()
            .to_string();
        let users = Users::parse(&format!("dora:{a}\nalice:{b5}\n")).unwrap();
        let want = cost(&Hash::Argon2(a.clone()));
        assert_eq!(
            want,
            HashCost::Argon2 {
                algorithm: "argon2i".into(),
                version: Some(19),
                params: "m=4096,t=3,p=2".into(),
                output_len: Some(24),
            }
        );
        assert_eq!(users.dummy_cost(), want);
        assert!(users.verify("dora", "apw"));
        assert!(!users.verify("erin", "apw"));
        assert_eq!(users.weak_bcrypt(), [("alice", 5)]);

        let b12 = "$2y$12$".to_owned() + &b4[7..];
        let strong = Users::parse(&format!("alice:{b12}\n")).unwrap();
        assert!(strong.weak_bcrypt().is_empty());
    }

    /// A cheap bcrypt and argon2 hash of "pw", made once.
    fn cheap_hashes() -> &'static [String; 2] {
        static HASHES: OnceLock<[String; 2]> = OnceLock::new();
        HASHES.get_or_init(|| {
            let params = argon2::Params::new(8, 1, 1, None).unwrap();
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            let argon =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password(b"pw", &salt)
                    .unwrap()
                    .to_string();
            [bcrypt::hash("pw", 4).unwrap(), argon]
        })
    }

    // Bounded for CI (256 cases; `PROPTEST_CASES=100000` for a longer run by hand).
    proptest::proptest! {
        #[test]
        fn raw_bytes_parse_or_name_the_line(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = Users::parse(&text) {
                proptest::prop_assert!(e.starts_with("line "), "{}", e);
            }
        }

        #[test]
        fn line_shaped_noise_parses_or_names_the_line(
            lines in proptest::collection::vec("[#a-z: ]{0,4}(\\$(2[aby]|argon2(id?|d))\\$)?[ -~]{0,40}", 0..6),
        ) {
            if let Err(e) = Users::parse(&lines.join("\n")) {
                proptest::prop_assert!(e.starts_with("line "), "{}", e);
            }
        }

        #[test]
        fn valid_files_round_trip(
            users in proptest::collection::btree_map("[A-Za-z0-9._@-]{1,20}", proptest::bool::ANY, 1..6),
            comments in proptest::collection::vec("(#[ -~]{0,20})?", 0..4),
        ) {
            let mut lines: Vec<String> = comments;
            for (name, argon) in &users {
                lines.push(format!("  {name}:{}  ", cheap_hashes()[usize::from(*argon)]));
            }
            let parsed = Users::parse(&lines.join("\n")).unwrap();
            proptest::prop_assert_eq!(parsed.len(), users.len());
            let (first, _) = users.iter().next().unwrap();
            proptest::prop_assert!(parsed.verify(first, "pw"));
            proptest::prop_assert!(!parsed.verify(first, "wrong"));
        }
    }
}

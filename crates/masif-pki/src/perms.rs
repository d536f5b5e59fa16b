//! File permission checks: private keys must not be world-readable, and a service user must be
//! able to read every file (including search permission on each parent directory).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A local account as far as file access is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl Account {
    /// Looks `name` up in `/etc/passwd` and `/etc/group` (primary and supplementary groups).
    pub fn lookup(name: &str) -> Result<Account, String> {
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Self::from_tables(name, &passwd, &group)
    }

    fn from_tables(name: &str, passwd: &str, group: &str) -> Result<Account, String> {
        let (uid, gid) = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[0] == name)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| format!("no user {name:?} in /etc/passwd"))?;
        let mut gids = vec![gid];
        for fields in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if fields.len() >= 4 && fields[3].split(',').any(|m| m == name) {
                if let Ok(g) = fields[2].parse() {
                    gids.push(g);
                }
            }
        }
        Ok(Account {
            name: name.to_owned(),
            uid,
            gids,
        })
    }

    /// Whether the permission bits of `meta` grant this account `bits` (4 read, 1 search).
    fn granted(&self, meta: &std::fs::Metadata, bits: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let mode = meta.mode();
        let class = if meta.uid() == self.uid {
            mode >> 6
        } else if self.gids.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        class & bits == bits
    }

    /// Why this account cannot read `path`, or `None` when it can.
    pub fn cannot_read(&self, path: &Path) -> Option<String> {
        let absolute = std::path::absolute(path).ok()?;
        for dir in absolute.ancestors().skip(1) {
            let meta = std::fs::metadata(dir).ok()?;
            if !self.granted(&meta, 1) {
                return Some(format!(
                    "user {} cannot enter {} (mode {:04o})",
                    self.name,
                    dir.display(),
                    meta.mode() & 0o7777
                ));
            }
        }
        let meta = std::fs::metadata(path).ok()?;
        (!self.granted(&meta, 4)).then(|| {
            format!(
                "user {} cannot read {} (mode {:04o}, owner uid {} gid {})",
                self.name,
                path.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            )
        })
    }
}

/// What is wrong with a private key file's mode: (critical?, message).
pub(crate) fn key_mode_problem(path: &Path) -> Option<(bool, String)> {
    let mode = std::fs::metadata(path).ok()?.mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Some((
            true,
            format!(
                "{}: private key is readable by everyone (mode {mode:04o}); chmod o-r",
                path.display()
            ),
        ));
    }
    (mode & 0o022 != 0).then(|| {
        (
            false,
            format!(
                "{}: private key is writable by group or others (mode {mode:04o}); chmod go-w",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const PASSWD: &str = "root:x:0:0::/root:/bin/sh\nnagios:x:120:130::/var/lib/nagios:/usr/sbin/nologin\nbroken:x:zz:1::/:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnagios:x:130:\npuppet:x:140:nagios,other\nssl-cert:x:150:other\n";

    #[test]
    fn accounts_come_with_primary_and_supplementary_groups() {
        let a = Account::from_tables("nagios", PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gids), (120, vec![130, 140]));
        assert!(Account::from_tables("nobody", PASSWD, GROUP)
            .unwrap_err()
            .contains("nobody"));
        assert!(Account::from_tables("broken", PASSWD, GROUP).is_err());
    }

    #[test]
    fn key_modes_are_judged() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "x").unwrap();
        for (mode, expected) in [
            (0o600, None),
            (0o640, None),
            (0o644, Some(true)),
            (0o620, Some(false)),
        ] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                key_mode_problem(&key).map(|(c, _)| c),
                expected,
                "mode {mode:o}"
            );
        }
    }

    #[test]
    fn readability_follows_owner_group_other_bits_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("f.pem");
        std::fs::write(&file, "x").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let stranger = Account {
            name: "stranger".into(),
            uid: 54321,
            gids: vec![54321],
        };
        let member = Account {
            name: "member".into(),
            uid: 54322,
            gids: vec![meta.gid()],
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(stranger.cannot_read(&file).unwrap().contains("cannot read"));
        assert_eq!(member.cannot_read(&file), None);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(member.cannot_read(&file).unwrap().contains("cannot enter"));
        let root = Account {
            name: "root".into(),
            uid: 0,
            gids: vec![0],
        };
        assert_eq!(root.cannot_read(&file), None);
    }
}

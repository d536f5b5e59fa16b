//! Numbered schema migrations shared by the back ends: the embedded list's shape, its order
//! check and the splitting of a migration file into statements.

/// One numbered migration file, embedded with `include_str!`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Checks that `migrations` are numbered 1, 2, 3, … without gaps (a build-time mistake).
pub(crate) fn check_order(migrations: &[Migration]) -> Result<(), String> {
    for (i, m) in migrations.iter().enumerate() {
        let expected = u32::try_from(i + 1).map_err(|e| e.to_string())?;
        if m.version != expected {
            return Err(format!(
                "migration {} ({}) is out of order: expected version {expected}",
                m.version, m.name
            ));
        }
    }
    Ok(())
}

/// The statements of a migration file: `--` comment lines removed, split at `;` ending a line.
/// Migration files keep string literals free of `;` at line ends, so this simple rule holds.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        if trimmed.ends_with(';') {
            current.push_str(line.trim_end().trim_end_matches(';'));
            out.push(std::mem::take(&mut current));
        } else {
            current.push_str(line);
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_split_and_comments_dropped() {
        let sql =
            "-- a comment\nCREATE TABLE a (\n  x INT -- inline\n);\n\nALTER TABLE a ADD y INT;\n";
        let s = statements(sql);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("CREATE TABLE a ("));
        assert!(s[0].ends_with(')'));
        assert_eq!(s[1], "ALTER TABLE a ADD y INT");
    }

    #[test]
    fn trailing_statement_without_semicolon_is_kept() {
        assert_eq!(statements("SELECT 1"), vec!["SELECT 1".to_owned()]);
        assert!(statements("-- only a comment\n").is_empty());
    }

    #[test]
    fn order_is_checked() {
        let m = |version| Migration {
            version,
            name: "x",
            sql: "",
        };
        assert!(check_order(&[m(1), m(2)]).is_ok());
        assert!(check_order(&[m(1), m(3)]).is_err());
        assert!(check_order(&[m(2)]).is_err());
    }
}

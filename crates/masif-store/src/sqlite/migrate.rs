//! The numbered migrations of `schema/sqlite/`, applied at open in one transaction each and
//! recorded in `schema_version`, so master and UI opening the same file at once apply each
//! migration exactly once.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::clock::unix_now;
use crate::migrations::{check_order, Migration};
use crate::StoreError;

/// In order. Append only: never edit one that has shipped.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_original",
        sql: include_str!("../../../../schema/sqlite/0001_original.sql"),
    },
    Migration {
        version: 2,
        name: "0002_agent_report",
        sql: include_str!("../../../../schema/sqlite/0002_agent_report.sql"),
    },
    Migration {
        version: 3,
        name: "0003_approval_audit",
        sql: include_str!("../../../../schema/sqlite/0003_approval_audit.sql"),
    },
    Migration {
        version: 4,
        name: "0004_agent_loop",
        sql: include_str!("../../../../schema/sqlite/0004_agent_loop.sql"),
    },
    Migration {
        version: 5,
        name: "0005_host_facts",
        sql: include_str!("../../../../schema/sqlite/0005_host_facts.sql"),
    },
    Migration {
        version: 6,
        name: "0006_task_ctime",
        sql: include_str!("../../../../schema/sqlite/0006_task_ctime.sql"),
    },
    Migration {
        version: 7,
        name: "0007_rollout_control",
        sql: include_str!("../../../../schema/sqlite/0007_rollout_control.sql"),
    },
    Migration {
        version: 8,
        name: "0008_pending_summary",
        sql: include_str!("../../../../schema/sqlite/0008_pending_summary.sql"),
    },
    Migration {
        version: 9,
        name: "0009_gate_generation",
        sql: include_str!("../../../../schema/sqlite/0009_gate_generation.sql"),
    },
];

/// The schema version this program writes.
pub(super) fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database at `path` up to [`latest_version`]. A database newer than this program
/// is refused rather than used with a schema it does not know.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let failed = |version: u32| {
        move |e: rusqlite::Error| StoreError::Migration {
            version,
            source: Box::new(StoreError::sqlite(
                format!("migrating {}", path.display()),
                e,
            )),
        }
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
           version    INTEGER PRIMARY KEY,
           applied_at INTEGER NOT NULL
         )",
    )
    .map_err(failed(0))?;
    check_order(MIGRATIONS).map_err(StoreError::Schema)?;
    for migration in MIGRATIONS {
        let version = migration.version;
        // IMMEDIATE: the write lock is held from the version check to the commit, so a second
        // process waits here (busy timeout) and then sees the migration already applied.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed(version))?;
        let current: Option<u32> = tx
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .optional()
            .map_err(failed(version))?
            .flatten();
        let current = current.unwrap_or(0);
        if current > latest_version() {
            return Err(StoreError::Schema(format!(
                "{}: database schema version {current} is newer than this program (which \
                 knows up to {})",
                path.display(),
                latest_version()
            )));
        }
        if current >= version {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(failed(version))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, unix_now()),
        )
        .map_err(failed(version))?;
        tx.commit().map_err(failed(version))?;
        tracing::info!(version, name = migration.name, path = %path.display(), "applied sqlite schema migration");
    }
    Ok(())
}

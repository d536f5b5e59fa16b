//! Schema import of the MySQL back end: the numbered files of `schema/mysql/`, embedded,
//! applied in order at connect under a server-wide lock, recorded in `masif_schema_version`.

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::sql::{db_error, doing};
use crate::migrations::{check_order, statements, Migration};
use crate::{Result, StoreError};

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../../../schema/mysql/", $name, ".sql")),
        }
    };
}

/// Every migration, in order. Append only: never edit one that has shipped.
pub(crate) const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_original"),
    migration!(2, "0002_task_primary_key"),
    migration!(3, "0003_agent_report"),
    migration!(4, "0004_approval_audit"),
    migration!(5, "0005_exact_names"),
    migration!(6, "0006_report_indexes"),
    migration!(7, "0007_ui_overview_index"),
    migration!(8, "0008_drop_redundant_task_keys"),
    migration!(9, "0009_agent_loop"),
    migration!(10, "0010_host_facts"),
    migration!(11, "0011_task_ctime"),
    migration!(12, "0012_rollout_control"),
    migration!(13, "0013_pending_summary"),
    migration!(14, "0014_agents_page_indexes"),
    migration!(15, "0015_pending_summary_slots"),
    migration!(16, "0016_gate_generation"),
];

/// Seconds a master waits for another master's migration before giving up.
const LOCK_WAIT_SECS: u32 = 300;

const LOCK_NAME: &str = "CONCAT('masif-schema-', MD5(DATABASE()))";

/// Applies the missing migrations. Run it on a connection of its own and close that after:
/// closing releases the lock even when a migration fails.
pub(super) async fn run(conn: &mut Conn) -> Result<()> {
    check_order(MIGRATIONS).map_err(StoreError::Schema)?;
    apply(conn).await
}

async fn apply(conn: &mut Conn) -> Result<()> {
    // Two masters starting at once take turns. Galera does not support GET_LOCK; there the
    // migrations' IF NOT EXISTS forms and the INSERT IGNORE of the version row keep a
    // concurrent run harmless.
    match conn
        .query_first::<Option<i64>, _>(format!("SELECT GET_LOCK({LOCK_NAME}, {LOCK_WAIT_SECS})"))
        .await
    {
        Ok(Some(Some(1))) => {}
        Ok(_) => {
            return Err(StoreError::Schema(format!(
                "another master has been migrating the schema for over {LOCK_WAIT_SECS} s"
            )))
        }
        Err(e) => tracing::warn!("schema migration runs without a lock: {e}"),
    }
    // A migration may copy or aggregate whole tables: the plan guard (`max_join_size`) is
    // for the daemons' reads, not for this connection.
    conn.query_drop("SET SESSION sql_big_selects = 1")
        .await
        .map_err(doing("lifting the plan guard for migrations"))?;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS masif_schema_version (
           version    INT unsigned PRIMARY KEY,
           name       VARCHAR(191) NOT NULL,
           applied_at BIGINT       NOT NULL
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .await
    .map_err(doing("creating masif_schema_version"))?;
    let applied: Vec<u32> = conn
        .query("SELECT version FROM masif_schema_version")
        .await
        .map_err(doing("reading masif_schema_version"))?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let failed = |e: mysql_async::Error| StoreError::Migration {
            version: m.version,
            source: Box::new(db_error(format!("applying {}", m.name), e)),
        };
        for stmt in statements(m.sql) {
            conn.query_drop(stmt).await.map_err(failed)?;
        }
        conn.exec_drop(
            "INSERT IGNORE INTO masif_schema_version (version, name, applied_at) \
             VALUES (?, ?, UNIX_TIMESTAMP())",
            (m.version, m.name),
        )
        .await
        .map_err(failed)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    if let Some(newer) = applied
        .iter()
        .max()
        .filter(|v| **v as usize > MIGRATIONS.len())
    {
        tracing::warn!(
            "database schema version {newer} is newer than this build's {}: a newer master \
             has run here",
            MIGRATIONS.len()
        );
    }
    conn.query_drop(format!("DO RELEASE_LOCK({LOCK_NAME})"))
        .await
        .map_err(doing("releasing the schema lock"))
}

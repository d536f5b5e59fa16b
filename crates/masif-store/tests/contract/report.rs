//! Contract tests of the report transaction, run against every back end.

use crate::{contract_test, TestStore};

async fn migrated_database_is_empty(db: TestStore) {
    for table in ["agent", "package", "task", "agent_report"] {
        assert_eq!(
            db.int(&format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}
contract_test!(migrated_database_is_empty);

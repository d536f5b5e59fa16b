//! The report transaction of the MySQL back end.

use async_trait::async_trait;
use masif_proto::{AgentName, TaskSet};

use super::MysqlStore;
use crate::{Reports, Result, StoreError};

#[async_trait]
impl Reports for MysqlStore {
    async fn report(&self, _agent: &AgentName, _tasks: &TaskSet) -> Result<TaskSet> {
        Err(StoreError::Invalid("not implemented yet".into()))
    }
}

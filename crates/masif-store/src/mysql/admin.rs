//! The `Admin` half of the MySQL back end (the UI's queries). Placeholder: the UI engineer
//! replaces this file entirely.

use async_trait::async_trait;
use masif_proto::AgentName;

use super::MysqlStore;
use crate::{
    Admin, AgentDetail, AgentSummary, Approval, ApprovalOutcome, ApprovalScope, AuditEntry,
    Listing, Page, PendingFilter, PendingOverview, Result, StoreError, TableCounts, TaskKey,
};

fn not_implemented<T>() -> Result<T> {
    Err(StoreError::Invalid("not implemented".into()))
}

#[async_trait]
impl Admin for MysqlStore {
    async fn pending_overview(
        &self,
        _filter: &PendingFilter,
        _page: Page,
    ) -> Result<PendingOverview> {
        not_implemented()
    }

    async fn agents_awaiting(&self, _keys: &[TaskKey]) -> Result<Vec<AgentSummary>> {
        not_implemented()
    }

    async fn agents(
        &self,
        _name_filter: Option<&str>,
        _page: Page,
    ) -> Result<Listing<AgentSummary>> {
        not_implemented()
    }

    async fn agent_detail(&self, _name: &AgentName) -> Result<Option<AgentDetail>> {
        not_implemented()
    }

    async fn approve(
        &self,
        _keys: &[TaskKey],
        _scope: &ApprovalScope,
        _user: &str,
    ) -> Result<ApprovalOutcome> {
        not_implemented()
    }

    async fn approvals(&self, _page: Page) -> Result<Listing<Approval>> {
        not_implemented()
    }

    async fn revoke(&self, _approval_id: u64, _user: &str) -> Result<bool> {
        not_implemented()
    }

    async fn counts(&self) -> Result<TableCounts> {
        not_implemented()
    }

    async fn reset(&self, _packages_and_agents: bool, _user: &str) -> Result<TableCounts> {
        not_implemented()
    }

    async fn audit_log(&self, _page: Page) -> Result<Listing<AuditEntry>> {
        not_implemented()
    }
}

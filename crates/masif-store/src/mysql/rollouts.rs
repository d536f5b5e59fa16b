//! Tags, windows, leases and roll-outs in the mysql back end.

use async_trait::async_trait;
use masif_proto::{AgentName, Tag};

use super::MysqlStore;
use crate::model::{Listing, Page};
use crate::rollouts::{
    AgentWindow, LeaseOutcome, Rollout, RolloutChange, RolloutSpec, Rollouts, TagInfo, TagSettings,
};
use crate::{Result, StoreError};

fn unbuilt<T>() -> Result<T> {
    Err(StoreError::Invalid(
        "roll-out control is not built yet".into(),
    ))
}

#[async_trait]
impl Rollouts for MysqlStore {
    async fn tags(&self, _now: i64) -> Result<Vec<TagInfo>> {
        unbuilt()
    }
    async fn set_tag(&self, _tag: &Tag, _settings: &TagSettings, _user: &str) -> Result<()> {
        unbuilt()
    }
    async fn tag_settings(&self, _tags: &[Tag]) -> Result<Vec<(Tag, TagSettings)>> {
        unbuilt()
    }
    async fn acquire_leases(
        &self,
        _agent: &AgentName,
        _limits: &[(Tag, u32)],
        _now: i64,
        _ttl_secs: u64,
    ) -> Result<LeaseOutcome> {
        unbuilt()
    }
    async fn renew_leases(&self, _agent: &AgentName, _now: i64, _ttl_secs: u64) -> Result<u64> {
        unbuilt()
    }
    async fn release_leases(&self, _agent: &AgentName) -> Result<u64> {
        unbuilt()
    }
    async fn agent_windows(
        &self,
        _agents: &[AgentName],
        _now: i64,
    ) -> Result<Vec<(AgentName, AgentWindow)>> {
        unbuilt()
    }
    async fn create_rollout(&self, _spec: &RolloutSpec, _user: &str, _now: i64) -> Result<Rollout> {
        unbuilt()
    }
    async fn promote_rollout(
        &self,
        _id: u64,
        _user: &str,
        _now: i64,
        _force: bool,
    ) -> Result<Rollout> {
        unbuilt()
    }
    async fn rollout(&self, _id: u64) -> Result<Option<Rollout>> {
        unbuilt()
    }
    async fn rollouts(&self, _page: Page) -> Result<Listing<Rollout>> {
        unbuilt()
    }
    async fn advance_rollouts(&self, _now: i64) -> Result<Vec<RolloutChange>> {
        unbuilt()
    }
}

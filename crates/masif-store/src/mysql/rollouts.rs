//! Tags, windows, leases and roll-outs in the MySQL back end. Writes run in one transaction
//! each through `MysqlStore::write` (retried on conflicts), bump the approval generation and
//! are audited; the rules (what is valid, when a lease is free, when a roll-out moves on) are
//! `rollout_core`'s. Lease takers lock the tags' `tag_setting` rows in name order, so masters
//! sharing the database grant at most the max in flight; roll-outs move by compare-and-set.

use async_trait::async_trait;
use masif_proto::{AgentName, Tag};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::changes::{audit, bump_gate_generation, placeholders, BATCH};
use super::rollout_steps::{advance_once, create_once, promote_once, rollout_row, tally};
use super::sql::{doing, tuple};
use super::MysqlStore;
use crate::audit::check_user;
use crate::backoff::Failure;
use crate::clock::unix_now;
use crate::model::{Listing, Page};
use crate::rollout_core::{self as core, LeaseCount, RolloutRow, Step, ROLLOUT_COLUMNS};
use crate::rollouts::{
    AgentWindow, LeaseOutcome, Rollout, RolloutChange, RolloutSpec, Rollouts, TagInfo, TagSettings,
};
use crate::{Result, StoreError};

#[async_trait]
impl Rollouts for MysqlStore {
    async fn tags(&self, now: i64) -> Result<Vec<TagInfo>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let carried: Vec<(String, u64)> = conn
                .query("SELECT tag, COUNT(*) FROM agent_tag GROUP BY tag")
                .await
                .map_err(doing("counting the agents of tags"))?;
            let settings = settings_of(&mut conn, None).await?;
            let leases: Vec<(String, u64)> = conn
                .exec(
                    "SELECT tag, COUNT(*) FROM tag_lease WHERE expires_at > ? GROUP BY tag",
                    (now,),
                )
                .await
                .map_err(doing("counting leases"))?;
            core::tag_infos(carried, settings, leases)
        })
        .await
    }

    async fn set_tag(&self, tag: &Tag, settings: &TagSettings, user: &str) -> Result<()> {
        check_user(user)?;
        core::check_settings(settings)?;
        let (tag, settings, user) = (tag.clone(), settings.clone(), user.to_owned());
        self.write("setting a tag", move |mut conn| {
            let (tag, settings, user) = (tag.clone(), settings.clone(), user.clone());
            Box::pin(async move {
                let r = set_tag_once(&mut conn, &tag, &settings, &user).await;
                (conn, r)
            })
        })
        .await
    }

    async fn tag_settings(&self, tags: &[Tag]) -> Result<Vec<(Tag, TagSettings)>> {
        self.read(async {
            if tags.is_empty() {
                return Ok(Vec::new());
            }
            let mut conn = self.conn().await?;
            settings_of(&mut conn, Some(tags))
                .await?
                .into_iter()
                .map(|(name, s)| Ok((core::stored_tag(&name)?, s)))
                .collect()
        })
        .await
    }

    async fn acquire_leases(
        &self,
        agent: &AgentName,
        limits: &[(Tag, u32)],
        now: i64,
        ttl_secs: u64,
    ) -> Result<LeaseOutcome> {
        let limits = core::lease_order(limits);
        let expires_at = core::expiry(now, ttl_secs);
        if limits.is_empty() {
            return Ok(LeaseOutcome::Granted { expires_at });
        }
        let agent = agent.clone();
        self.write("taking leases", move |mut conn| {
            let (agent, limits) = (agent.clone(), limits.clone());
            Box::pin(async move {
                let r = acquire_once(&mut conn, &agent, &limits, now, expires_at).await;
                (conn, r)
            })
        })
        .await
    }

    async fn renew_leases(&self, agent: &AgentName, now: i64, ttl_secs: u64) -> Result<u64> {
        let agent = agent.clone();
        let expires_at = core::expiry(now, ttl_secs);
        self.write("renewing leases", move |mut conn| {
            let agent = agent.clone();
            Box::pin(async move {
                let r = async {
                    conn.query_drop("START TRANSACTION").await?;
                    let held: u64 = conn
                        .exec_first(
                            "SELECT COUNT(*) FROM tag_lease l JOIN agent a ON a.id = l.agent
                              WHERE a.name = ? AND l.expires_at > ? FOR UPDATE",
                            (agent.as_str(), now),
                        )
                        .await?
                        .unwrap_or(0);
                    conn.exec_drop(
                        "UPDATE tag_lease l JOIN agent a ON a.id = l.agent SET l.expires_at = ?
                          WHERE a.name = ? AND l.expires_at > ?",
                        (expires_at, agent.as_str(), now),
                    )
                    .await?;
                    conn.query_drop("COMMIT").await?;
                    Ok(held)
                }
                .await;
                (conn, r)
            })
        })
        .await
    }

    async fn release_leases(&self, agent: &AgentName) -> Result<u64> {
        let agent = agent.clone();
        self.write("releasing leases", move |mut conn| {
            let agent = agent.clone();
            Box::pin(async move {
                let r = async {
                    conn.query_drop("START TRANSACTION").await?;
                    conn.exec_drop(
                        "DELETE l FROM tag_lease l JOIN agent a ON a.id = l.agent WHERE a.name = ?",
                        (agent.as_str(),),
                    )
                    .await?;
                    let released = conn.affected_rows();
                    if released > 0 {
                        bump_gate_generation(&mut conn).await?;
                    }
                    conn.query_drop("COMMIT").await?;
                    Ok(released)
                }
                .await;
                (conn, r)
            })
        })
        .await
    }

    async fn agent_windows(
        &self,
        agents: &[AgentName],
        now: i64,
    ) -> Result<Vec<(AgentName, AgentWindow)>> {
        self.read(async {
            let mut rows = Vec::new();
            if !agents.is_empty() {
                let mut conn = self.conn().await?;
                for chunk in agents.chunks(BATCH) {
                    let found: Vec<(String, String, String)> = conn
                        .exec(
                            format!(
                                "SELECT a.name, s.tag, s.windows
                                   FROM agent a JOIN agent_tag g ON g.agent = a.id
                                   JOIN tag_setting s ON s.tag = g.tag
                                  WHERE a.name IN {}",
                                placeholders(chunk.len())
                            ),
                            chunk
                                .iter()
                                .map(|a| Value::from(a.as_str()))
                                .collect::<Vec<_>>(),
                        )
                        .await
                        .map_err(doing("reading the windows of agents"))?;
                    rows.extend(found);
                }
            }
            Ok(core::agent_windows(agents, rows, now))
        })
        .await
    }

    async fn create_rollout(&self, spec: &RolloutSpec, user: &str, now: i64) -> Result<Rollout> {
        check_user(user)?;
        core::check_spec(spec)?;
        let (spec, user) = (spec.clone(), user.to_owned());
        let id = self
            .write("starting a roll-out", move |mut conn| {
                let (spec, user) = (spec.clone(), user.clone());
                Box::pin(async move {
                    let r = create_once(&mut conn, &spec, &user, now).await;
                    (conn, r)
                })
            })
            .await?;
        self.rollout(id)
            .await?
            .ok_or_else(|| StoreError::Vanished(format!("roll-out {id}")))
    }

    async fn promote_rollout(&self, id: u64, user: &str, now: i64, force: bool) -> Result<Rollout> {
        check_user(user)?;
        let user = user.to_owned();
        self.write("promoting a roll-out", move |mut conn| {
            let user = user.clone();
            Box::pin(async move {
                let r = promote_once(&mut conn, id, &user, now, force).await;
                (conn, r)
            })
        })
        .await?;
        self.rollout(id)
            .await?
            .ok_or_else(|| StoreError::Vanished(format!("roll-out {id}")))
    }

    async fn rollout(&self, id: u64) -> Result<Option<Rollout>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let row: Option<Row> = conn
                .exec_first(format!("{ROLLOUT_COLUMNS} WHERE id = ?"), (id,))
                .await
                .map_err(doing("reading a roll-out"))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut rollout = rollout_row(row)?.parse()?;
            rollout.ring = tally(&mut conn, &rollout).await?.progress();
            Ok(Some(rollout))
        })
        .await
    }

    async fn rollouts(&self, page: Page) -> Result<Listing<Rollout>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let total = conn
                .query_first::<u64, _>("SELECT COUNT(*) FROM rollout")
                .await
                .map_err(doing("counting roll-outs"))?
                .unwrap_or(0);
            let rows: Vec<Row> = conn
                .query(format!(
                    "{ROLLOUT_COLUMNS} ORDER BY id DESC LIMIT {} OFFSET {}",
                    page.limit, page.offset
                ))
                .await
                .map_err(doing("listing roll-outs"))?;
            let mut listed = Vec::with_capacity(rows.len());
            for row in rows {
                let mut rollout = rollout_row(row)?.parse()?;
                rollout.ring = tally(&mut conn, &rollout).await?.progress();
                listed.push(rollout);
            }
            Ok(Listing {
                rows: listed,
                total,
            })
        })
        .await
    }

    async fn advance_rollouts(&self, now: i64) -> Result<Vec<RolloutChange>> {
        self.read(async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = conn
                .query(format!(
                    "{ROLLOUT_COLUMNS} WHERE state = 'running' ORDER BY id"
                ))
                .await
                .map_err(doing("reading the running roll-outs"))?;
            let mut due = Vec::new();
            for row in rows {
                let rollout = match rollout_row(row).and_then(RolloutRow::parse) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable roll-out");
                        continue;
                    }
                };
                let tally = tally(&mut conn, &rollout).await?;
                match core::next_step(&rollout, &tally, now) {
                    Step::Wait => {}
                    step => due.push((rollout, tally, step)),
                }
            }
            drop(conn);
            let mut changes = Vec::new();
            for (rollout, tally, step) in due {
                let made = self
                    .write("advancing a roll-out", move |mut conn| {
                        let (rollout, tally, step) = (rollout.clone(), tally.clone(), step.clone());
                        Box::pin(async move {
                            let r = advance_once(&mut conn, &rollout, &tally, &step, now).await;
                            (conn, r)
                        })
                    })
                    .await?;
                changes.extend(made);
            }
            Ok(changes)
        })
        .await
    }
}

/// Stored settings, of `tags` or of every tag, by name.
async fn settings_of(conn: &mut Conn, tags: Option<&[Tag]>) -> Result<Vec<(String, TagSettings)>> {
    let mut rows: Vec<(String, Option<i64>, String)> = Vec::new();
    match tags {
        None => {
            rows = conn
                .query("SELECT tag, max_in_flight, windows FROM tag_setting ORDER BY tag")
                .await
                .map_err(doing("reading tag settings"))?;
        }
        Some(tags) => {
            for chunk in tags.chunks(BATCH) {
                let found: Vec<(String, Option<i64>, String)> = conn
                    .exec(
                        format!(
                            "SELECT tag, max_in_flight, windows FROM tag_setting
                              WHERE tag IN {} ORDER BY tag",
                            placeholders(chunk.len())
                        ),
                        chunk
                            .iter()
                            .map(|t| Value::from(t.as_str()))
                            .collect::<Vec<_>>(),
                    )
                    .await
                    .map_err(doing("reading tag settings"))?;
                rows.extend(found);
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|(tag, k, windows)| {
            let settings = core::settings_from_row(&tag, k, &windows);
            (tag, settings)
        })
        .collect())
}

async fn set_tag_once(
    conn: &mut Conn,
    tag: &Tag,
    settings: &TagSettings,
    user: &str,
) -> Result<(), Failure> {
    conn.query_drop("START TRANSACTION").await?;
    if core::settings_empty(settings) {
        conn.exec_drop("DELETE FROM tag_setting WHERE tag = ?", (tag.as_str(),))
            .await?;
    } else {
        conn.exec_drop(
            "INSERT INTO tag_setting (tag, max_in_flight, windows) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE max_in_flight = VALUES(max_in_flight),
                                     windows = VALUES(windows)",
            (
                tag.as_str(),
                settings.max_in_flight,
                core::windows_to_text(&settings.windows),
            ),
        )
        .await?;
    }
    let detail = core::describe_settings(tag, settings);
    audit(conn, user, "set tag", &detail, unix_now()).await?;
    bump_gate_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(())
}

/// One attempt of taking leases of `limits` (in name order) until `expires_at`.
async fn acquire_once(
    conn: &mut Conn,
    agent: &AgentName,
    limits: &[(Tag, u32)],
    now: i64,
    expires_at: i64,
) -> Result<LeaseOutcome, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let names: Vec<Value> = limits
        .iter()
        .map(|(t, _)| Value::from(t.as_str()))
        .collect();
    // Masters taking leases of the same tags queue here, in name order (no cycles).
    conn.exec_drop(
        format!(
            "SELECT tag FROM tag_setting WHERE tag IN {} ORDER BY tag FOR UPDATE",
            placeholders(names.len())
        ),
        names.clone(),
    )
    .await?;
    let agent_id: Option<u64> = conn
        .exec_first("SELECT id FROM agent WHERE name = ?", (agent.as_str(),))
        .await?;
    let Some(agent_id) = agent_id else {
        conn.query_drop("ROLLBACK").await?;
        return Err(StoreError::Invalid(format!("unknown agent {agent}")).into());
    };
    // Locking reads see what other masters committed, whatever the isolation level.
    let mut params = vec![Value::from(agent_id), Value::from(now)];
    params.extend(names.iter().cloned());
    let live: Vec<(String, u64, i64, i64)> = conn
        .exec(
            format!(
                "SELECT tag, COUNT(*), MAX(agent = ?), MIN(expires_at) FROM tag_lease
                  WHERE expires_at > ? AND tag IN {} GROUP BY tag FOR UPDATE",
                placeholders(names.len())
            ),
            params,
        )
        .await?;
    let counts: Vec<(Tag, LeaseCount)> = limits
        .iter()
        .map(|(tag, k)| {
            let found = live.iter().find(|(t, ..)| t == tag.as_str());
            let count = LeaseCount {
                limit: *k,
                live: found.map_or(0, |f| f.1),
                own: found.is_some_and(|f| f.2 != 0),
                earliest: found.map(|f| f.3),
            };
            (tag.clone(), count)
        })
        .collect();
    if let Some(busy) = core::lease_refusal(&counts, now) {
        conn.query_drop("ROLLBACK").await?;
        return Ok(busy);
    }
    let mut params = vec![Value::from(now)];
    params.extend(names.iter().cloned());
    conn.exec_drop(
        format!(
            "DELETE FROM tag_lease WHERE expires_at <= ? AND tag IN {}",
            placeholders(names.len())
        ),
        params,
    )
    .await?;
    let rows: Vec<String> = limits
        .iter()
        .map(|(tag, _)| {
            tuple([
                Value::from(tag.as_str()),
                agent_id.into(),
                expires_at.into(),
            ])
        })
        .collect();
    conn.query_drop(format!(
        "INSERT INTO tag_lease (tag, agent, expires_at) VALUES {}
         ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)",
        rows.join(", ")
    ))
    .await?;
    conn.query_drop("COMMIT").await?;
    Ok(LeaseOutcome::Granted { expires_at })
}

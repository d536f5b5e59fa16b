//! Tags, windows, leases and roll-outs in the MySQL back end. Writes run in one transaction
//! each through `MysqlStore::write` (retried on conflicts), bump the approval generation and
//! are audited; the rules (what is valid, when a lease is free, when a roll-out moves on) are
//! `rollout_core`'s. Lease takers lock the tags' `tag_setting` rows in name order, so masters
//! sharing the database grant at most the max in flight; roll-outs move by compare-and-set.

use async_trait::async_trait;
use masif_proto::{AgentName, Tag};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::changes::{approve_in, audit, bump_generation, placeholders, BATCH};
use super::sql::{doing, tuple};
use super::MysqlStore;
use crate::audit::check_user;
use crate::backoff::Failure;
use crate::clock::unix_now;
use crate::model::{ApprovalScope, ApprovalTask, Listing, Page};
use crate::rollout_core::{
    self as core, LeaseCount, RolloutRow, Step, Tally, ROLLOUT_COLUMNS, ROLLOUT_USER,
};
use crate::rollouts::{
    AgentWindow, LeaseOutcome, Rollout, RolloutChange, RolloutSpec, RolloutState, Rollouts,
    TagInfo, TagSettings,
};
use crate::{Result, StoreError};

#[async_trait]
impl Rollouts for MysqlStore {
    async fn tags(&self, now: i64) -> Result<Vec<TagInfo>> {
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
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        settings_of(&mut conn, Some(tags))
            .await?
            .into_iter()
            .map(|(name, s)| Ok((core::stored_tag(&name)?, s)))
            .collect()
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
                        bump_generation(&mut conn).await?;
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
    }

    async fn rollouts(&self, page: Page) -> Result<Listing<Rollout>> {
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
    }

    async fn advance_rollouts(&self, now: i64) -> Result<Vec<RolloutChange>> {
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
    bump_generation(conn).await?;
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

/// One attempt of creating a roll-out and approving its first ring; returns its id.
async fn create_once(
    conn: &mut Conn,
    spec: &RolloutSpec,
    user: &str,
    now: i64,
) -> Result<u64, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let tasks = ApprovalTask::with_configure_steps(&spec.tasks);
    approve_in(
        conn,
        &tasks,
        &ApprovalScope::Tag(spec.rings[0].clone()),
        user,
        now,
    )
    .await?;
    let state = if spec.rings.len() == 1 {
        RolloutState::Completed
    } else {
        RolloutState::Running
    };
    conn.exec_drop(
        "INSERT INTO rollout (tasks, rings, soak_secs, max_failure_percent, state, current_ring,
                              ring_started_at, halted_reason, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, 0, ?, NULL, ?, ?)",
        (
            core::tasks_to_text(&spec.tasks),
            core::rings_to_text(&spec.rings),
            spec.soak_secs,
            spec.max_failure_percent,
            state.as_str(),
            now,
            user,
            now,
        ),
    )
    .await?;
    let id = conn.last_insert_id().unwrap_or(0);
    audit(
        conn,
        user,
        "start rollout",
        &core::describe_start(id, spec),
        now,
    )
    .await?;
    bump_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(id)
}

/// One attempt of a promotion by hand.
async fn promote_once(
    conn: &mut Conn,
    id: u64,
    user: &str,
    now: i64,
    force: bool,
) -> Result<(), Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let row: Option<Row> = conn
        .exec_first(format!("{ROLLOUT_COLUMNS} WHERE id = ? FOR UPDATE"), (id,))
        .await?;
    let Some(row) = row else {
        conn.query_drop("ROLLBACK").await?;
        return Err(StoreError::Invalid(format!("no roll-out {id}")).into());
    };
    let rollout = rollout_row(row)?.parse()?;
    let forced = match core::check_promotion(&rollout, force) {
        Ok(forced) => forced,
        Err(e) => {
            conn.query_drop("ROLLBACK").await?;
            return Err(e.into());
        }
    };
    let next = rollout.current_ring + 1;
    approve_ring(conn, &rollout, next, user, now).await?;
    let detail = core::describe_promote(&rollout, next, forced.as_deref());
    audit(conn, user, "promote rollout", &detail, now).await?;
    bump_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(())
}

/// Approves ring `ring` for its tag's agents and moves the roll-out there (completed if it is
/// the last); a tag without agents is `Invalid`.
async fn approve_ring(
    conn: &mut Conn,
    rollout: &Rollout,
    ring: usize,
    user: &str,
    now: i64,
) -> Result<RolloutState, Failure> {
    let Some(tag) = rollout.rings.get(ring) else {
        return Err(StoreError::Invalid(format!(
            "roll-out {} has no ring {}",
            rollout.id,
            ring + 1
        ))
        .into());
    };
    let tasks = ApprovalTask::with_configure_steps(&rollout.tasks);
    approve_in(conn, &tasks, &ApprovalScope::Tag(tag.clone()), user, now).await?;
    let state = core::state_after(rollout, ring);
    conn.exec_drop(
        "UPDATE rollout SET current_ring = ?, ring_started_at = ?, state = ?, halted_reason = NULL
          WHERE id = ?",
        (ring as u64, now, state.as_str(), rollout.id),
    )
    .await?;
    Ok(state)
}

/// One attempt of `step` for a roll-out read as `rollout`: made only if the roll-out is still
/// running at the same ring (compare-and-set).
async fn advance_once(
    conn: &mut Conn,
    rollout: &Rollout,
    tally: &Tally,
    step: &Step,
    now: i64,
) -> Result<Vec<RolloutChange>, Failure> {
    conn.query_drop("START TRANSACTION").await?;
    let current: Option<(String, u64)> = conn
        .exec_first(
            "SELECT state, current_ring FROM rollout WHERE id = ? FOR UPDATE",
            (rollout.id,),
        )
        .await?;
    if current != Some(("running".to_owned(), rollout.current_ring as u64)) {
        conn.query_drop("ROLLBACK").await?;
        return Ok(Vec::new());
    }
    let id = rollout.id;
    let mut changes = Vec::new();
    let next = rollout.current_ring + 1;
    let halt = match step {
        Step::Halt(reason) => Some(reason.clone()),
        Step::Promote => {
            let agents: u64 = conn
                .exec_first(core::RING_AGENTS, (rollout.rings[next].as_str(),))
                .await?
                .unwrap_or(0);
            (agents == 0).then(|| core::empty_ring_reason(rollout, next))
        }
        Step::Complete | Step::Wait => None,
    };
    if let Some(reason) = halt {
        conn.exec_drop(
            "UPDATE rollout SET state = 'halted', halted_reason = ? WHERE id = ?",
            (reason.as_str(), id),
        )
        .await?;
        let detail = format!("roll-out {id} halted: {reason}");
        audit(conn, ROLLOUT_USER, "halt rollout", &detail, now).await?;
        changes.push(RolloutChange::Halted { id, reason });
    } else if *step == Step::Promote {
        let state = approve_ring(conn, rollout, next, ROLLOUT_USER, now).await?;
        let detail = format!(
            "{} after soaking {} s: {} of {} agents succeeded",
            core::describe_promote(rollout, next, None),
            rollout.soak_secs.unwrap_or(0),
            tally.succeeded,
            tally.agents
        );
        audit(conn, ROLLOUT_USER, "promote rollout", &detail, now).await?;
        changes.push(RolloutChange::Promoted {
            id,
            ring: rollout.rings[next].clone(),
        });
        if state == RolloutState::Completed {
            changes.push(RolloutChange::Completed { id });
        }
    } else if *step == Step::Complete {
        conn.exec_drop("UPDATE rollout SET state = 'completed' WHERE id = ?", (id,))
            .await?;
        let detail = format!("roll-out {id} completed: its last ring is approved");
        audit(conn, ROLLOUT_USER, "complete rollout", &detail, now).await?;
        changes.push(RolloutChange::Completed { id });
    }
    bump_generation(conn).await?;
    conn.query_drop("COMMIT").await?;
    Ok(changes)
}

/// The current ring's tally of `rollout`.
async fn tally(conn: &mut Conn, rollout: &Rollout) -> Result<Tally> {
    let tag = rollout.rings[rollout.current_ring].as_str();
    let agents: u64 = conn
        .exec_first(core::RING_AGENTS, (tag,))
        .await
        .map_err(doing("counting a ring's agents"))?
        .unwrap_or(0);
    let packages = core::rollout_packages(rollout);
    let mut params = vec![Value::from(tag), Value::from(rollout.ring_started_at)];
    params.extend(packages.iter().map(|p| Value::from(p.as_str())));
    let ran: Vec<(String, i64, i64)> = conn
        .exec(
            format!(
                "{}{} GROUP BY a.name",
                core::RING_RUNS,
                placeholders(packages.len())
            ),
            params,
        )
        .await
        .map_err(doing("reading a ring's runs"))?;
    Ok(Tally::of(
        agents,
        ran.into_iter()
            .map(|(name, failed, succeeded)| (name, failed != 0, succeeded != 0))
            .collect(),
    ))
}

/// A row of [`ROLLOUT_COLUMNS`].
fn rollout_row(row: Row) -> Result<RolloutRow> {
    let id: Option<u64> = row.get(0);
    let unreadable = || StoreError::Unreadable(format!("roll-out row {id:?}"));
    Ok(RolloutRow {
        id: id.ok_or_else(unreadable)?,
        tasks: row.get(1).ok_or_else(unreadable)?,
        rings: row.get(2).ok_or_else(unreadable)?,
        soak_secs: row.get::<Option<u64>, _>(3).ok_or_else(unreadable)?,
        max_failure_percent: row.get(4).ok_or_else(unreadable)?,
        state: row.get(5).ok_or_else(unreadable)?,
        current_ring: row.get(6).ok_or_else(unreadable)?,
        ring_started_at: row.get(7).ok_or_else(unreadable)?,
        halted_reason: row.get::<Option<String>, _>(8).ok_or_else(unreadable)?,
        created_by: row.get(9).ok_or_else(unreadable)?,
        created_at: row.get(10).ok_or_else(unreadable)?,
    })
}

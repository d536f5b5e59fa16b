//! Tags, windows, leases and roll-outs in the SQLite back end. Writes run in one `BEGIN
//! IMMEDIATE` transaction each (the file's single writer, so leases and roll-out steps of
//! several processes never interleave), bump the approval generation and are audited; the
//! rules are `rollout_core`'s.

use async_trait::async_trait;
use masif_proto::{AgentName, Tag};
use rusqlite::{params_from_iter, OptionalExtension, Row, Transaction};

use super::admin::{approve_in, audit_at, bump_gate_generation};
use super::rows::{to_i64, to_u64};
use super::SqliteStore;
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

/// `(?, ?, …)` with `n` placeholders.
fn placeholders(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

#[async_trait]
impl Rollouts for SqliteStore {
    async fn tags(&self, now: i64) -> Result<Vec<TagInfo>> {
        self.read("reading tags", move |tx| {
            let carried = tx
                .prepare_cached("SELECT tag, COUNT(*) FROM agent_tag GROUP BY tag")?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?))))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let settings = settings_of(tx, None)?;
            let leases = tx
                .prepare_cached(
                    "SELECT tag, COUNT(*) FROM tag_lease WHERE expires_at > ?1 GROUP BY tag",
                )?
                .query_map([now], |r| Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?))))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(core::tag_infos(carried, settings, leases)?)
        })
        .await
    }

    async fn set_tag(&self, tag: &Tag, settings: &TagSettings, user: &str) -> Result<()> {
        check_user(user)?;
        core::check_settings(settings)?;
        let (tag, settings, user) = (tag.clone(), settings.clone(), user.to_owned());
        self.write("setting a tag", move |tx| {
            if core::settings_empty(&settings) {
                tx.execute("DELETE FROM tag_setting WHERE tag = ?1", [tag.as_str()])?;
            } else {
                tx.execute(
                    "INSERT INTO tag_setting (tag, max_in_flight, windows) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tag) DO UPDATE SET max_in_flight = excluded.max_in_flight,
                                                     windows = excluded.windows",
                    (
                        tag.as_str(),
                        settings.max_in_flight,
                        core::windows_to_text(&settings.windows),
                    ),
                )?;
            }
            let detail = core::describe_settings(&tag, &settings);
            audit_at(tx, &user, "set tag", &detail, unix_now())?;
            bump_gate_generation(tx)?;
            Ok(())
        })
        .await
    }

    async fn tag_settings(&self, tags: &[Tag]) -> Result<Vec<(Tag, TagSettings)>> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let tags = tags.to_vec();
        self.read("reading tag settings", move |tx| {
            settings_of(tx, Some(&tags))?
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
        self.write("taking leases", move |tx| {
            let Some(agent_id) = super::rows::agent_id(tx, agent.as_str())? else {
                return Err(StoreError::Invalid(format!("unknown agent {agent}")).into());
            };
            let mut live = tx.prepare_cached(
                "SELECT COUNT(*), COALESCE(MAX(agent = ?2), 0), MIN(expires_at) FROM tag_lease
                  WHERE tag = ?1 AND expires_at > ?3",
            )?;
            let mut counts = Vec::with_capacity(limits.len());
            for (tag, k) in &limits {
                let count = live.query_row((tag.as_str(), agent_id, now), |r| {
                    Ok(LeaseCount {
                        limit: *k,
                        live: to_u64(r.get(0)?),
                        own: r.get::<_, i64>(1)? != 0,
                        earliest: r.get(2)?,
                    })
                })?;
                counts.push((tag.clone(), count));
            }
            if let Some(busy) = core::lease_refusal(&counts, now) {
                return Ok(busy);
            }
            for (tag, _) in &limits {
                tx.prepare_cached("DELETE FROM tag_lease WHERE tag = ?1 AND expires_at <= ?2")?
                    .execute((tag.as_str(), now))?;
                tx.prepare_cached(
                    "INSERT INTO tag_lease (tag, agent, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tag, agent) DO UPDATE SET expires_at = excluded.expires_at",
                )?
                .execute((tag.as_str(), agent_id, expires_at))?;
            }
            Ok(LeaseOutcome::Granted { expires_at })
        })
        .await
    }

    async fn renew_leases(&self, agent: &AgentName, now: i64, ttl_secs: u64) -> Result<u64> {
        let agent = agent.clone();
        let expires_at = core::expiry(now, ttl_secs);
        self.write("renewing leases", move |tx| {
            let renewed = tx.execute(
                "UPDATE tag_lease SET expires_at = ?1
                  WHERE agent = (SELECT id FROM agent WHERE name = ?2) AND expires_at > ?3",
                (expires_at, agent.as_str(), now),
            )?;
            Ok(renewed as u64)
        })
        .await
    }

    async fn release_leases(&self, agent: &AgentName) -> Result<u64> {
        let agent = agent.clone();
        self.write("releasing leases", move |tx| {
            let released = tx.execute(
                "DELETE FROM tag_lease WHERE agent = (SELECT id FROM agent WHERE name = ?1)",
                [agent.as_str()],
            )?;
            if released > 0 {
                bump_gate_generation(tx)?;
            }
            Ok(released as u64)
        })
        .await
    }

    async fn agent_windows(
        &self,
        agents: &[AgentName],
        now: i64,
    ) -> Result<Vec<(AgentName, AgentWindow)>> {
        let agents = agents.to_vec();
        self.read("reading the windows of agents", move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT a.name, s.tag, s.windows
                   FROM agent a JOIN agent_tag g ON g.agent = a.id
                   JOIN tag_setting s ON s.tag = g.tag
                  WHERE a.name = ?1",
            )?;
            let mut rows = Vec::new();
            for agent in &agents {
                let found =
                    stmt.query_map([agent.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                for row in found {
                    rows.push(row?);
                }
            }
            Ok(core::agent_windows(&agents, rows, now))
        })
        .await
    }

    async fn create_rollout(&self, spec: &RolloutSpec, user: &str, now: i64) -> Result<Rollout> {
        check_user(user)?;
        core::check_spec(spec)?;
        let (spec, user) = (spec.clone(), user.to_owned());
        let id = self
            .write("starting a roll-out", move |tx| {
                let tasks = ApprovalTask::with_configure_steps(&spec.tasks);
                let first = ApprovalScope::Tag(spec.rings[0].clone());
                approve_in(tx, &tasks, &first, &user, now)?;
                let state = if spec.rings.len() == 1 {
                    RolloutState::Completed
                } else {
                    RolloutState::Running
                };
                tx.execute(
                    "INSERT INTO rollout (tasks, rings, soak_secs, max_failure_percent, state,
                                          current_ring, ring_started_at, halted_reason,
                                          created_by, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, NULL, ?7, ?6)",
                    (
                        core::tasks_to_text(&spec.tasks),
                        core::rings_to_text(&spec.rings),
                        spec.soak_secs.map(to_i64),
                        spec.max_failure_percent,
                        state.as_str(),
                        now,
                        &user,
                    ),
                )?;
                let id = to_u64(tx.last_insert_rowid());
                audit_at(
                    tx,
                    &user,
                    "start rollout",
                    &core::describe_start(id, &spec),
                    now,
                )?;
                bump_gate_generation(tx)?;
                Ok(id)
            })
            .await?;
        self.rollout(id)
            .await?
            .ok_or_else(|| StoreError::Vanished(format!("roll-out {id}")))
    }

    async fn promote_rollout(&self, id: u64, user: &str, now: i64, force: bool) -> Result<Rollout> {
        check_user(user)?;
        let user = user.to_owned();
        self.write("promoting a roll-out", move |tx| {
            let Some(rollout) = read_rollout(tx, id)? else {
                return Err(StoreError::Invalid(format!("no roll-out {id}")).into());
            };
            let forced = core::check_promotion(&rollout, force)?;
            let next = rollout.current_ring + 1;
            approve_ring(tx, &rollout, next, &user, now)?;
            let detail = core::describe_promote(&rollout, next, forced.as_deref());
            audit_at(tx, &user, "promote rollout", &detail, now)?;
            bump_gate_generation(tx)?;
            Ok(())
        })
        .await?;
        self.rollout(id)
            .await?
            .ok_or_else(|| StoreError::Vanished(format!("roll-out {id}")))
    }

    async fn rollout(&self, id: u64) -> Result<Option<Rollout>> {
        self.read("reading a roll-out", move |tx| {
            let Some(mut rollout) = read_rollout(tx, id)? else {
                return Ok(None);
            };
            rollout.ring = tally(tx, &rollout)?.progress();
            Ok(Some(rollout))
        })
        .await
    }

    async fn rollouts(&self, page: Page) -> Result<Listing<Rollout>> {
        self.read("listing roll-outs", move |tx| {
            let total: i64 = tx.query_row("SELECT COUNT(*) FROM rollout", [], |r| r.get(0))?;
            let rows = tx
                .prepare_cached(&format!(
                    "{ROLLOUT_COLUMNS} ORDER BY id DESC LIMIT ?1 OFFSET ?2"
                ))?
                .query_map((to_i64(page.limit), to_i64(page.offset)), rollout_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut listed = Vec::with_capacity(rows.len());
            for row in rows {
                let mut rollout = row.parse()?;
                rollout.ring = tally(tx, &rollout)?.progress();
                listed.push(rollout);
            }
            Ok(Listing {
                rows: listed,
                total: to_u64(total),
            })
        })
        .await
    }

    async fn advance_rollouts(&self, now: i64) -> Result<Vec<RolloutChange>> {
        self.write("advancing roll-outs", move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "{ROLLOUT_COLUMNS} WHERE state = 'running' ORDER BY id"
                ))?
                .query_map([], rollout_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut changes = Vec::new();
            for row in rows {
                let rollout = match row.parse() {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable roll-out");
                        continue;
                    }
                };
                let tally = tally(tx, &rollout)?;
                let step = core::next_step(&rollout, &tally, now);
                changes.extend(advance(tx, &rollout, &tally, &step, now)?);
            }
            if !changes.is_empty() {
                bump_gate_generation(tx)?;
            }
            Ok(changes)
        })
        .await
    }
}

/// Stored settings, of `tags` or of every tag, by name.
fn settings_of(
    tx: &Transaction<'_>,
    tags: Option<&[Tag]>,
) -> rusqlite::Result<Vec<(String, TagSettings)>> {
    let map = |r: &Row<'_>| {
        let tag: String = r.get(0)?;
        let settings = core::settings_from_row(&tag, r.get(1)?, &r.get::<_, String>(2)?);
        Ok((tag, settings))
    };
    match tags {
        None => tx
            .prepare_cached("SELECT tag, max_in_flight, windows FROM tag_setting ORDER BY tag")?
            .query_map([], map)?
            .collect(),
        Some(tags) => {
            let mut stmt = tx.prepare_cached(
                "SELECT tag, max_in_flight, windows FROM tag_setting WHERE tag = ?1",
            )?;
            let mut found = Vec::new();
            let mut names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                if let Some(row) = stmt.query_row([name], map).optional()? {
                    found.push(row);
                }
            }
            Ok(found)
        }
    }
}

fn read_rollout(tx: &Transaction<'_>, id: u64) -> Result<Option<Rollout>, Failure> {
    let row = tx
        .prepare_cached(&format!("{ROLLOUT_COLUMNS} WHERE id = ?1"))?
        .query_row([to_i64(id)], rollout_row)
        .optional()?;
    Ok(row.map(RolloutRow::parse).transpose()?)
}

/// Approves ring `ring` for its tag's agents and moves the roll-out there (completed if it is
/// the last); a tag without agents is `Invalid`.
fn approve_ring(
    tx: &Transaction<'_>,
    rollout: &Rollout,
    ring: usize,
    user: &str,
    now: i64,
) -> Result<RolloutState, Failure> {
    let Some(tag) = rollout.rings.get(ring) else {
        let why = format!("roll-out {} has no ring {}", rollout.id, ring + 1);
        return Err(StoreError::Invalid(why).into());
    };
    let tasks = ApprovalTask::with_configure_steps(&rollout.tasks);
    approve_in(tx, &tasks, &ApprovalScope::Tag(tag.clone()), user, now)?;
    let state = core::state_after(rollout, ring);
    tx.execute(
        "UPDATE rollout SET current_ring = ?1, ring_started_at = ?2, state = ?3,
                            halted_reason = NULL
          WHERE id = ?4",
        (ring as i64, now, state.as_str(), to_i64(rollout.id)),
    )?;
    Ok(state)
}

/// Takes `step` for a running roll-out (the caller holds the write lock: nobody else moved it).
fn advance(
    tx: &Transaction<'_>,
    rollout: &Rollout,
    tally: &Tally,
    step: &Step,
    now: i64,
) -> Result<Vec<RolloutChange>, Failure> {
    let id = rollout.id;
    let next = rollout.current_ring + 1;
    let halt = match step {
        Step::Halt(reason) => Some(reason.clone()),
        Step::Promote => {
            let agents: i64 =
                tx.query_row(core::RING_AGENTS, [rollout.rings[next].as_str()], |r| {
                    r.get(0)
                })?;
            (agents == 0).then(|| core::empty_ring_reason(rollout, next))
        }
        Step::Complete | Step::Wait => None,
    };
    let mut changes = Vec::new();
    if let Some(reason) = halt {
        tx.execute(
            "UPDATE rollout SET state = 'halted', halted_reason = ?1 WHERE id = ?2",
            (reason.as_str(), to_i64(id)),
        )?;
        let detail = format!("roll-out {id} halted: {reason}");
        audit_at(tx, ROLLOUT_USER, "halt rollout", &detail, now)?;
        changes.push(RolloutChange::Halted { id, reason });
    } else if *step == Step::Promote {
        let state = approve_ring(tx, rollout, next, ROLLOUT_USER, now)?;
        let detail = format!(
            "{} after soaking {} s: {} of {} agents succeeded",
            core::describe_promote(rollout, next, None),
            rollout.soak_secs.unwrap_or(0),
            tally.succeeded,
            tally.agents
        );
        audit_at(tx, ROLLOUT_USER, "promote rollout", &detail, now)?;
        changes.push(RolloutChange::Promoted {
            id,
            ring: rollout.rings[next].clone(),
        });
        if state == RolloutState::Completed {
            changes.push(RolloutChange::Completed { id });
        }
    } else if *step == Step::Complete {
        tx.execute(
            "UPDATE rollout SET state = 'completed' WHERE id = ?1",
            [to_i64(id)],
        )?;
        let detail = format!("roll-out {id} completed: its last ring is approved");
        audit_at(tx, ROLLOUT_USER, "complete rollout", &detail, now)?;
        changes.push(RolloutChange::Completed { id });
    }
    Ok(changes)
}

/// The current ring's tally of `rollout`.
fn tally(tx: &Transaction<'_>, rollout: &Rollout) -> rusqlite::Result<Tally> {
    let tag = rollout.rings[rollout.current_ring].as_str();
    let agents: i64 = tx.query_row(core::RING_AGENTS, [tag], |r| r.get(0))?;
    let packages = core::rollout_packages(rollout);
    let mut params: Vec<rusqlite::types::Value> =
        vec![tag.to_owned().into(), rollout.ring_started_at.into()];
    params.extend(packages.into_iter().map(rusqlite::types::Value::from));
    let count = params.len() - 2;
    let ran = tx
        .prepare(&format!(
            "{}{} GROUP BY a.name",
            core::RING_RUNS,
            placeholders(count)
        ))?
        .query_map(params_from_iter(params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? != 0,
                r.get::<_, i64>(2)? != 0,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Tally::of(to_u64(agents), ran))
}

/// A row of [`ROLLOUT_COLUMNS`].
fn rollout_row(r: &Row<'_>) -> rusqlite::Result<RolloutRow> {
    Ok(RolloutRow {
        id: to_u64(r.get(0)?),
        tasks: r.get(1)?,
        rings: r.get(2)?,
        soak_secs: r.get::<_, Option<i64>>(3)?.map(to_u64),
        max_failure_percent: r.get(4)?,
        state: r.get(5)?,
        current_ring: to_u64(r.get(6)?),
        ring_started_at: r.get(7)?,
        halted_reason: r.get(8)?,
        created_by: r.get(9)?,
        created_at: r.get(10)?,
    })
}

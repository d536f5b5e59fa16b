-- Roll-out control (issue 16): the same tables and meaning as
-- schema/mysql/0012_rollout_control.sql. Safe to re-run.
-- agent_tag: the tags of each agent's latest v2 facts.
CREATE TABLE IF NOT EXISTS agent_tag (
  agent INTEGER NOT NULL,
  tag   TEXT    NOT NULL CHECK (length(tag) BETWEEN 1 AND 64),
  PRIMARY KEY (agent, tag)
);

CREATE INDEX IF NOT EXISTS agent_tag_tag ON agent_tag (tag, agent);

-- tag_setting: a tag's max in flight (NULL: none) and windows (JSON list).
CREATE TABLE IF NOT EXISTS tag_setting (
  tag           TEXT PRIMARY KEY CHECK (length(tag) BETWEEN 1 AND 64),
  max_in_flight INTEGER CHECK (max_in_flight >= 1),
  windows       TEXT NOT NULL
);

-- tag_lease: an agent upgrading under a tag's max in flight until expires_at.
CREATE TABLE IF NOT EXISTS tag_lease (
  tag        TEXT    NOT NULL,
  agent      INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (tag, agent)
);

CREATE INDEX IF NOT EXISTS tag_lease_agent ON tag_lease (agent);

-- rollout: staged roll-outs (tasks and rings as JSON lists).
CREATE TABLE IF NOT EXISTS rollout (
  id                  INTEGER PRIMARY KEY AUTOINCREMENT,
  tasks               TEXT    NOT NULL,
  rings               TEXT    NOT NULL,
  soak_secs           INTEGER CHECK (soak_secs >= 0),
  max_failure_percent INTEGER NOT NULL CHECK (max_failure_percent BETWEEN 0 AND 100),
  state               TEXT    NOT NULL,
  current_ring        INTEGER NOT NULL CHECK (current_ring >= 0),
  ring_started_at     INTEGER NOT NULL,
  halted_reason       TEXT,
  created_by          TEXT    NOT NULL,
  created_at          INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS rollout_state ON rollout (state);

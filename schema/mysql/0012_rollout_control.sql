-- Roll-out control (issue 16): tags, their maintenance windows and max in flight, the leases
-- that bound how many agents of a tag upgrade at once, and staged roll-outs. Safe to re-run.
-- Tags are ASCII and case-sensitive (ascii_bin). No foreign keys: the adopted original agent
-- table may not be InnoDB; a reset that deletes agents deletes their tags and leases too.
--
-- agent_tag: the tags of each agent's latest v2 facts (agent = agent.id), replaced with its
-- facts. Approving for a tag and the tag filters read it by (tag, agent).
CREATE TABLE IF NOT EXISTS agent_tag (
  agent BIGINT unsigned NOT NULL,
  tag   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (agent, tag),
  KEY agent_tag_tag (tag, agent)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- tag_setting: what an administrator set on a tag; a row exists only while the tag has a max
-- in flight or windows. max_in_flight NULL: no limit. windows is the JSON list of the
-- maintenance windows (`[]`: any time). Lease takers lock these rows, in name order.
CREATE TABLE IF NOT EXISTS tag_setting (
  tag           VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY,
  max_in_flight INT unsigned NULL,
  windows       TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- tag_lease: an agent (agent.id) upgrading under a tag's max in flight, until expires_at (unix
-- seconds, the master's clock); live while expires_at is in the future.
CREATE TABLE IF NOT EXISTS tag_lease (
  tag        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  agent      BIGINT unsigned NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (tag, agent),
  KEY tag_lease_agent (agent)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- rollout: staged roll-outs. tasks is a JSON list of the approval tasks (MEDIUMTEXT: up to
-- 1,000), rings a JSON list of tags; soak_secs NULL promotes by hand only. state is running,
-- halted or completed; current_ring indexes rings (the ring approved last, at
-- ring_started_at). Masters advance running ones by compare-and-set on (id, current_ring,
-- state).
CREATE TABLE IF NOT EXISTS rollout (
  id                  BIGINT unsigned PRIMARY KEY AUTO_INCREMENT,
  tasks               MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  rings               TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  soak_secs           BIGINT unsigned NULL,
  max_failure_percent TINYINT unsigned NOT NULL,
  state               VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  current_ring        INT unsigned NOT NULL,
  ring_started_at     BIGINT NOT NULL,
  halted_reason       TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  created_by          VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  created_at          BIGINT NOT NULL,
  KEY rollout_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

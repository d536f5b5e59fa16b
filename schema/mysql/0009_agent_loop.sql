-- Closing the loop (protocol v2). Safe to re-run.
--
-- run: the results of agents' package runs, stored once per (agent, the agent's run id); the
-- newest runs of an agent are read by (agent, id), old ones purged by started_at. tasks is the
-- run's plan as a v1 JSON task list (MEDIUMTEXT: one run's plan may be as large as a report);
-- output the last lines of apt's output (at most 4096 bytes), verbatim.
CREATE TABLE IF NOT EXISTS run (
  id          BIGINT unsigned PRIMARY KEY AUTO_INCREMENT,
  agent       BIGINT unsigned NOT NULL,
  run_key     VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  package     VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  started_at  BIGINT          NOT NULL,
  duration_ms BIGINT unsigned NOT NULL,
  exit_code   INT             NULL,
  outcome     VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  tasks       MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  output      TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  received_at BIGINT          NOT NULL,
  UNIQUE KEY run_agent_key (agent, run_key),
  KEY run_agent_newest (agent, id),
  KEY run_started (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- run_latest: the outcome of the newest run (by start) of each package on each agent, the
-- agents' status; failing packages are read by (failed, package), old rows purged by
-- started_at.
CREATE TABLE IF NOT EXISTS run_latest (
  agent      BIGINT unsigned NOT NULL,
  package    VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  run        BIGINT unsigned NOT NULL,
  failed     TINYINT(1) unsigned NOT NULL,
  started_at BIGINT NOT NULL,
  PRIMARY KEY (agent, package),
  KEY run_latest_failed (failed, package),
  KEY run_latest_started (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- approval_generation: one row, bumped in every transaction of this store that approves,
-- revokes or resets, so long-polling agents notice a change with one tiny read.
CREATE TABLE IF NOT EXISTS approval_generation (
  id         TINYINT unsigned PRIMARY KEY,
  generation BIGINT unsigned NOT NULL
) ENGINE=InnoDB;
INSERT IGNORE INTO approval_generation (id, generation) VALUES (1, 0);

-- Approvals written straight into task (the original UI) bump no generation: a deep token
-- reads COUNT(*) and SUM(id) of the approval rows, which with (approved) plus the primary key
-- InnoDB appends is a range of this index alone. Migration 0008 dropped the original's key
-- on approved as useless for lookups; this one is for that aggregate.
CREATE INDEX IF NOT EXISTS task_approved ON task (approved);

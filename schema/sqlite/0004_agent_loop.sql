-- Closing the loop (protocol v2): run results, the latest outcome per package and agent, and
-- the approval generation. Same as schema/mysql/0009_agent_loop.sql; the deep approval token
-- reads the index task_approved (approved) of 0001, which holds the rowid (task.id).
CREATE TABLE IF NOT EXISTS run (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  agent       INTEGER NOT NULL,
  run_key     TEXT    NOT NULL CHECK (length(run_key) BETWEEN 1 AND 64),
  package     TEXT    NOT NULL CHECK (length(package) BETWEEN 1 AND 191),
  started_at  INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
  exit_code   INTEGER,
  outcome     TEXT    NOT NULL,
  tasks       TEXT    NOT NULL,
  output      TEXT    NOT NULL,
  received_at INTEGER NOT NULL,
  UNIQUE (agent, run_key)
);

CREATE INDEX IF NOT EXISTS run_agent_newest ON run (agent, id);
CREATE INDEX IF NOT EXISTS run_started ON run (started_at);

CREATE TABLE IF NOT EXISTS run_latest (
  agent      INTEGER NOT NULL,
  package    TEXT    NOT NULL,
  run        INTEGER NOT NULL,
  failed     INTEGER NOT NULL CHECK (failed IN (0, 1)),
  started_at INTEGER NOT NULL,
  PRIMARY KEY (agent, package)
);

CREATE INDEX IF NOT EXISTS run_latest_failed ON run_latest (failed, package);
CREATE INDEX IF NOT EXISTS run_latest_started ON run_latest (started_at);

CREATE TABLE IF NOT EXISTS approval_generation (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  generation INTEGER NOT NULL
);

INSERT OR IGNORE INTO approval_generation (id, generation) VALUES (1, 0);

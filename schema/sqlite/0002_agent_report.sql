-- Per agent: a digest of the pending set last stored (so an unchanged report needs no write)
-- and when the agent last reported. Same as schema/mysql/0003_agent_report.sql.
CREATE TABLE IF NOT EXISTS agent_report (
  agent        INTEGER PRIMARY KEY,
  pending_hash BLOB    NOT NULL CHECK (length(pending_hash) = 32),
  last_seen    INTEGER NOT NULL
);

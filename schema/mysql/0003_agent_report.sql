-- Per agent: a digest of the pending set last stored (so an unchanged report needs no write)
-- and when the agent last reported (the original only knows when the pending set changed).
CREATE TABLE IF NOT EXISTS agent_report (
  agent        BIGINT unsigned PRIMARY KEY,
  pending_hash BINARY(32) NOT NULL,
  last_seen    BIGINT     NOT NULL
);

-- When a pending row was first reported (unix seconds), so that "pending since" can be shown
-- and checked (`since` of the pending overview, `masif check-fleet --security-age`). NULL for
-- rows written before this migration or by the original master, whose INSERTs name their
-- columns. task_overview gains the column last, so the overview's earliest time per row is
-- still read from the index alone.
ALTER TABLE task ADD COLUMN IF NOT EXISTS ctime BIGINT NULL,
  DROP INDEX IF EXISTS task_overview,
  ADD INDEX task_overview (package, approved, action, to_version, agent, ctime);

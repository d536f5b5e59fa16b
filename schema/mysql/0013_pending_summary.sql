-- The pending overview's counts, maintained instead of recounted on every view (issue 18).
-- pending_summary: per (package, action, target version) the number of distinct agents with a
-- pending row of it; pending_package_summary: per (package, action) and per package (action '')
-- the number of distinct agents with a pending row of it. A target version of NULL is stored
-- as '' (a version is never empty). Pending rows of a NULL action or package (possible only
-- in the original schema) are not counted. The report, approval and reset transactions keep
-- both exact (crates/masif-store/src/summary.rs); a key whose count reaches 0 is deleted.
-- Safe to re-run: the counts are recomputed from the task rows.
CREATE TABLE IF NOT EXISTS pending_summary (
  package    BIGINT unsigned NOT NULL,
  action     VARCHAR(9) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  to_version VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  agents     BIGINT NOT NULL,
  PRIMARY KEY (package, action, to_version)
);
CREATE TABLE IF NOT EXISTS pending_package_summary (
  package BIGINT unsigned NOT NULL,
  action  VARCHAR(9) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  agents  BIGINT NOT NULL,
  PRIMARY KEY (package, action)
);
DELETE FROM pending_summary;
DELETE FROM pending_package_summary;
INSERT INTO pending_summary (package, action, to_version, agents)
  SELECT package, CAST(action AS CHAR), COALESCE(to_version, ''), COUNT(DISTINCT agent)
    FROM task
   WHERE approved = 0 AND agent IS NOT NULL AND package IS NOT NULL AND action IS NOT NULL
   GROUP BY package, action, COALESCE(to_version, '');
INSERT INTO pending_package_summary (package, action, agents)
  SELECT package, CAST(action AS CHAR), COUNT(DISTINCT agent)
    FROM task
   WHERE approved = 0 AND agent IS NOT NULL AND package IS NOT NULL AND action IS NOT NULL
   GROUP BY package, action;
INSERT INTO pending_package_summary (package, action, agents)
  SELECT package, '', COUNT(DISTINCT agent)
    FROM task
   WHERE approved = 0 AND agent IS NOT NULL AND package IS NOT NULL AND action IS NOT NULL
   GROUP BY package;
-- The overview takes its counts from the summary and only each row's earliest pending time
-- from the task rows: with ctime before agent in task_overview, MIN(ctime) per (package,
-- action, target version) is one index dive instead of a pass over every agent's entry.
ALTER TABLE task DROP INDEX IF EXISTS task_overview,
  ADD INDEX task_overview (package, approved, action, to_version, ctime, agent);

-- The pending overview's counts, maintained instead of recounted: the same tables and meaning
-- as schema/mysql/0013_pending_summary.sql (a NULL target version stored as '').
CREATE TABLE IF NOT EXISTS pending_summary (
  package    INTEGER NOT NULL,
  action     TEXT    NOT NULL,
  to_version TEXT    NOT NULL,
  agents     INTEGER NOT NULL,
  PRIMARY KEY (package, action, to_version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_package_summary (
  package INTEGER NOT NULL,
  action  TEXT    NOT NULL,
  agents  INTEGER NOT NULL,
  PRIMARY KEY (package, action)
) WITHOUT ROWID;
DELETE FROM pending_summary;
DELETE FROM pending_package_summary;
INSERT INTO pending_summary (package, action, to_version, agents)
  SELECT package, action, COALESCE(to_version, ''), COUNT(DISTINCT agent)
    FROM task
   WHERE approved = 0 AND agent IS NOT NULL AND package IS NOT NULL AND action IS NOT NULL
   GROUP BY package, action, COALESCE(to_version, '');
INSERT INTO pending_package_summary (package, action, agents)
  SELECT package, action, COUNT(DISTINCT agent)
    FROM task
   WHERE approved = 0 AND agent IS NOT NULL AND package IS NOT NULL AND action IS NOT NULL
   GROUP BY package, action;
INSERT INTO pending_package_summary (package, action, agents)
  SELECT package, '', COUNT(DISTINCT agent)
    FROM task
   WHERE approved = 0 AND agent IS NOT NULL AND package IS NOT NULL AND action IS NOT NULL
   GROUP BY package;

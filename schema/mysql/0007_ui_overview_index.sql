-- The UI's pending overview groups pending rows by package, then by (action, target version),
-- counting distinct agents. With (package, approved, action, to_version, agent) both steps read
-- only this index, in order: no row lookups, no sort of 200,000 rows for 10,000 agents.
CREATE INDEX IF NOT EXISTS task_overview ON task (package, approved, action, to_version, agent);

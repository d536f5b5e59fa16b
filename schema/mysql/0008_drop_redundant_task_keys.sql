-- The original's single-column keys on task are prefixes of the composite keys added since
-- (agent: task_agent_approved; package: task_approval, task_overview) or useless for lookups
-- (approved has two values). Every task row written updates each key: dropping these three
-- saves index writes on every report that changes something. Safe to re-run.
DROP INDEX IF EXISTS agent ON task;
DROP INDEX IF EXISTS package ON task;
DROP INDEX IF EXISTS approved ON task;

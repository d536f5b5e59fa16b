-- A report reads the approvals that can match it by (package, approved, agent, to_version): one
-- index range per reported package and agent (this one or NULL), however many approvals for
-- other agents pile up, with approvals of other target versions skipped inside the index. It
-- reads one agent's pending rows by (agent, approved).
CREATE INDEX IF NOT EXISTS task_approval ON task (package, approved, agent, to_version);
CREATE INDEX IF NOT EXISTS task_agent_approved ON task (agent, approved);

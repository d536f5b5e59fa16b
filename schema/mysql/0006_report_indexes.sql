-- A report reads the approvals that can match it by (package, approved, agent): one index range
-- per reported package and agent (this one or NULL), however many approvals for other agents
-- pile up. It reads one agent's pending rows by (agent, approved).
CREATE INDEX IF NOT EXISTS task_approval ON task (package, approved, agent);
CREATE INDEX IF NOT EXISTS task_agent_approved ON task (agent, approved);

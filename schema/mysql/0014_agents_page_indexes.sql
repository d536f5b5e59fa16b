-- The Agents page at 100,000 agents (issue 18): the offline agents, and their count at the top
-- of the page, are a range of this index (last contact before a time) instead of a look at
-- every agent. Safe to re-run.
CREATE INDEX IF NOT EXISTS agent_report_last_seen ON agent_report (last_seen);

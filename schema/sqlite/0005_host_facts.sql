-- Host facts (issue 13), as of each agent's latest v2 report: the same tables and meaning as
-- schema/mysql/0010_host_facts.sql. Safe to re-run.
-- agent_facts: one row per agent that sent facts; reboot_packages is a JSON array of names.
CREATE TABLE IF NOT EXISTS agent_facts (
  agent           INTEGER PRIMARY KEY,
  os              TEXT CHECK (length(os) <= 191),
  kernel          TEXT CHECK (length(kernel) <= 191),
  agent_version   TEXT CHECK (length(agent_version) <= 191),
  reboot_required INTEGER NOT NULL CHECK (reboot_required IN (0, 1)),
  reboot_packages TEXT    NOT NULL,
  reported_at     INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS agent_facts_reboot ON agent_facts (reboot_required);

-- agent_held: the packages dpkg holds on each agent, by name.
CREATE TABLE IF NOT EXISTS agent_held (
  agent   INTEGER NOT NULL,
  package TEXT    NOT NULL CHECK (length(package) BETWEEN 1 AND 191),
  PRIMARY KEY (agent, package)
);

CREATE INDEX IF NOT EXISTS agent_held_package ON agent_held (package);

-- task_fact: origin, security flag and needs (a v1 JSON task list, NULL: none) of each pending
-- task of an agent; readers join it to pending task rows.
CREATE TABLE IF NOT EXISTS task_fact (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  agent        INTEGER NOT NULL,
  package      INTEGER NOT NULL,
  action       TEXT    NOT NULL,
  from_version TEXT,
  to_version   TEXT,
  origin       TEXT CHECK (length(origin) <= 191),
  security     INTEGER NOT NULL CHECK (security IN (0, 1)),
  needs        TEXT
);

CREATE INDEX IF NOT EXISTS task_fact_agent ON task_fact (agent);
CREATE INDEX IF NOT EXISTS task_fact_security ON task_fact (security, package);

-- The original Masif Upgrader tables translated to SQLite. Same columns and meaning as
-- schema/mysql/0001_original.sql; task gets its primary key right away (MySQL's 0002), since
-- no original SQLite database exists to adopt. Names and versions are at most 191 characters
-- like the VARCHAR(191) columns, and action is one of the MySQL ENUM's values.
-- Text compares byte for byte (SQLite's BINARY collation), as MySQL after its 0005_exact_names.
CREATE TABLE IF NOT EXISTS agent (
  id    INTEGER PRIMARY KEY AUTOINCREMENT,
  name  TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 191),
  ctime INTEGER NOT NULL,
  mtime INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS package (
  id    INTEGER PRIMARY KEY AUTOINCREMENT,
  name  TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 191)
);

CREATE TABLE IF NOT EXISTS task (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  agent         INTEGER REFERENCES agent(id),
  package       INTEGER REFERENCES package(id),
  from_version  TEXT CHECK (length(from_version) <= 191),
  to_version    TEXT CHECK (length(to_version) <= 191),
  action        TEXT CHECK (action IN ('install', 'update', 'configure', 'remove', 'purge')),
  approved      INTEGER NOT NULL CHECK (approved IN (0, 1))
);

CREATE INDEX IF NOT EXISTS task_agent ON task (agent);
CREATE INDEX IF NOT EXISTS task_package ON task (package);
CREATE INDEX IF NOT EXISTS task_approved ON task (approved);

-- A report reads the approvals that can match it by (package, approved, agent) and one agent's
-- pending rows by (agent, approved), as schema/mysql/0006_report_indexes.sql.
CREATE INDEX IF NOT EXISTS task_approval ON task (package, approved, agent);
CREATE INDEX IF NOT EXISTS task_agent_approved ON task (agent, approved);

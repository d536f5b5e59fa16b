-- Who made an approval and when (one row per approval row in task), and an audit log of every
-- approval, revocation and reset made through the UI. Same as schema/mysql/0004_approval_audit.sql.
CREATE TABLE IF NOT EXISTS approval (
  task        INTEGER PRIMARY KEY,
  approved_by TEXT    NOT NULL,
  approved_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS audit (
  id     INTEGER PRIMARY KEY AUTOINCREMENT,
  at     INTEGER NOT NULL,
  user   TEXT    NOT NULL,
  action TEXT    NOT NULL,
  detail TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS audit_at ON audit (at);

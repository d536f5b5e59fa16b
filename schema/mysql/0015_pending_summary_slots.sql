-- The pending summary's counts split by writer (issue 18, Galera): every store (a master, the
-- UI) adds its deltas to rows of its own `slot`, chosen at random when it starts (1 to 255;
-- 0 holds what migration 0013 counted), so that masters writing through different Galera
-- nodes do not change the same rows, which certification would refuse to all but one of them.
-- A key's count is the sum over its slots; one slot's row may be negative (an agent counted
-- through one writer, gone through another). Safe to re-run.
ALTER TABLE pending_summary
  ADD COLUMN IF NOT EXISTS slot TINYINT unsigned NOT NULL DEFAULT 0,
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (package, action, to_version, slot);
ALTER TABLE pending_package_summary
  ADD COLUMN IF NOT EXISTS slot TINYINT unsigned NOT NULL DEFAULT 0,
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (package, action, slot);

-- A second counter in approval_generation's row, `gate`, moved together with `generation` by
-- the changes that may alter the roll-out gate's answer without changing any approval: tag
-- settings, leases given back, roll-out steps and resets. While it stays put, a master hands
-- an approval change only to the held reports of the agents it concerns; when it moves, to
-- every held report (issue 18). Masters that predate it read `generation` alone, which moves
-- for all of these too. Safe to re-run.
ALTER TABLE approval_generation
  ADD COLUMN IF NOT EXISTS gate BIGINT unsigned NOT NULL DEFAULT 0;

-- The roll-out gate's counter next to the approval generation: the same column and meaning as
-- schema/mysql/0016_gate_generation.sql.
ALTER TABLE approval_generation ADD COLUMN gate INTEGER NOT NULL DEFAULT 0;

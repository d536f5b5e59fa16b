-- When a pending row was first reported (unix seconds): as schema/mysql/0011_task_ctime.sql.
-- NULL for rows written before this migration.
ALTER TABLE task ADD COLUMN ctime INTEGER NULL;

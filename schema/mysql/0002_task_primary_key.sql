-- Every table needs a primary key (Galera refuses DELETE without one). The original's INSERTs
-- name their columns, so an added auto-increment column keeps them working.
ALTER TABLE task ADD COLUMN IF NOT EXISTS id BIGINT unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY;

-- Names and versions compare byte for byte ("Foo" and "foo" are different packages, "1.0~RC1"
-- and "1.0~rc1" different versions) and hold any Unicode character. The original tables took
-- the server's default character set and (case-insensitive) collation; converting to a binary
-- collation never breaks a unique key. Safe to re-run.
ALTER TABLE agent MODIFY name VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE package MODIFY name VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE task
  MODIFY from_version VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  MODIFY to_version   VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

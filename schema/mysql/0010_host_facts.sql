-- Host facts (issue 13), as of each agent's latest v2 report. Safe to re-run. Texts are the
-- agent's, verbatim (utf8mb4_bin, like names and versions since 0005): the UI escapes them.
--
-- agent_facts: one row per agent that sent facts (agent = agent.id). os, kernel and
-- agent_version are NULL when the agent did not know them; reboot_packages is a JSON array of
-- the package names that asked for the reboot (MEDIUMTEXT: up to 2000 names). The Agents page
-- counts and filters by reboot_required.
CREATE TABLE IF NOT EXISTS agent_facts (
  agent           BIGINT unsigned PRIMARY KEY,
  os              VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  kernel          VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  agent_version   VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  reboot_required TINYINT(1) unsigned NOT NULL,
  reboot_packages MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  reported_at     BIGINT NOT NULL,
  KEY agent_facts_reboot (reboot_required)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- agent_held: the packages dpkg holds on each agent, by name (a held package need not be in
-- the package table); the pending page counts holders per package.
CREATE TABLE IF NOT EXISTS agent_held (
  agent   BIGINT unsigned NOT NULL,
  package VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (agent, package),
  KEY agent_held_package (package)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- task_fact: what the agent said of each of its pending tasks (package = package.id; action
-- and versions as in task): the origin of the target version, whether that is a security
-- archive, and needs, the other tasks of the package's own plan as a v1 JSON task list (NULL:
-- none). Replaced with the agent's pending set; readers join it to pending task rows, so a row
-- whose task was approved meanwhile counts for nothing. The pending page finds the security
-- rows by (security, package).
CREATE TABLE IF NOT EXISTS task_fact (
  id           BIGINT unsigned PRIMARY KEY AUTO_INCREMENT,
  agent        BIGINT unsigned NOT NULL,
  package      BIGINT unsigned NOT NULL,
  action       VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  from_version VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  to_version   VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  origin       VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  security     TINYINT(1) unsigned NOT NULL,
  needs        MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  KEY task_fact_agent (agent),
  KEY task_fact_security (security, package)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

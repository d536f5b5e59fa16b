-- Who made an approval and when (one row per approval row in task), and an audit log of every
-- approval, revocation and reset made through the UI.
CREATE TABLE IF NOT EXISTS approval (
  task        BIGINT unsigned PRIMARY KEY,
  approved_by VARCHAR(191) NOT NULL,
  approved_at BIGINT       NOT NULL
);

CREATE TABLE IF NOT EXISTS audit (
  id     BIGINT unsigned PRIMARY KEY AUTO_INCREMENT,
  at     BIGINT       NOT NULL,
  user   VARCHAR(191) NOT NULL,
  action VARCHAR(32)  NOT NULL,
  detail TEXT         NOT NULL,
  KEY (at)
);

-- The dispatcher's lease: the process holding advisory lock LEASE_LOCK dispatches; each new
-- holder raises the epoch, and every write of a dispatcher checks it still holds that epoch
-- (bot/storage/cluster.py), so a dispatcher that lost the lease cannot write again.
CREATE TABLE dispatcher_lease (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    epoch        BIGINT  NOT NULL,
    holder       TEXT,
    acquired_at  DOUBLE PRECISION
);
INSERT INTO dispatcher_lease (id, epoch) VALUES (1, 0);

-- Money and the admins' audit trail.
-- The price of one image when the job was accepted, so budgets and reports keep what the
-- operator's price list said at the time.
ALTER TABLE ledger ADD COLUMN unit_price REAL NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN model TEXT;

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    role_id     INTEGER NOT NULL DEFAULT 0,
    setting     TEXT    NOT NULL,
    old_value   TEXT,
    new_value   TEXT,
    created_at  REAL    NOT NULL
);
CREATE INDEX audit_by_guild ON audit_log (guild_id, id);

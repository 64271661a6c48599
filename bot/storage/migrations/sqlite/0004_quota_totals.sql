-- Running totals for the quota checks, kept up to date in the same transactions that write the
-- ledger, so a reservation costs a few index look-ups however busy the server is. The ledger
-- stays the record: a missing total is rebuilt from it, and tests compare the two.

-- Images held in a rolling 24 h window: the reservations made after `cutoff`, minus what was
-- refunded of them. A check moves the cutoff to now - 24 h, subtracting the reservations that
-- left the window (each reservation leaves once).
CREATE TABLE quota_windows (
    scope   TEXT    NOT NULL CHECK (scope IN ('user_id', 'guild_id')),
    owner   INTEGER NOT NULL,
    cutoff  REAL    NOT NULL,
    held    INTEGER NOT NULL,
    PRIMARY KEY (scope, owner)
) WITHOUT ROWID;

-- Money held or charged by a server's reservations of one month (UTC), in millionths of the
-- currency unit, so sums are exact.
CREATE TABLE quota_spend (
    guild_id INTEGER NOT NULL,
    month    REAL    NOT NULL,
    micros   INTEGER NOT NULL,
    PRIMARY KEY (guild_id, month)
) WITHOUT ROWID;

-- "Jobs in progress per member" without reading the member's whole history.
CREATE INDEX jobs_by_user_state ON jobs (user_id, state);

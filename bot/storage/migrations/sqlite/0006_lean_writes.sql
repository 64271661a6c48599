-- Fewer pages written per job, and a version per server's settings so a reservation can use
-- the policy it resolved before without reading every setting again.

-- The 24-hour windows and the monthly budget read only reservations: charge and refund rows no
-- longer enter these two indexes (each settlement wrote four index entries for nothing).
DROP INDEX ledger_by_user;
CREATE INDEX ledger_by_user ON ledger (user_id, created_at) WHERE entry = 'reserve';
DROP INDEX ledger_by_guild;
CREATE INDEX ledger_by_guild ON ledger (guild_id, created_at) WHERE entry = 'reserve';

-- The cooldown reads the member's last reservation (ledger_by_user) instead, and a member's
-- jobs are listed through jobs_by_user_state: one index less to write per job.
DROP INDEX jobs_by_user;

-- Only ended jobs wait for their final status to be shown: jobs in progress stay out of the
-- index instead of moving inside it at each step.
DROP INDEX jobs_unnotified;
CREATE INDEX jobs_unnotified ON jobs (finished_at) WHERE notified_at IS NULL AND finished_at IS NOT NULL;

-- Changed by every change to a server's settings, however it is made (the admin commands, a
-- script, the sqlite3 shell): a cached policy is used only while its version is current. A
-- random value, not a count: a rolled-back change must not leave a number the next change
-- would reuse (a policy read inside that transaction would then pass for current).
CREATE TABLE policy_versions (
    guild_id INTEGER PRIMARY KEY,
    version  INTEGER NOT NULL
);
INSERT INTO policy_versions (guild_id, version)
SELECT guild_id, random() FROM limit_settings GROUP BY guild_id;

CREATE TRIGGER limit_settings_inserted AFTER INSERT ON limit_settings BEGIN
    INSERT INTO policy_versions (guild_id, version) VALUES (NEW.guild_id, random())
    ON CONFLICT (guild_id) DO UPDATE SET version = excluded.version;
END;
CREATE TRIGGER limit_settings_updated AFTER UPDATE ON limit_settings BEGIN
    INSERT INTO policy_versions (guild_id, version) VALUES (NEW.guild_id, random())
    ON CONFLICT (guild_id) DO UPDATE SET version = excluded.version;
    INSERT INTO policy_versions (guild_id, version)
    SELECT OLD.guild_id, random() WHERE OLD.guild_id IS NOT NEW.guild_id
    ON CONFLICT (guild_id) DO UPDATE SET version = excluded.version;
END;
CREATE TRIGGER limit_settings_deleted AFTER DELETE ON limit_settings BEGIN
    INSERT INTO policy_versions (guild_id, version) VALUES (OLD.guild_id, random())
    ON CONFLICT (guild_id) DO UPDATE SET version = excluded.version;
END;

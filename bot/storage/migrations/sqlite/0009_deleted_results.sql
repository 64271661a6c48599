-- A result deleted by its owner or a moderator is gone for good: who deleted it and when, and
-- when Discord was made to match (its messages deleted, its status message and thread without
-- the prompt). Deleted but not done means a restart came in between: the next start does it.
ALTER TABLE jobs ADD COLUMN deleted_at REAL;
ALTER TABLE jobs ADD COLUMN deleted_by INTEGER;
ALTER TABLE jobs ADD COLUMN deletion_done_at REAL;
CREATE INDEX jobs_deletion_pending ON jobs (id)
WHERE deleted_at IS NOT NULL AND deletion_done_at IS NULL;

-- Messages besides the delivery that carry a job's images (what /show posts, and a message
-- Delete was clicked on), so that deleting the job deletes those too.
CREATE TABLE reposts (
    message_id  INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    channel_id  INTEGER NOT NULL
);
CREATE INDEX reposts_by_job ON reposts (job_id);

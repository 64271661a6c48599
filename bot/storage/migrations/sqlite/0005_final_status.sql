-- notified_at now also records that a done or cancelled job's final status was shown (it
-- recorded only failure notices before). Jobs that ended before this version count as shown.
UPDATE jobs SET notified_at = COALESCE(finished_at, updated_at)
WHERE state IN ('done', 'cancelled') AND notified_at IS NULL;

CREATE INDEX jobs_unnotified ON jobs (state, finished_at) WHERE notified_at IS NULL;

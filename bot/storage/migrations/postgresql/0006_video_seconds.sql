-- Video seconds in the ledger and on the job: see sqlite/0012_video_seconds.sql.
ALTER TABLE ledger ADD COLUMN seconds BIGINT NOT NULL DEFAULT 0 CHECK (seconds >= 0);
ALTER TABLE jobs ADD COLUMN video_seconds DOUBLE PRECISION;

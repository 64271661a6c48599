-- When the user was told that the job ended without images. A crash between a job failing and
-- the notice going out leaves it NULL, and the notice is sent again at the next start.
ALTER TABLE jobs ADD COLUMN notified_at REAL;

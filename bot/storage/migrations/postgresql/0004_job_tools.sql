-- The image tools (Upscale, Vary, Zoom out and Pan, Blend): see sqlite/0010_job_tools.sql. The
-- same column on both backends, so the store's SQL and `migrate-db` stay one.
ALTER TABLE jobs ADD COLUMN tool TEXT CHECK (tool IN ('upscale', 'vary', 'expand', 'blend', 'animate', 'video'));

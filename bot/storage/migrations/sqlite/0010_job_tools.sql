-- The image tools (Upscale, Vary, Zoom out and Pan, Blend) and videos (Animate, Video) are
-- kinds of job of their own. The
-- kind column keeps its first CHECK (text-to-image or edit: every tool takes input images and
-- is stored as an edit there); `tool` names the tool, NULL for plain jobs. Changing the CHECK
-- itself would mean rebuilding jobs, whose rows other tables reference with ON DELETE CASCADE.
ALTER TABLE jobs ADD COLUMN tool TEXT CHECK (tool IN ('upscale', 'vary', 'expand', 'blend', 'animate', 'video'));

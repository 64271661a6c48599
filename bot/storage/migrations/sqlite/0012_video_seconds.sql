-- Videos are billed per second. A video's ledger rows keep its seconds besides its one image:
-- the reservation the seconds asked for, the charge the seconds DashScope reported (capped at
-- the reservation; the charge row's unit_price is what those seconds cost), the refund the
-- rest. Images windows count rows without seconds; the video seconds limits count the others.
-- The job keeps the seconds DashScope reported (usage.duration) until it is settled.
ALTER TABLE ledger ADD COLUMN seconds INTEGER NOT NULL DEFAULT 0 CHECK (seconds >= 0);
ALTER TABLE jobs ADD COLUMN video_seconds REAL;

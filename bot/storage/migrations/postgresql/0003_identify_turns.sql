-- When each identify bucket (shard id % max_concurrency) last identified to Discord, by any
-- process: a process starting a shard waits its bucket's turn (bot/runtime/identify.py).
CREATE TABLE identify_turns (
    bucket   INTEGER PRIMARY KEY,
    last_at  DOUBLE PRECISION NOT NULL
);

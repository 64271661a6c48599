-- Jobs, their inputs and results, the usage ledger and per-server limit settings.
-- Times are Unix epoch seconds (REAL). Discord ids are 64-bit integers.

CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY,
    state               TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN
                            ('queued', 'submitted', 'running', 'delivering', 'done', 'failed', 'cancelled')),
    kind                TEXT    NOT NULL CHECK (kind IN ('text-to-image', 'edit')),
    model               TEXT    NOT NULL,
    mode                TEXT    NOT NULL DEFAULT 'async' CHECK (mode IN ('async', 'sync')),
    params              TEXT    NOT NULL,   -- JSON: prompt, negative_prompt, size, n, seed, ...
    n                   INTEGER NOT NULL CHECK (n BETWEEN 1 AND 4),
    user_id             INTEGER NOT NULL,
    guild_id            INTEGER,            -- NULL in DMs and on the command line
    channel_id          INTEGER,
    thread_id           INTEGER,
    status_message_id   INTEGER,
    locale              TEXT    NOT NULL DEFAULT 'en',
    parent_job_id       INTEGER REFERENCES jobs (id),
    task_id             TEXT UNIQUE,
    submit_request_id   TEXT,
    result_request_id   TEXT,
    actual_prompt       TEXT,
    image_count         INTEGER,            -- usage.image_count: what DashScope billed
    error_code          TEXT,
    error_message       TEXT,
    retryable           INTEGER NOT NULL DEFAULT 0,
    submit_attempts     INTEGER NOT NULL DEFAULT 0,
    delivery_attempts   INTEGER NOT NULL DEFAULT 0,
    next_delivery_at    REAL,
    created_at          REAL    NOT NULL,
    submitted_at        REAL,
    running_at          REAL,
    delivering_at       REAL,
    finished_at         REAL,
    updated_at          REAL    NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_user ON jobs (user_id, created_at);
CREATE INDEX jobs_by_guild ON jobs (guild_id, created_at);

-- Normalised input images of an edit (data: URIs), kept until the job ends.
CREATE TABLE job_inputs (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    data_uri    TEXT    NOT NULL,
    PRIMARY KEY (job_id, position)
);

-- One row per requested image: a URL (valid 24 h) or the reason it failed.
CREATE TABLE results (
    job_id                INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position              INTEGER NOT NULL,
    url                   TEXT,
    expires_at            REAL,
    failure_code          TEXT,
    failure_message       TEXT,
    delivered_message_id  INTEGER,
    PRIMARY KEY (job_id, position)
);

-- Usage: a job reserves n images when accepted, then is settled once: 'charge' for what
-- DashScope billed and 'refund' for the rest. Reserved = charged + refunded once settled.
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    user_id     INTEGER NOT NULL,
    guild_id    INTEGER,
    entry       TEXT    NOT NULL CHECK (entry IN ('reserve', 'charge', 'refund')),
    images      INTEGER NOT NULL CHECK (images >= 0),
    created_at  REAL    NOT NULL
);
CREATE UNIQUE INDEX ledger_once ON ledger (job_id, entry);
CREATE INDEX ledger_by_user ON ledger (user_id, created_at);
CREATE INDEX ledger_by_guild ON ledger (guild_id, created_at);

-- Limit settings per server; role_id 0 means the whole server.
CREATE TABLE limit_settings (
    guild_id    INTEGER NOT NULL,
    role_id     INTEGER NOT NULL DEFAULT 0,
    setting     TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    updated_by  INTEGER,
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, role_id, setting)
);

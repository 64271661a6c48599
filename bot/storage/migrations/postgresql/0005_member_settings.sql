-- Members' defaults and servers' styles: see sqlite/0011_member_settings.sql.
CREATE TABLE member_defaults (
    user_id     BIGINT  PRIMARY KEY,
    defaults    TEXT    NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);

CREATE TABLE server_styles (
    guild_id        BIGINT  NOT NULL,
    name            TEXT    NOT NULL,
    label           TEXT    NOT NULL,
    prompt_suffix   TEXT    NOT NULL,
    negative_prompt TEXT,
    model           TEXT,
    created_by      BIGINT  NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, name)
);

-- A member's own defaults for new images (/settings), kept across servers; each server's policy
-- still bounds them when they are used. `defaults` is a JSON object of the fields the member set.
CREATE TABLE member_defaults (
    user_id     INTEGER PRIMARY KEY,
    defaults    TEXT    NOT NULL,
    updated_at  REAL    NOT NULL
);

-- A server's named styles (/wanadmin styles): a prompt suffix, and optionally a negative prompt
-- and a model, that members pick with /imagine style:. `name` is kept lower-case, so two
-- styles differing only in case cannot coexist; `label` is the name as the admin typed it.
CREATE TABLE server_styles (
    guild_id        INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    label           TEXT    NOT NULL,
    prompt_suffix   TEXT    NOT NULL,
    negative_prompt TEXT,
    model           TEXT,
    created_by      INTEGER NOT NULL,
    created_at      REAL    NOT NULL,
    PRIMARY KEY (guild_id, name)
);

-- A reservation of images in one statement, a transaction of its own:
-- `bot.accounting.quota.Quota._reserve_in_server`.
--
-- On PostgreSQL a reservation ran a dozen statements from the bot, each a call into the driver
-- and a trip to the server, while holding the member's and the server's locks; `bench cluster`
-- measured the bot's share of that as the larger part of an operation's CPU, and the server's
-- lock held across those trips serialised a busy server. Here the same steps run in the server:
-- the bot decides the member's limits (its policy, resolved in Python as everywhere), and this
-- takes the locks, checks them against the rows and the running totals exactly as
-- `Quota._reserve` does, and writes the job, its reservation and the totals. It answers:
--   > 0  the new job's id: accepted;
--   0    a limit refuses (no job: the bot runs its own checks next, which say which limit
--        and when it frees, or accept if it freed meanwhile);
--   -1   the server's settings changed since the bot resolved the member's policy.
-- Videos and refusals take the bot's own path; the store's contract tests hold the two to one
-- behaviour.

-- Images held in one owner's last 24 h (`_held` in quota.py): the running total, moved past the
-- reservations that left the window since its cutoff; or, when a request with a later clock
-- moved it on already, the total and what left it since this cutoff; or built from the ledger.
CREATE FUNCTION wanbot_held(p_scope TEXT, p_owner BIGINT, p_cutoff DOUBLE PRECISION)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    w_cutoff DOUBLE PRECISION;
    w_held BIGINT;
    leaving BIGINT;
    leaving_images BIGINT;
    found_row BOOLEAN;
    upto DOUBLE PRECISION;
    back BIGINT;
BEGIN
    IF p_scope = 'user_id' THEN
        SELECT w.cutoff, w.held, COUNT(r.id), COALESCE(SUM(r.images - COALESCE(f.images, 0)), 0)
          INTO w_cutoff, w_held, leaving, leaving_images
          FROM quota_windows w
          LEFT JOIN ledger r ON r.user_id = w.owner AND r.entry = 'reserve'
               AND r.created_at > w.cutoff AND r.created_at <= p_cutoff AND r.seconds = 0
          LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'
         WHERE w.scope = p_scope AND w.owner = p_owner GROUP BY w.cutoff, w.held;
    ELSE
        SELECT w.cutoff, w.held, COUNT(r.id), COALESCE(SUM(r.images - COALESCE(f.images, 0)), 0)
          INTO w_cutoff, w_held, leaving, leaving_images
          FROM quota_windows w
          LEFT JOIN ledger r ON r.guild_id = w.owner AND r.entry = 'reserve'
               AND r.created_at > w.cutoff AND r.created_at <= p_cutoff AND r.seconds = 0
          LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'
         WHERE w.scope = p_scope AND w.owner = p_owner GROUP BY w.cutoff, w.held;
    END IF;
    -- Images held by the owner's reservations made in (p_cutoff, upto]: what a request with a
    -- later clock took out already (upto: its cutoff), or everything (first use: no total yet).
    found_row := FOUND;
    upto := CASE WHEN found_row THEN w_cutoff ELSE 'Infinity'::DOUBLE PRECISION END;
    IF NOT found_row OR p_cutoff < w_cutoff THEN
        IF p_scope = 'user_id' THEN
            SELECT COALESCE(SUM(r.images - COALESCE(f.images, 0)), 0) INTO back
              FROM ledger r LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'
             WHERE r.entry = 'reserve' AND r.seconds = 0 AND r.user_id = p_owner
               AND r.created_at > p_cutoff AND r.created_at <= upto;
        ELSE
            SELECT COALESCE(SUM(r.images - COALESCE(f.images, 0)), 0) INTO back
              FROM ledger r LEFT JOIN ledger f ON f.job_id = r.job_id AND f.entry = 'refund'
             WHERE r.entry = 'reserve' AND r.seconds = 0 AND r.guild_id = p_owner
               AND r.created_at > p_cutoff AND r.created_at <= upto;
        END IF;
    END IF;
    IF found_row AND p_cutoff < w_cutoff THEN  -- a later clock moved it on: add that back
        RETURN w_held + back;
    END IF;
    IF NOT found_row THEN  -- first use: build it from the ledger
        w_held := back;
        INSERT INTO quota_windows (scope, owner, cutoff, held)
        VALUES (p_scope, p_owner, p_cutoff, w_held)
        ON CONFLICT (scope, owner) DO UPDATE SET cutoff = excluded.cutoff, held = excluded.held;
        RETURN w_held;
    END IF;
    IF leaving > 0 THEN
        w_held := w_held - leaving_images;
        UPDATE quota_windows SET cutoff = p_cutoff, held = w_held
         WHERE scope = p_scope AND owner = p_owner;
    END IF;
    RETURN w_held;
END;
$$;

-- The lock `Conn.lock(scope, key)` takes (bot.storage.postgres.LOCK_KEY: the name hashed with
-- the schema), for the same name.
CREATE FUNCTION wanbot_lock(p_name TEXT) RETURNS VOID LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended(coalesce(current_schema(), '') || ':' || p_name, 0));
$$;

CREATE FUNCTION wanbot_reserve(
    -- when, and the settings version the member's policy was resolved at
    p_now DOUBLE PRECISION, p_cutoff DOUBLE PRECISION, p_month DOUBLE PRECISION,
    p_next_month DOUBLE PRECISION, p_version BIGINT,
    -- the member's limits (0: none; the budget -1: none), and one image's price (in millionths)
    p_cooldown BIGINT, p_concurrent BIGINT, p_user_day BIGINT, p_guild_day BIGINT,
    p_budget_micros BIGINT, p_unit_price DOUBLE PRECISION, p_unit_micros BIGINT,
    -- the job's row, in the order of `JobStore.values`
    p_kind TEXT, p_tool TEXT, p_model TEXT, p_mode TEXT, p_params TEXT, p_n BIGINT,
    p_user BIGINT, p_guild BIGINT, p_channel BIGINT, p_thread BIGINT, p_locale TEXT,
    p_parent BIGINT,
    -- its input images (data URIs), in order
    p_inputs TEXT[]
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    found_version BIGINT;
    last_at DOUBLE PRECISION;
    active BIGINT;
    spent BIGINT;
    cost BIGINT := p_n * p_unit_micros;
    new_id BIGINT;
BEGIN
    PERFORM wanbot_lock('user:' || p_user);
    IF p_guild IS NOT NULL THEN
        SELECT version INTO found_version FROM policy_versions WHERE guild_id = p_guild;
        IF found_version IS DISTINCT FROM p_version THEN
            RETURN -1;
        END IF;
    END IF;
    IF p_cooldown > 0 THEN
        SELECT MAX(created_at) INTO last_at FROM ledger
         WHERE user_id = p_user AND entry = 'reserve';
        IF last_at IS NOT NULL AND p_now - last_at < p_cooldown THEN
            RETURN 0;
        END IF;
    END IF;
    IF p_concurrent > 0 THEN
        SELECT COUNT(*) INTO active FROM jobs
         WHERE user_id = p_user AND state IN ('queued', 'submitted', 'running', 'delivering');
        IF active >= p_concurrent THEN
            RETURN 0;
        END IF;
    END IF;
    IF p_user_day > 0 AND wanbot_held('user_id', p_user, p_cutoff) + p_n > p_user_day THEN
        RETURN 0;
    END IF;
    IF p_guild IS NOT NULL THEN
        PERFORM wanbot_lock('guild:' || p_guild);
        IF p_guild_day > 0 AND wanbot_held('guild_id', p_guild, p_cutoff) + p_n > p_guild_day THEN
            RETURN 0;
        END IF;
        IF p_budget_micros >= 0 THEN
            SELECT micros INTO spent FROM quota_spend WHERE guild_id = p_guild AND month = p_month;
            IF NOT FOUND THEN  -- `_spent_micros`: the month's total, built from the ledger once
                SELECT COALESCE(SUM(COALESCE(
                           c.images * CAST(ROUND(c.unit_price * 1000000) AS BIGINT),
                           r.images * CAST(ROUND(r.unit_price * 1000000) AS BIGINT))), 0)
                  INTO spent
                  FROM ledger r LEFT JOIN ledger c ON c.job_id = r.job_id AND c.entry = 'charge'
                 WHERE r.entry = 'reserve' AND r.guild_id = p_guild
                   AND r.created_at >= p_month AND r.created_at < p_next_month;
                INSERT INTO quota_spend (guild_id, month, micros) VALUES (p_guild, p_month, spent)
                ON CONFLICT (guild_id, month) DO NOTHING;
            END IF;
            IF spent + cost > p_budget_micros THEN
                RETURN 0;
            END IF;
        END IF;
    END IF;
    INSERT INTO jobs (state, kind, tool, model, mode, params, n, user_id, guild_id, channel_id,
                      thread_id, locale, parent_job_id, created_at, updated_at)
    VALUES ('queued', p_kind, p_tool, p_model, p_mode, p_params, p_n, p_user, p_guild, p_channel,
            p_thread, p_locale, p_parent, p_now, p_now)
    RETURNING id INTO new_id;
    INSERT INTO job_inputs (job_id, position, data_uri)
    SELECT new_id, ordinality - 1, uri FROM unnest(p_inputs) WITH ORDINALITY AS inputs(uri);
    INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at, unit_price, model,
                        seconds)
    VALUES (new_id, p_user, p_guild, 'reserve', p_n, p_now, p_unit_price, p_model, 0);
    UPDATE quota_windows SET held = held + p_n WHERE cutoff < p_now
       AND ((scope = 'user_id' AND owner = p_user) OR (scope = 'guild_id' AND owner = p_guild));
    IF p_guild IS NOT NULL AND cost <> 0 THEN
        UPDATE quota_spend SET micros = micros + cost
         WHERE guild_id = p_guild AND month = p_month;
    END IF;
    RETURN new_id;
END;
$$;

-- A job's settlement for images (`Quota.settle`) in one statement: charge what was delivered,
-- refund the rest, once per job, and give the refund back to the running totals. 'video': the
-- reservation holds video seconds, which the bot settles itself (what DashScope reported);
-- 'none': the job reserved nothing; 'done' otherwise.
CREATE FUNCTION wanbot_settle(
    p_job BIGINT, p_n BIGINT, p_delivered BIGINT, p_now DOUBLE PRECISION
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    r ledger%ROWTYPE;
    refunded BIGINT := p_n - p_delivered;
    refund_added BOOLEAN;
BEGIN
    SELECT * INTO r FROM ledger WHERE job_id = p_job AND entry = 'reserve';
    IF NOT FOUND THEN
        RETURN 'none';
    END IF;
    IF r.seconds > 0 THEN
        RETURN 'video';
    END IF;
    WITH added AS (
        INSERT INTO ledger (job_id, user_id, guild_id, entry, images, created_at, unit_price,
                            model, seconds)
        VALUES (p_job, r.user_id, r.guild_id, 'charge', p_delivered, p_now, r.unit_price, r.model, 0),
               (p_job, r.user_id, r.guild_id, 'refund', refunded, p_now, r.unit_price, r.model, 0)
        ON CONFLICT (job_id, entry) DO NOTHING RETURNING entry
    )
    SELECT COALESCE(bool_or(entry = 'refund'), FALSE) INTO refund_added FROM added;
    IF refund_added AND refunded > 0 THEN
        UPDATE quota_windows SET held = held - refunded WHERE cutoff < r.created_at
           AND ((scope = 'user_id' AND owner = r.user_id)
                OR (scope = 'guild_id' AND owner = r.guild_id));
        -- millionths as `quota.micros` counts them: the double product, half away from zero
        UPDATE quota_spend
           SET micros = micros - refunded * CAST(sign(r.unit_price)
                                                 * floor(abs(r.unit_price) * 1000000 + 0.5) AS BIGINT)
         WHERE guild_id = r.guild_id AND month = CAST(EXTRACT(EPOCH FROM date_trunc('month',
                   to_timestamp(floor(r.created_at)) AT TIME ZONE 'UTC')) AS DOUBLE PRECISION);
    END IF;
    RETURN 'done';
END;
$$;

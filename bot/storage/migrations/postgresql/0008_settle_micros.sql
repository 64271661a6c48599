-- `wanbot_settle` (0007) gave back a refund's money in millionths rounded from the price as a
-- decimal, while the reservation had added them as `quota.micros` rounds the price times a
-- million as a double: for some prices (0.0001245) the two differ by one, and the month's
-- running total drifted from the ledger at each refund. Now it rounds as `micros` does
-- (half away from zero, of the same double product).
CREATE OR REPLACE FUNCTION wanbot_settle(
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

-- The shared spend ledger: one row per settled call, running totals per
-- window (in shards, so that settles do not queue behind one hot row), and
-- the reservations of calls in flight, each with an expiry.

CREATE SEQUENCE replica_ids;

CREATE TABLE spend (
    replica bigint NOT NULL,
    seq bigint NOT NULL,
    at_ms bigint NOT NULL,
    agent_id text NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_nanos bigint NOT NULL,
    PRIMARY KEY (replica, seq)
);
-- /v1/usage groups a window's rows by agent and model.
CREATE INDEX spend_at ON spend (at_ms);

CREATE TABLE spend_totals (
    kind text NOT NULL CHECK (kind IN ('day', 'month')),
    start_ms bigint NOT NULL,
    shard smallint NOT NULL,
    spent_nanos bigint NOT NULL,
    PRIMARY KEY (kind, start_ms, shard)
);

CREATE TABLE reservations (
    replica bigint NOT NULL,
    seq bigint NOT NULL,
    agent_id text NOT NULL,
    nanos bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (replica, seq)
);
CREATE INDEX reservations_expiry ON reservations (expires_at);

-- What the windows starting at the given times have spent, and what live
-- reservations hold: one statement, so one snapshot.
CREATE FUNCTION standing(
    p_day_ms bigint, p_month_ms bigint,
    OUT day_spent bigint, OUT month_spent bigint, OUT reserved bigint)
LANGUAGE sql AS $$
    SELECT COALESCE(SUM(t.spent_nanos) FILTER (WHERE t.kind = 'day'), 0)::bigint,
           COALESCE(SUM(t.spent_nanos) FILTER (WHERE t.kind = 'month'), 0)::bigint,
           (SELECT COALESCE(SUM(x.nanos), 0) FROM reservations x WHERE x.expires_at > clock_timestamp())::bigint
      FROM spend_totals t
     WHERE (t.kind = 'day' AND t.start_ms = p_day_ms) OR (t.kind = 'month' AND t.start_ms = p_month_ms)
$$;

-- Admits each call, in order, if what is spent, what live reservations
-- hold and its estimate fit both limits, and holds its estimate until
-- `p_ttl_ms` from now. One lock orders every reservation; the totals and
-- the reservations are read in one statement, so a settle is seen whole or
-- not at all. The calls that arrived together share one transaction.
CREATE FUNCTION reserve(
    p_replica bigint, p_seqs bigint[], p_agents text[], p_nanos bigint[],
    p_day_ms bigint, p_month_ms bigint, p_daily bigint, p_monthly bigint, p_ttl_ms bigint)
RETURNS TABLE (o_seq bigint, o_admitted boolean, o_day_spent bigint, o_month_spent bigint, o_reserved bigint)
LANGUAGE plpgsql AS $$
DECLARE
    held integer[] := '{}';
    d bigint;
    m bigint;
    r bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.reserve'));
    SELECT s.day_spent, s.month_spent, s.reserved INTO d, m, r FROM standing(p_day_ms, p_month_ms) s;
    FOR i IN 1 .. COALESCE(array_length(p_seqs, 1), 0) LOOP
        o_seq := p_seqs[i];
        o_admitted := d + r + p_nanos[i] <= p_daily AND m + r + p_nanos[i] <= p_monthly;
        IF o_admitted THEN
            r := r + p_nanos[i];
            held := held || i;
        END IF;
        o_day_spent := d;
        o_month_spent := m;
        o_reserved := r;
        RETURN NEXT;
    END LOOP;
    INSERT INTO reservations (replica, seq, agent_id, nanos, expires_at)
    SELECT p_replica, p_seqs[k], p_agents[k], p_nanos[k], clock_timestamp() + p_ttl_ms * interval '1 millisecond'
      FROM unnest(held) AS k;
END $$;

-- Records calls' spend and drops their reservations, in one transaction.
-- Settling again (a retry after a lost answer) records nothing twice.
-- Totals are updated in one order (kind, window, shard), so concurrent
-- settles cannot deadlock.
CREATE FUNCTION settle(
    p_replica bigint, p_seqs bigint[], p_at_ms bigint[], p_agents text[], p_providers text[], p_models text[],
    p_inputs bigint[], p_outputs bigint[], p_costs bigint[], p_days bigint[], p_months bigint[], p_shards smallint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM reservations WHERE replica = p_replica AND seq = ANY (p_seqs);
    WITH calls AS (
        SELECT * FROM unnest(p_seqs, p_at_ms, p_agents, p_providers, p_models, p_inputs, p_outputs, p_costs,
                             p_days, p_months, p_shards)
            AS c(seq, at_ms, agent_id, provider, model, input_tokens, output_tokens, cost_nanos, day_ms, month_ms, shard)
    ), recorded AS (
        INSERT INTO spend (replica, seq, at_ms, agent_id, provider, model, input_tokens, output_tokens, cost_nanos)
        SELECT p_replica, c.seq, c.at_ms, c.agent_id, c.provider, c.model, c.input_tokens, c.output_tokens, c.cost_nanos
          FROM calls c
        ON CONFLICT DO NOTHING
        RETURNING spend.seq
    ), added AS (
        SELECT 'day' AS kind, c.day_ms AS start_ms, c.shard, c.cost_nanos FROM calls c JOIN recorded USING (seq)
        UNION ALL
        SELECT 'month', c.month_ms, c.shard, c.cost_nanos FROM calls c JOIN recorded USING (seq)
    )
    INSERT INTO spend_totals AS t (kind, start_ms, shard, spent_nanos)
    SELECT a.kind, a.start_ms, a.shard, SUM(a.cost_nanos) FROM added a
     GROUP BY a.kind, a.start_ms, a.shard
     ORDER BY a.kind, a.start_ms, a.shard
    ON CONFLICT (kind, start_ms, shard) DO UPDATE SET spent_nanos = t.spent_nanos + EXCLUDED.spent_nanos;
END $$;

-- Extends the reservations a live replica still holds, drops expired ones,
-- and reads the totals.
CREATE FUNCTION renew(
    p_replica bigint, p_seqs bigint[], p_ttl_ms bigint, p_day_ms bigint, p_month_ms bigint,
    OUT day_spent bigint, OUT month_spent bigint, OUT reserved bigint)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE reservations SET expires_at = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
     WHERE replica = p_replica AND seq = ANY (p_seqs);
    DELETE FROM reservations WHERE expires_at <= clock_timestamp();
    SELECT s.day_spent, s.month_spent, s.reserved INTO day_spent, month_spent, reserved
      FROM standing(p_day_ms, p_month_ms) s;
END $$;

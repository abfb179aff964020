-- Plan-proof lookups: no push may be planned as a scan of an aggregate type's whole history.
--
-- Every push reads each aggregate's current sequence, and pushes with unique constraints delete
-- and probe eventstore.unique_constraints by key. Only the primary keys answer those with one
-- probe. But PL/pgSQL keeps a session's plan until the table's statistics change, and a plan
-- made while statistics are missing or stale (a fresh database, autovacuum off, a bulk load
-- since the last ANALYZE) sees every index as equally cheap on a near-empty table:
-- events_aggregate_type_position shares the primary key's first two columns, and one session
-- that planned `max(sequence) WHERE instance_id = … AND aggregate_type = … AND aggregate_id = …`
-- on it read every event of the aggregate type on every push for as long as it lived. Measured
-- in the W1P benchmark on a server with autovacuum off: 75-150 ms per push at 200 000 events,
-- and all writers down from ~3 500 to ~400 events/s, their calls taking turns on that connection.
--
-- Planner settings cannot fix the lookup (enable_indexscan = off also penalises index-only
-- scans, and a penalised plan's cost then triggers JIT compilation on every call). Its shape
-- does: one row comparison over all four primary-key columns, read backwards, first row only.
-- No other index can serve that order, so every other plan must read and sort a range the
-- planner sizes by the first column alone (a third of the table without statistics, at least the
-- instance's events with them), while the probe stops at its first row; it wins at any size. The statements on unique_constraints may only use nested loops, and
-- no sequential scans, inside eventstore.push.

-- An aggregate's current sequence (0 when it has no events), by one backward primary-key probe:
-- the last key at or before (instance, type, id, i64::MAX) is this aggregate's latest event if it
-- has any, else another aggregate's (then 0).
CREATE FUNCTION eventstore.current_sequence(
    p_instance TEXT, p_aggregate_type TEXT, p_aggregate_id TEXT
) RETURNS BIGINT
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_last RECORD;
BEGIN
    SELECT ev.instance_id, ev.aggregate_type, ev.aggregate_id, ev.sequence INTO v_last
    FROM eventstore.events ev
    WHERE (ev.instance_id, ev.aggregate_type, ev.aggregate_id, ev.sequence)
          <= (p_instance, p_aggregate_type, p_aggregate_id, 9223372036854775807)
    ORDER BY ev.instance_id DESC, ev.aggregate_type DESC, ev.aggregate_id DESC, ev.sequence DESC
    LIMIT 1;
    IF FOUND AND v_last.instance_id = p_instance AND v_last.aggregate_type = p_aggregate_type
       AND v_last.aggregate_id = p_aggregate_id THEN
        RETURN v_last.sequence;
    END IF;
    RETURN 0;
END
$$;

-- The advisory-lock key of an aggregate: one definition for push's lone-command and general
-- paths, which must take the very same lock for the same aggregate. Inlined by the planner.
CREATE FUNCTION eventstore.aggregate_lock_key(
    p_instance TEXT, p_aggregate_type TEXT, p_aggregate_id TEXT
) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended(p_instance || chr(31) || p_aggregate_type || chr(31) || p_aggregate_id, 0);

-- append_events and push as before, with their sequence lookups through current_sequence, and
-- push with a lean path for a lone command.
CREATE OR REPLACE FUNCTION eventstore.append_events(
    p_push INTEGER[], p_instance TEXT[], p_aggregate_type TEXT[], p_aggregate_id TEXT[],
    p_event_type TEXT[], p_revision INTEGER[], p_creator TEXT[], p_owner TEXT[], p_payload TEXT[],
    p_from INTEGER, p_to INTEGER, p_position NUMERIC, p_now TIMESTAMPTZ
) RETURNS TABLE (r_push INTEGER, r_sequence BIGINT, r_in_tx_order INTEGER)
LANGUAGE plpgsql AS $$
-- PL/pgSQL rather than SQL: a PL/pgSQL function keeps its statement's plan for the session, where a
-- SQL function is planned again on every call, which costs as much as a small push itself.
BEGIN
    -- No joins on purpose: the planner cannot see how many elements the arrays hold and, guessing
    -- low, would pick nested loops that turn a 5 000-event push quadratic. Each aggregate's current
    -- sequence is looked up once (on its first command, by primary key) and spread over its other
    -- commands with a window; the push a row belongs to is read back from p_push by in_tx_order.
    RETURN QUERY
    WITH cmd AS (
        SELECT (ord - 1)::INTEGER AS ord, i, t, a, e, r, c, o, pl,
               row_number() OVER (PARTITION BY i, t, a ORDER BY ord) AS nth
        FROM unnest(p_push, p_instance, p_aggregate_type, p_aggregate_id, p_event_type,
                    p_revision, p_creator, p_owner, p_payload)
             WITH ORDINALITY AS x(push, i, t, a, e, r, c, o, pl, ord)
        WHERE push BETWEEN p_from AND p_to
    ), looked_up AS (
        SELECT cmd.*,
               CASE WHEN cmd.nth = 1 THEN eventstore.current_sequence(cmd.i, cmd.t, cmd.a)
               END AS current_sequence
        FROM cmd
    ), numbered AS (
        SELECT looked_up.*,
               max(looked_up.current_sequence) OVER (PARTITION BY i, t, a) + looked_up.nth AS next_sequence
        FROM looked_up
    ), inserted AS (
        INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence,
                                       event_type, revision, created_at, creator, owner, payload,
                                       position, in_tx_order)
        SELECT n.i, n.t, n.a, n.next_sequence, n.e, n.r, p_now, n.c, n.o, n.pl::jsonb, p_position, n.ord
        FROM numbered n
        RETURNING sequence, in_tx_order
    )
    SELECT p_push[inserted.in_tx_order + 1], inserted.sequence, inserted.in_tx_order
    FROM inserted
    ORDER BY inserted.in_tx_order;
END
$$;

CREATE OR REPLACE FUNCTION eventstore.push(
    p_push INTEGER[], p_instance TEXT[], p_aggregate_type TEXT[], p_aggregate_id TEXT[],
    p_event_type TEXT[], p_revision INTEGER[], p_creator TEXT[], p_owner TEXT[], p_payload TEXT[],
    p_expected BIGINT[],
    u_push INTEGER[], u_op TEXT[], u_instance TEXT[], u_type TEXT[], u_value TEXT[]
) RETURNS TABLE (
    r_push INTEGER, r_sequence BIGINT, r_in_tx_order INTEGER, r_position NUMERIC,
    r_created_at TIMESTAMPTZ, r_error TEXT, r_error_args BIGINT[]
)
LANGUAGE plpgsql
-- Its unique-constraint statements may only probe indexes in nested loops, whatever the
-- statistics said when a session first planned them (see the top of this file).
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_position  NUMERIC;
    v_now       TIMESTAMPTZ := now();
    v_last_push INTEGER := coalesce(p_push[array_upper(p_push, 1)], -1);
    v_push      INTEGER;
    v_conflict  RECORD;
    v_add       RECORD;
    v_failed_op BIGINT;
BEGIN
    -- One command, no expectation, no unique constraint (a lone push on a quiet store, and most
    -- pushes under light load): the same lock, position and numbering as below, but as plain
    -- expressions and one INSERT, without the general path's set-based statements (a quarter less
    -- CPU per call in pgbench).
    IF cardinality(p_push) = 1 AND cardinality(u_push) = 0 AND p_expected[1] IS NULL THEN
        PERFORM pg_advisory_xact_lock(
            eventstore.aggregate_lock_key(p_instance[1], p_aggregate_type[1], p_aggregate_id[1]));
        v_position := pg_current_xact_id()::text::numeric;
        INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence,
                                       event_type, revision, created_at, creator, owner, payload,
                                       position, in_tx_order)
        VALUES (p_instance[1], p_aggregate_type[1], p_aggregate_id[1],
                eventstore.current_sequence(p_instance[1], p_aggregate_type[1], p_aggregate_id[1]) + 1,
                p_event_type[1], p_revision[1], v_now, p_creator[1], p_owner[1], p_payload[1]::jsonb,
                v_position, 0)
        RETURNING sequence INTO r_sequence;
        r_push := 0; r_in_tx_order := 0; r_position := v_position; r_created_at := v_now;
        r_error := NULL; r_error_args := NULL;
        RETURN NEXT;
        RETURN;
    END IF;

    -- Lock every aggregate and every unique value the call touches, in key order, so two calls that
    -- share keys queue instead of deadlocking. Sequences are then computed under the lock, so
    -- concurrent writers to one aggregate never collide and never retry.
    PERFORM pg_advisory_xact_lock(k)
    FROM (
        SELECT eventstore.aggregate_lock_key(i, t, a) AS k
        FROM unnest(p_instance, p_aggregate_type, p_aggregate_id) AS x(i, t, a)
        UNION
        SELECT hashtextextended('unique' || chr(31) || i || chr(31) || t || chr(31) || v, 0)
        FROM unnest(u_op, u_instance, u_type, u_value) AS y(op, i, t, v)
        WHERE op <> 'clear'
    ) keys
    ORDER BY k;

    -- The position is this transaction's id, taken only now that the locks are held: a later push to
    -- the same aggregate is assigned a later id, so position order agrees with sequence order.
    v_position := pg_current_xact_id()::text::numeric;

    IF cardinality(u_push) = 0 AND NOT EXISTS (SELECT 1 FROM unnest(p_expected) e WHERE e IS NOT NULL) THEN
        -- Fast path: nothing can fail per push, so all pushes go in as one statement.
        RETURN QUERY
        SELECT a.r_push, a.r_sequence, a.r_in_tx_order, v_position, v_now, NULL::TEXT, NULL::BIGINT[]
        FROM eventstore.append_events(p_push, p_instance, p_aggregate_type, p_aggregate_id,
                                      p_event_type, p_revision, p_creator, p_owner, p_payload,
                                      0, v_last_push, v_position, v_now) a;
        RETURN;
    END IF;

    FOR v_push IN 0 .. v_last_push LOOP
        -- Expected sequences compare with the aggregate before this push.
        SELECT c.ord, c.expected, cur.seq INTO v_conflict
        FROM unnest(p_push, p_instance, p_aggregate_type, p_aggregate_id, p_expected)
             WITH ORDINALITY AS c(push, i, t, a, expected, ord)
        CROSS JOIN LATERAL (
            SELECT eventstore.current_sequence(c.i, c.t, c.a) AS seq
        ) cur
        WHERE c.push = v_push AND c.expected IS NOT NULL AND c.expected <> cur.seq
        ORDER BY c.ord
        LIMIT 1;
        IF FOUND THEN
            r_push := v_push; r_error := 'conflict';
            r_error_args := ARRAY[v_conflict.ord - 1, v_conflict.expected, v_conflict.seq];
            r_sequence := NULL; r_in_tx_order := NULL; r_position := NULL; r_created_at := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF v_push = ANY(u_push) THEN
            -- A subtransaction, so a clash undoes this push's removals and earlier additions only.
            BEGIN
                DELETE FROM eventstore.unique_constraints uc
                USING unnest(u_push, u_op, u_instance, u_type, u_value) AS r(push, op, i, t, v)
                WHERE r.push = v_push AND r.op = 'remove'
                  AND uc.instance_id = r.i AND uc.unique_type = r.t AND uc.unique_field = r.v;
                DELETE FROM eventstore.unique_constraints uc
                USING unnest(u_push, u_op, u_instance) AS r(push, op, i)
                WHERE r.push = v_push AND r.op = 'clear' AND uc.instance_id = r.i;
                FOR v_add IN
                    SELECT r.ord, r.i, r.t, r.v
                    FROM unnest(u_push, u_op, u_instance, u_type, u_value)
                         WITH ORDINALITY AS r(push, op, i, t, v, ord)
                    WHERE r.push = v_push AND r.op = 'add'
                    ORDER BY r.ord
                LOOP
                    INSERT INTO eventstore.unique_constraints (instance_id, unique_type, unique_field)
                    VALUES (v_add.i, v_add.t, v_add.v)
                    ON CONFLICT DO NOTHING;
                    IF NOT FOUND THEN
                        v_failed_op := v_add.ord - 1;
                        RAISE EXCEPTION USING ERRCODE = 'SU001';
                    END IF;
                END LOOP;
                RETURN QUERY
                SELECT a.r_push, a.r_sequence, a.r_in_tx_order, v_position, v_now, NULL::TEXT, NULL::BIGINT[]
                FROM eventstore.append_events(p_push, p_instance, p_aggregate_type, p_aggregate_id,
                                              p_event_type, p_revision, p_creator, p_owner, p_payload,
                                              v_push, v_push, v_position, v_now) a;
            EXCEPTION WHEN SQLSTATE 'SU001' THEN
                r_push := v_push; r_error := 'unique'; r_error_args := ARRAY[v_failed_op];
                r_sequence := NULL; r_in_tx_order := NULL; r_position := NULL; r_created_at := NULL;
                RETURN NEXT;
            END;
        ELSE
            RETURN QUERY
            SELECT a.r_push, a.r_sequence, a.r_in_tx_order, v_position, v_now, NULL::TEXT, NULL::BIGINT[]
            FROM eventstore.append_events(p_push, p_instance, p_aggregate_type, p_aggregate_id,
                                          p_event_type, p_revision, p_creator, p_owner, p_payload,
                                          v_push, v_push, v_position, v_now) a;
        END IF;
    END LOOP;
END
$$;

-- Pushes a group of independent pushes in one statement (one round trip, one transaction).
--
-- Commands arrive as parallel arrays; p_push gives each command's push (0, 1, 2… in order, the
-- commands of one push contiguous); p_metadata is each command's metadata as JSON text, NULL for
-- none. Unique-constraint operations arrive the same way (u_*), with u_op 'add', 'remove' or
-- 'clear' (remove all of the instance). Idempotency keys too (k_*): one entry per keyed push, with
-- the key's instance, the key and the fingerprint of the push's commands; a key recorded longer
-- than p_key_retention ago counts as absent.
--
-- Every push gets its own outcome: either one row per command (sequence, in_tx_order, position,
-- created_at) or one error row ('conflict' with [command index, expected, actual], 'unique' with
-- [operation index]). A failed push leaves nothing behind; the others are stored. A call touching an
-- instance moved away from this database raises SM001 (eventstore.enter_instances) and stores
-- nothing; the client splits it, so only the pushes to that instance are refused. A keyed push
-- whose key is already recorded stores nothing and returns one row: 'replay' with the recorded
-- position in r_position and [first in_tx_order, event count] (the client reads those events back
-- after the call), or 'key_reused' when the key was recorded with other commands. A push that
-- stores its events records its key in the same transaction; a failed push records none. Anything
-- else that goes wrong raises and fails the whole call, which the client then splits.
--
-- SECURITY DEFINER with a fixed search_path: the application role may not insert into
-- eventstore.events or eventstore.unique_constraints itself, so events enter only through the
-- push functions, with sequences and positions they compute (docs/schema.md, "Roles").
CREATE OR REPLACE FUNCTION eventstore.push(
    p_push INTEGER[], p_instance TEXT[], p_aggregate_type TEXT[], p_aggregate_id TEXT[],
    p_event_type TEXT[], p_revision INTEGER[], p_creator TEXT[], p_owner TEXT[], p_payload TEXT[],
    p_expected BIGINT[], p_metadata TEXT[],
    u_push INTEGER[], u_op TEXT[], u_instance TEXT[], u_type TEXT[], u_value TEXT[],
    k_push INTEGER[], k_instance TEXT[], k_key TEXT[], k_fingerprint TEXT[],
    p_key_retention INTERVAL
) RETURNS TABLE (
    r_push INTEGER, r_sequence BIGINT, r_in_tx_order INTEGER, r_position NUMERIC,
    r_created_at TIMESTAMPTZ, r_error TEXT, r_error_args BIGINT[]
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_position  NUMERIC;
    v_now       TIMESTAMPTZ := now();
    v_last_push INTEGER := coalesce(p_push[array_upper(p_push, 1)], -1);
    v_push      INTEGER;
    v_conflict  RECORD;
    v_add       RECORD;
    v_failed_op BIGINT;
    v_keyed     BOOLEAN := cardinality(k_push) > 0;
    v_per_push  BOOLEAN;
    v_key_instance TEXT;
    v_key          TEXT;
    v_key_fingerprint TEXT;
    v_recorded  RECORD;
BEGIN
    -- One command, no expectation, no unique constraint, no key: eventstore.push_one, the one
    -- definition of that path.
    IF cardinality(p_push) = 1 AND cardinality(u_push) = 0 AND p_expected[1] IS NULL
       AND NOT v_keyed THEN
        RETURN QUERY
        SELECT 0, one.r_sequence, 0, one.r_position, one.r_created_at, NULL::TEXT, NULL::BIGINT[]
        FROM eventstore.push_one(p_instance[1], p_aggregate_type[1], p_aggregate_id[1],
                                 p_event_type[1], p_revision[1], p_creator[1], p_owner[1],
                                 p_payload[1], p_metadata[1]) one;
        RETURN;
    END IF;

    PERFORM eventstore.begin_push();
    -- Every instance the call touches, before the aggregate locks: refused here if it moved away.
    PERFORM eventstore.enter_instances(p_instance || u_instance || k_instance);

    -- Lock every aggregate, unique value and idempotency key the call touches, in key order, so two
    -- calls that share keys queue instead of deadlocking. Sequences are then computed under the
    -- lock, so concurrent writers to one aggregate never collide and never retry; and a push with
    -- an idempotency key finds the key recorded if a push with it committed before, so concurrent
    -- retries store one copy.
    PERFORM pg_advisory_xact_lock(k)
    FROM (
        SELECT eventstore.aggregate_lock_key(i, t, a) AS k
        FROM unnest(p_instance, p_aggregate_type, p_aggregate_id) AS x(i, t, a)
        UNION
        SELECT eventstore.unique_lock_key(i, t, v)
        FROM unnest(u_op, u_instance, u_type, u_value) AS y(op, i, t, v)
        WHERE op <> 'clear'
        UNION
        SELECT eventstore.idempotency_lock_key(i, key)
        FROM unnest(k_instance, k_key) AS z(i, key)
    ) keys
    ORDER BY k;

    -- The position is this transaction's id, taken only now that the locks are held: a later push to
    -- the same aggregate is assigned a later id, so position order agrees with sequence order.
    v_position := pg_current_xact_id()::text::numeric;

    v_per_push := cardinality(u_push) > 0
                  OR EXISTS (SELECT 1 FROM unnest(p_expected) e WHERE e IS NOT NULL);
    IF v_keyed AND NOT v_per_push THEN
        -- Record every key before appending, in one statement: where a push's events will be is
        -- known already (this position; in_tx_order = the command's place in the call). A key
        -- that is new, or recorded longer ago than the retention, is written; one that is live
        -- (a retry) is left alone and not returned, and a key two pushes share is written once.
        -- All written (every first attempt): the fast path below stores the events. Otherwise
        -- the rows just written are taken back and every push goes through the per-push path,
        -- which tells replays from first pushes. ON CONFLICT finds a live key through the
        -- primary key whatever the statistics say; a separate probe planned while the table was
        -- small kept a sequential scan for the session and slowed keyed pushes as it grew.
        WITH pushes AS (
            SELECT x.push, (min(x.ord) - 1)::INTEGER AS first, count(*)::INTEGER AS n
            FROM unnest(p_push) WITH ORDINALITY AS x(push, ord)
            GROUP BY x.push
        ), written AS (
            INSERT INTO eventstore.idempotency_keys AS ik
                (instance_id, key, fingerprint, position, first_in_tx_order, event_count, created_at)
            SELECT DISTINCT ON (k.i, k.key) k.i, k.key, k.fp, v_position, c.first, c.n, v_now
            FROM unnest(k_push, k_instance, k_key, k_fingerprint) AS k(push, i, key, fp)
            JOIN pushes c ON c.push = k.push
            ORDER BY k.i, k.key, k.push
            ON CONFLICT (instance_id, key) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, position = EXCLUDED.position,
                first_in_tx_order = EXCLUDED.first_in_tx_order,
                event_count = EXCLUDED.event_count, created_at = EXCLUDED.created_at
            WHERE ik.created_at <= v_now - p_key_retention
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM written) < cardinality(k_push) INTO v_per_push;
    END IF;

    IF NOT v_per_push THEN
        -- Fast path: nothing can fail per push, so all pushes go in as one statement (their keys,
        -- if any, are recorded above).
        RETURN QUERY
        SELECT a.r_push, a.r_sequence, a.r_in_tx_order, v_position, v_now, NULL::TEXT, NULL::BIGINT[]
        FROM eventstore.append_events(p_push, p_instance, p_aggregate_type, p_aggregate_id,
                                      p_event_type, p_revision, p_creator, p_owner, p_payload,
                                      p_metadata, 0, v_last_push, v_position, v_now) a;
        RETURN;
    END IF;

    -- Only this path runs statements on eventstore.unique_constraints and the expected-sequence
    -- check: they may only probe indexes in nested loops, whatever the statistics said when the
    -- session first planned them. Set here for the rest of the transaction, which is the push
    -- call's own, rather than as SET clauses, which every call would pay for.
    PERFORM set_config('enable_seqscan', 'off', true),
            set_config('enable_hashjoin', 'off', true),
            set_config('enable_mergejoin', 'off', true);

    -- Take back the keys recorded above for the fast path that did not happen: each push records
    -- its own below, once it is stored. (This transaction's position marks exactly those rows; an
    -- expired row they took over is gone, which is what expired means.)
    IF v_keyed THEN
        DELETE FROM eventstore.idempotency_keys ik
        USING unnest(k_instance, k_key) AS k(i, key)
        WHERE ik.instance_id = k.i AND ik.key = k.key AND ik.position = v_position;
    END IF;

    FOR v_push IN 0 .. v_last_push LOOP
        -- A recorded key answers for its push, which stores nothing. Read inside this transaction,
        -- so a key an earlier push of this call recorded counts: two pushes of one call with one
        -- key store one copy.
        v_key := NULL;
        IF v_keyed THEN
            SELECT k.i, k.key, k.fp INTO v_key_instance, v_key, v_key_fingerprint
            FROM unnest(k_push, k_instance, k_key, k_fingerprint) AS k(push, i, key, fp)
            WHERE k.push = v_push;
        END IF;
        IF v_key IS NOT NULL THEN
            SELECT ik.fingerprint, ik.position, ik.first_in_tx_order, ik.event_count INTO v_recorded
            FROM eventstore.idempotency_keys ik
            WHERE ik.instance_id = v_key_instance AND ik.key = v_key
              AND ik.created_at > v_now - p_key_retention;
            IF FOUND THEN
                r_push := v_push; r_sequence := NULL; r_in_tx_order := NULL; r_created_at := NULL;
                IF v_recorded.fingerprint = v_key_fingerprint THEN
                    r_error := 'replay'; r_position := v_recorded.position;
                    r_error_args := ARRAY[v_recorded.first_in_tx_order, v_recorded.event_count];
                ELSE
                    r_error := 'key_reused'; r_position := NULL; r_error_args := NULL;
                END IF;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;

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
                                              p_metadata, v_push, v_push, v_position, v_now) a;
                -- Inside the subtransaction: the key is recorded exactly when the events are.
                IF v_key IS NOT NULL THEN
                    PERFORM eventstore.record_idempotency_key(v_key_instance, v_key,
                        v_key_fingerprint, v_position, p_push, v_push, v_now);
                END IF;
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
                                          p_metadata, v_push, v_push, v_position, v_now) a;
            IF v_key IS NOT NULL THEN
                PERFORM eventstore.record_idempotency_key(v_key_instance, v_key,
                    v_key_fingerprint, v_position, p_push, v_push, v_now);
            END IF;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION eventstore.push(
    INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[], INTEGER[], TEXT[], TEXT[], TEXT[], BIGINT[], TEXT[],
    INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[],
    INTEGER[], TEXT[], TEXT[], TEXT[], INTERVAL
) FROM PUBLIC;

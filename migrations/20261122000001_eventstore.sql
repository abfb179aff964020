-- The event store: events, unique constraints, the push function and the append-only guard.
--
-- Invariant: every primary key and unique index starts with instance_id, so the schema can be
-- distributed by instance (Citus-style) without change. See ARCHITECTURE.md.

CREATE SCHEMA IF NOT EXISTS eventstore;

CREATE TABLE eventstore.events (
    instance_id    TEXT        NOT NULL,
    aggregate_type TEXT        NOT NULL,
    aggregate_id   TEXT        NOT NULL,
    sequence       BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    revision       INTEGER     NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    creator        TEXT        NOT NULL,
    owner          TEXT        NOT NULL,
    payload        JSONB,
    -- The id of the transaction that wrote the event (an xid8, as a number). See docs/position.md.
    position       NUMERIC     NOT NULL,
    in_tx_order    INTEGER     NOT NULL,
    PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence)
);

COMMENT ON COLUMN eventstore.events.position IS
    'xid8 of the writing transaction; read only below pg_snapshot_xmin(pg_current_snapshot()) to never skip a late commit';

-- The projection read: one instance, some aggregate types and event types, after a position.
CREATE INDEX events_projection
    ON eventstore.events (instance_id, aggregate_type, event_type, position, in_tx_order);
-- The projection read of whole aggregate types (no event-type filter): without it, such a read
-- would range over the type's entire history in the index above and sort, on every batch.
CREATE INDEX events_aggregate_type_position
    ON eventstore.events (instance_id, aggregate_type, position, in_tx_order);
-- Position order within an instance.
CREATE INDEX events_instance_position
    ON eventstore.events (instance_id, position, in_tx_order);
-- Position order over the whole store (catch-up across instances, mirror). Not unique, so the
-- instance_id-first invariant does not apply.
CREATE INDEX events_position
    ON eventstore.events (position, in_tx_order);

CREATE TABLE eventstore.unique_constraints (
    instance_id  TEXT NOT NULL,
    unique_type  TEXT NOT NULL,
    unique_field TEXT NOT NULL,
    PRIMARY KEY (instance_id, unique_type, unique_field)
);

-- Events are immutable. Only eventstore.remove_instance may delete, and nothing may update.
CREATE FUNCTION eventstore.refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('strata.removing_instance', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'eventstore.events is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'events can only be removed with eventstore.remove_instance(instance_id)';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_event_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_event_change();

-- The one administrative way to delete events: remove an instance with all its unique constraints.
CREATE FUNCTION eventstore.remove_instance(p_instance_id TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    removed BIGINT;
BEGIN
    PERFORM set_config('strata.removing_instance', 'on', true);
    DELETE FROM eventstore.events WHERE instance_id = p_instance_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM eventstore.unique_constraints WHERE instance_id = p_instance_id;
    PERFORM set_config('strata.removing_instance', 'off', true);
    RETURN removed;
END
$$;

-- Appends the commands numbered p_from..p_to (group-local push indexes) of a push call. Sequences
-- continue from each aggregate's current maximum, which is exact because the caller holds the
-- aggregate's advisory lock and runs this statement with a snapshot taken after acquiring it.
CREATE FUNCTION eventstore.append_events(
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
               CASE WHEN cmd.nth = 1 THEN
                   COALESCE((SELECT max(ev.sequence) FROM eventstore.events ev
                             WHERE ev.instance_id = cmd.i AND ev.aggregate_type = cmd.t
                               AND ev.aggregate_id = cmd.a), 0)
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

-- Pushes a group of independent pushes in one statement (one round trip, one transaction).
--
-- Commands arrive as parallel arrays; p_push gives each command's push (0, 1, 2… in order, the
-- commands of one push contiguous). Unique-constraint operations arrive the same way (u_*), with
-- u_op 'add', 'remove' or 'clear' (remove all of the instance).
--
-- Every push gets its own outcome: either one row per command (sequence, in_tx_order, position,
-- created_at) or one error row ('conflict' with [command index, expected, actual], 'unique' with
-- [operation index]). A failed push leaves nothing behind; the others are stored. Anything else
-- that goes wrong raises and fails the whole call, which the client then splits.
CREATE FUNCTION eventstore.push(
    p_push INTEGER[], p_instance TEXT[], p_aggregate_type TEXT[], p_aggregate_id TEXT[],
    p_event_type TEXT[], p_revision INTEGER[], p_creator TEXT[], p_owner TEXT[], p_payload TEXT[],
    p_expected BIGINT[],
    u_push INTEGER[], u_op TEXT[], u_instance TEXT[], u_type TEXT[], u_value TEXT[]
) RETURNS TABLE (
    r_push INTEGER, r_sequence BIGINT, r_in_tx_order INTEGER, r_position NUMERIC,
    r_created_at TIMESTAMPTZ, r_error TEXT, r_error_args BIGINT[]
)
LANGUAGE plpgsql AS $$
DECLARE
    v_position  NUMERIC;
    v_now       TIMESTAMPTZ := now();
    v_last_push INTEGER := coalesce(p_push[array_upper(p_push, 1)], -1);
    v_push      INTEGER;
    v_conflict  RECORD;
    v_add       RECORD;
    v_failed_op BIGINT;
BEGIN
    -- Lock every aggregate and every unique value the call touches, in key order, so two calls that
    -- share keys queue instead of deadlocking. Sequences are then computed under the lock, so
    -- concurrent writers to one aggregate never collide and never retry.
    PERFORM pg_advisory_xact_lock(k)
    FROM (
        SELECT hashtextextended(i || chr(31) || t || chr(31) || a, 0) AS k
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
            SELECT COALESCE(max(ev.sequence), 0) AS seq FROM eventstore.events ev
            WHERE ev.instance_id = c.i AND ev.aggregate_type = c.t AND ev.aggregate_id = c.a
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

-- Appends the commands numbered p_from..p_to (group-local push indexes) of a push call, at
-- p_position. Sequences continue from each aggregate's current sequence, which is exact because the
-- caller (eventstore.push) holds the aggregate's advisory lock and runs this statement with a
-- snapshot taken after acquiring it. Not callable on its own: only push, which checks first.
CREATE OR REPLACE FUNCTION eventstore.append_events(
    p_push INTEGER[], p_instance TEXT[], p_aggregate_type TEXT[], p_aggregate_id TEXT[],
    p_event_type TEXT[], p_revision INTEGER[], p_creator TEXT[], p_owner TEXT[], p_payload TEXT[],
    p_metadata TEXT[], p_from INTEGER, p_to INTEGER, p_position NUMERIC, p_now TIMESTAMPTZ
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
        SELECT (ord - 1)::INTEGER AS ord, i, t, a, e, r, c, o, pl, md,
               row_number() OVER (PARTITION BY i, t, a ORDER BY ord) AS nth
        FROM unnest(p_push, p_instance, p_aggregate_type, p_aggregate_id, p_event_type,
                    p_revision, p_creator, p_owner, p_payload, p_metadata)
             WITH ORDINALITY AS x(push, i, t, a, e, r, c, o, pl, md, ord)
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
                                       position, in_tx_order, metadata)
        SELECT n.i, n.t, n.a, n.next_sequence, n.e, n.r, p_now, n.c, n.o, n.pl::jsonb, p_position,
               n.ord, n.md::jsonb
        FROM numbered n
        RETURNING sequence, in_tx_order
    )
    SELECT p_push[inserted.in_tx_order + 1], inserted.sequence, inserted.in_tx_order
    FROM inserted
    ORDER BY inserted.in_tx_order;
END
$$;

REVOKE ALL ON FUNCTION eventstore.append_events(
    INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[], INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[],
    INTEGER, INTEGER, NUMERIC, TIMESTAMPTZ
) FROM PUBLIC;

-- An aggregate's current sequence (0 when it has no events), by one backward primary-key probe:
-- the last key at or before (instance, type, id, i64::MAX) is this aggregate's latest event if it
-- has any, else another aggregate's. Only then is the archive asked, by a primary-key probe of
-- eventstore.archived_events, so a push to an archived aggregate continues its sequence instead of
-- starting again at 1; an aggregate with a hot event (every push but an aggregate's first) never
-- pays for it (docs/operations.md, "Archiving").
--
-- The shape is the point. PL/pgSQL keeps a session's plan until the table's statistics change,
-- and with missing or stale statistics `max(sequence) WHERE instance_id = … AND aggregate_type =
-- … AND aggregate_id = …` may be planned on events_aggregate_type_position, reading the whole
-- aggregate type on every push for the session's life. A backward read in full primary-key order
-- can come from no other index, and the probe stops at its first row, so it wins at any size
-- (docs/schema.md, "Sequence lookups that statistics cannot spoil").
CREATE OR REPLACE FUNCTION eventstore.current_sequence(
    p_instance TEXT, p_aggregate_type TEXT, p_aggregate_id TEXT
) RETURNS BIGINT
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_last     RECORD;
    v_archived BIGINT;
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
    -- Equality on the key's first three columns and its order: only the primary key serves it.
    SELECT a.sequence INTO v_archived
    FROM eventstore.archived_events a
    WHERE a.instance_id = p_instance AND a.aggregate_type = p_aggregate_type
      AND a.aggregate_id = p_aggregate_id
    ORDER BY a.sequence DESC
    LIMIT 1;
    RETURN coalesce(v_archived, 0);
END
$$;

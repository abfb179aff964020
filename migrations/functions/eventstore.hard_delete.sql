-- Hard delete: removes one aggregate's events (p_aggregate_type and p_aggregate_id given) or a
-- whole instance's (both NULL), hot and archived, with what points at them, in one transaction,
-- and records it in eventstore.removals. The one exception to append-only besides
-- remove_instance and the archive's moves (docs/operations.md, "Hard delete").
--
-- Refuses (r_outcome 'refused', nothing removed) while a projection reading the aggregate's type
-- has a checkpoint at or after the earliest removed event: its read model holds rows derived from
-- those events. With p_rebuild it asks those projections to rebuild the instance instead, in this
-- transaction (projections.requests, as `strata projections rebuild` does). r_outcome is
-- 'not_found' when there is nothing to remove.
--
-- Also removed: idempotency keys whose recorded push includes a removed event (a retry would
-- otherwise be answered with events that are gone; it now pushes again), the failed events of the
-- removed events, and for an instance all its unique constraints and archive manifest. Unique
-- constraints carry no aggregate reference, so an aggregate's are released only when named in
-- p_release_unique_types/values.
CREATE OR REPLACE FUNCTION eventstore.hard_delete(
    p_instance TEXT, p_aggregate_type TEXT, p_aggregate_id TEXT, p_actor TEXT, p_reason TEXT,
    p_rebuild BOOLEAN, p_release_unique_types TEXT[], p_release_unique_values TEXT[]
) RETURNS TABLE (
    r_outcome TEXT, r_removal_id BIGINT, r_hot_events BIGINT, r_archived_events BIGINT,
    r_idempotency_keys BIGINT, r_unique_constraints BIGINT, r_failed_events BIGINT,
    r_projections TEXT[]
)
LANGUAGE plpgsql AS $$
DECLARE
    v_whole      BOOLEAN := p_aggregate_type IS NULL AND p_aggregate_id IS NULL;
    v_types      TEXT[];
    v_first      RECORD;
    v_last       RECORD;
    v_checksum   NUMERIC;
BEGIN
    IF coalesce(p_instance, '') = '' OR coalesce(p_actor, '') = '' OR coalesce(p_reason, '') = ''
       OR (p_aggregate_type IS NULL) <> (p_aggregate_id IS NULL)
       OR p_aggregate_type = '' OR p_aggregate_id = ''
       OR cardinality(coalesce(p_release_unique_types, '{}'))
          <> cardinality(coalesce(p_release_unique_values, '{}'))
       OR (v_whole AND cardinality(coalesce(p_release_unique_types, '{}')) > 0) THEN
        RAISE EXCEPTION 'hard_delete: an instance, an actor and a reason are required, an aggregate '
                        'type and id go together, and unique constraints are released per aggregate '
                        'as type/value pairs'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT v_whole THEN
        v_types := ARRAY[p_aggregate_type];
        -- No push to the aggregate can land between the count and the delete.
        PERFORM pg_advisory_xact_lock(
            eventstore.aggregate_lock_key(p_instance, p_aggregate_type, p_aggregate_id));
    END IF;

    -- The projections' leases: none of them can move its checkpoint while this runs.
    PERFORM pg_advisory_xact_lock(projections.lease_key(p.projection_name, p_instance))
    FROM projections.reading(p_instance, v_types) p
    ORDER BY projections.lease_key(p.projection_name, p_instance);

    SELECT e.position, e.in_tx_order INTO v_first
    FROM (SELECT h.position, h.in_tx_order FROM eventstore.events h
          WHERE h.instance_id = p_instance
            AND (v_whole OR (h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id))
          UNION ALL
          SELECT a.position, a.in_tx_order FROM eventstore.archived_events a
          WHERE a.instance_id = p_instance
            AND (v_whole OR (a.aggregate_type = p_aggregate_type AND a.aggregate_id = p_aggregate_id))
         ) e
    ORDER BY e.position, e.in_tx_order LIMIT 1;
    IF NOT FOUND THEN
        r_outcome := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT e.position, e.in_tx_order INTO v_last
    FROM (SELECT h.position, h.in_tx_order FROM eventstore.events h
          WHERE h.instance_id = p_instance
            AND (v_whole OR (h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id))
          UNION ALL
          SELECT a.position, a.in_tx_order FROM eventstore.archived_events a
          WHERE a.instance_id = p_instance
            AND (v_whole OR (a.aggregate_type = p_aggregate_type AND a.aggregate_id = p_aggregate_id))
         ) e
    ORDER BY e.position DESC, e.in_tx_order DESC LIMIT 1;

    SELECT coalesce(array_agg(p.projection_name ORDER BY p.projection_name), '{}') INTO r_projections
    FROM projections.reading(p_instance, v_types) p
    WHERE p.position IS NOT NULL
      AND (p.position, p.in_tx_order) >= (v_first.position, v_first.in_tx_order);
    IF cardinality(r_projections) > 0 AND NOT p_rebuild THEN
        r_outcome := 'refused';
        RETURN NEXT;
        RETURN;
    END IF;

    PERFORM set_config('strata.removing_events', 'on', true);

    -- Keys first, while the events they point at can still be found.
    DELETE FROM eventstore.idempotency_keys k
    WHERE k.instance_id = p_instance
      AND (v_whole OR EXISTS (
          SELECT 1 FROM eventstore.events e
          WHERE e.instance_id = p_instance AND e.aggregate_type = p_aggregate_type
            AND e.aggregate_id = p_aggregate_id AND e.position = k.position
            AND e.in_tx_order BETWEEN k.first_in_tx_order
                                  AND k.first_in_tx_order + k.event_count - 1
          UNION ALL
          SELECT 1 FROM eventstore.archived_events e
          WHERE e.instance_id = p_instance AND e.aggregate_type = p_aggregate_type
            AND e.aggregate_id = p_aggregate_id AND e.position = k.position
            AND e.in_tx_order BETWEEN k.first_in_tx_order
                                  AND k.first_in_tx_order + k.event_count - 1));
    GET DIAGNOSTICS r_idempotency_keys = ROW_COUNT;

    DELETE FROM eventstore.events e
    WHERE e.instance_id = p_instance
      AND (v_whole OR (e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id));
    GET DIAGNOSTICS r_hot_events = ROW_COUNT;

    WITH removed AS (
        DELETE FROM eventstore.archived_events e
        WHERE e.instance_id = p_instance
          AND (v_whole OR (e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id))
        RETURNING e.*
    )
    SELECT count(*), coalesce(sum(eventstore.event_digest(
               instance_id, aggregate_type, aggregate_id, sequence, event_type, revision,
               created_at, creator, owner, payload, position, in_tx_order, metadata)), 0)
    INTO r_archived_events, v_checksum
    FROM removed;

    PERFORM set_config('strata.removing_events', 'off', true);

    IF v_whole THEN
        -- A manifest of an instance that is gone describes nothing.
        DELETE FROM eventstore.archive_runs WHERE instance_id = p_instance;
        DELETE FROM eventstore.unique_constraints WHERE instance_id = p_instance;
        GET DIAGNOSTICS r_unique_constraints = ROW_COUNT;
        DELETE FROM projections.failed_events WHERE instance_id = p_instance;
        GET DIAGNOSTICS r_failed_events = ROW_COUNT;
        -- Its subjects' keys go with it (nothing is left for them to open).
        DELETE FROM eventstore.subject_keys WHERE instance_id = p_instance;
        DELETE FROM eventstore.erased_subjects WHERE instance_id = p_instance;
    ELSE
        IF r_archived_events > 0 THEN
            -- Keeps `strata archive verify` balanced: the manifest says what left the archive.
            INSERT INTO eventstore.archive_runs (instance_id, kind, aggregate_types, aggregate_id,
                closing_event_types, batch_size, aggregates, events, checksum, actor, finished_at)
            VALUES (p_instance, 'hard_delete', ARRAY[p_aggregate_type], p_aggregate_id, '{}', 1, 1,
                    r_archived_events, v_checksum, p_actor, now());
        END IF;
        DELETE FROM eventstore.unique_constraints u
        USING unnest(p_release_unique_types, p_release_unique_values) AS r(t, v)
        WHERE u.instance_id = p_instance AND u.unique_type = r.t AND u.unique_field = r.v;
        GET DIAGNOSTICS r_unique_constraints = ROW_COUNT;
        DELETE FROM projections.failed_events f
        WHERE f.instance_id = p_instance AND f.aggregate_type = p_aggregate_type
          AND f.aggregate_id = p_aggregate_id;
        GET DIAGNOSTICS r_failed_events = ROW_COUNT;
    END IF;

    IF p_rebuild AND cardinality(r_projections) > 0 THEN
        INSERT INTO projections.requests (instance_id, projection_name, kind)
        SELECT p_instance, p, 'rebuild' FROM unnest(r_projections) AS p;
    END IF;

    INSERT INTO eventstore.removals (instance_id, aggregate_type, aggregate_id, hot_events,
        archived_events, first_position, first_in_tx_order, last_position, last_in_tx_order,
        idempotency_keys, unique_constraints, failed_events, projections_rebuilt, actor, reason)
    VALUES (p_instance, p_aggregate_type, p_aggregate_id, r_hot_events, r_archived_events,
            v_first.position, v_first.in_tx_order, v_last.position, v_last.in_tx_order,
            r_idempotency_keys, r_unique_constraints, r_failed_events, r_projections, p_actor,
            p_reason)
    RETURNING id INTO r_removal_id;
    r_outcome := 'removed';
    RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION eventstore.hard_delete(TEXT, TEXT, TEXT, TEXT, TEXT, BOOLEAN, TEXT[], TEXT[])
    FROM PUBLIC;

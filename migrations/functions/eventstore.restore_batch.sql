-- One batch of a restore run (eventstore.archive_runs row p_run_id, kind 'restore'): the next
-- batch_size archived aggregates of the run's types (or its one aggregate) move back from
-- eventstore.archived_events to eventstore.events with every column as it was, and the run's row
-- records the batch, in the caller's transaction (see eventstore.archive_batch).
--
-- Restored events keep their old positions, below every checkpoint that passed them before they
-- were archived: projections that processed them then keep what they made of them, and one rebuilt
-- without the archive since needs another rebuild to see them (docs/operations.md, "Archiving").
CREATE OR REPLACE FUNCTION eventstore.restore_batch(p_instance TEXT, p_run_id BIGINT)
RETURNS TABLE (r_done BOOLEAN, r_aggregates BIGINT, r_events BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    v_run      eventstore.archive_runs%ROWTYPE;
    v_types    TEXT[];
    v_ids      TEXT[];
    v_count    INTEGER;
    v_checksum NUMERIC;
BEGIN
    SELECT * INTO v_run FROM eventstore.archive_runs r
    WHERE r.instance_id = p_instance AND r.id = p_run_id AND r.kind = 'restore'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'restore run % of instance % does not exist', p_run_id, p_instance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r_aggregates := 0;
    r_events := 0;
    IF v_run.finished_at IS NOT NULL THEN
        r_done := true;
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT coalesce(array_agg(c.aggregate_type ORDER BY c.aggregate_type, c.aggregate_id), '{}'),
           coalesce(array_agg(c.aggregate_id ORDER BY c.aggregate_type, c.aggregate_id), '{}')
    INTO v_types, v_ids
    FROM (SELECT a.aggregate_type, a.aggregate_id
          FROM eventstore.archived_events a
          WHERE a.instance_id = p_instance
            AND (cardinality(v_run.aggregate_types) = 0
                 OR a.aggregate_type = ANY (v_run.aggregate_types))
            AND (v_run.aggregate_id IS NULL OR a.aggregate_id = v_run.aggregate_id)
            AND (v_run.after_aggregate_type IS NULL
                 OR (a.aggregate_type, a.aggregate_id)
                    > (v_run.after_aggregate_type, v_run.after_aggregate_id))
          GROUP BY a.aggregate_type, a.aggregate_id
          ORDER BY a.aggregate_type, a.aggregate_id
          LIMIT v_run.batch_size) c;
    v_count := cardinality(v_types);

    IF v_count > 0 THEN
        PERFORM pg_advisory_xact_lock(eventstore.aggregate_lock_key(p_instance, c.t, c.i))
        FROM unnest(v_types, v_ids) AS c(t, i)
        ORDER BY eventstore.aggregate_lock_key(p_instance, c.t, c.i);

        PERFORM set_config('strata.removing_events', 'on', true);
        WITH moved AS (
            DELETE FROM eventstore.archived_events a
            USING unnest(v_types, v_ids) AS c(t, i)
            WHERE a.instance_id = p_instance AND a.aggregate_type = c.t AND a.aggregate_id = c.i
            RETURNING a.*
        ), restored AS (
            INSERT INTO eventstore.events SELECT * FROM moved RETURNING *
        )
        SELECT count(DISTINCT (e.aggregate_type, e.aggregate_id)), count(*),
               coalesce(sum(eventstore.event_digest(
                   e.instance_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                   e.revision, e.created_at, e.creator, e.owner, e.payload, e.position,
                   e.in_tx_order, e.metadata)), 0)
        INTO r_aggregates, r_events, v_checksum
        FROM restored e;
        PERFORM set_config('strata.removing_events', 'off', true);
    END IF;

    r_done := eventstore.record_archive_batch(
        p_instance, p_run_id, v_types[v_count], v_ids[v_count], v_count, v_run.batch_size,
        r_aggregates, r_events, v_checksum);
    RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION eventstore.restore_batch(TEXT, BIGINT) FROM PUBLIC;

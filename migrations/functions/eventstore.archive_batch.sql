-- One batch of an archive run (eventstore.archive_runs row p_run_id): the next batch_size
-- candidate aggregates (eventstore.archive_candidates) move from eventstore.events to
-- eventstore.archived_events whole, with every column kept, and the run's row records the batch,
-- all in the caller's transaction: a batch is archived entirely or not at all, and a run that
-- stops resumes after its last committed batch.
--
-- r_outcome: 'moved' (r_done when the run has nothing more to do), 'done' (already finished), or
-- 'refused' with r_projections: projections reading those aggregates that have not yet processed
-- all of their events (checkpoint before the batch's last event, or none). They read only the hot
-- table, so they would never see the archived events; nothing is moved.
CREATE OR REPLACE FUNCTION eventstore.archive_batch(p_instance TEXT, p_run_id BIGINT)
RETURNS TABLE (
    r_outcome TEXT, r_done BOOLEAN, r_aggregates BIGINT, r_events BIGINT, r_projections TEXT[]
)
LANGUAGE plpgsql AS $$
DECLARE
    v_run      eventstore.archive_runs%ROWTYPE;
    v_types    TEXT[];
    v_ids      TEXT[];
    v_count    INTEGER;
    v_last     RECORD;
    v_checksum NUMERIC;
BEGIN
    -- Locks the run: two processes running it take turns, batch by batch.
    SELECT * INTO v_run FROM eventstore.archive_runs r
    WHERE r.instance_id = p_instance AND r.id = p_run_id AND r.kind = 'archive'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'archive run % of instance % does not exist', p_run_id, p_instance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r_aggregates := 0;
    r_events := 0;
    r_projections := '{}';
    IF v_run.finished_at IS NOT NULL THEN
        r_outcome := 'done';
        r_done := true;
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT coalesce(array_agg(c.aggregate_type ORDER BY c.aggregate_type, c.aggregate_id), '{}'),
           coalesce(array_agg(c.aggregate_id ORDER BY c.aggregate_type, c.aggregate_id), '{}')
    INTO v_types, v_ids
    FROM eventstore.archive_candidates(p_instance, v_run.aggregate_types,
        v_run.closing_event_types, v_run.horizon, v_run.after_aggregate_type,
        v_run.after_aggregate_id, v_run.batch_size) c;
    v_count := cardinality(v_types);

    IF v_count > 0 THEN
        -- No push to these aggregates lands between here and the move (pushes take the same lock).
        PERFORM pg_advisory_xact_lock(eventstore.aggregate_lock_key(p_instance, c.t, c.i))
        FROM unnest(v_types, v_ids) AS c(t, i)
        ORDER BY eventstore.aggregate_lock_key(p_instance, c.t, c.i);

        SELECT e.position, e.in_tx_order INTO v_last
        FROM eventstore.events e JOIN unnest(v_types, v_ids) AS c(t, i)
             ON e.instance_id = p_instance AND e.aggregate_type = c.t AND e.aggregate_id = c.i
        ORDER BY e.position DESC, e.in_tx_order DESC LIMIT 1;

        SELECT coalesce(array_agg(p.projection_name ORDER BY p.projection_name), '{}')
        INTO r_projections
        FROM projections.reading(p_instance, ARRAY(SELECT DISTINCT t FROM unnest(v_types) t)) p
        WHERE p.position IS NULL OR (p.position, p.in_tx_order) < (v_last.position, v_last.in_tx_order);
        IF cardinality(r_projections) > 0 THEN
            r_outcome := 'refused';
            r_done := false;
            RETURN NEXT;
            RETURN;
        END IF;

        PERFORM set_config('strata.removing_events', 'on', true);
        -- An aggregate written after the horizon since it was chosen stays hot, whole.
        WITH moved AS (
            DELETE FROM eventstore.events e
            USING unnest(v_types, v_ids) AS c(t, i)
            WHERE e.instance_id = p_instance AND e.aggregate_type = c.t AND e.aggregate_id = c.i
              AND NOT EXISTS (
                  SELECT 1 FROM eventstore.events n
                  WHERE n.instance_id = p_instance AND n.aggregate_type = c.t
                    AND n.aggregate_id = c.i AND n.created_at >= v_run.horizon)
            RETURNING e.*
        ), archived AS (
            INSERT INTO eventstore.archived_events SELECT * FROM moved RETURNING *
        )
        SELECT count(DISTINCT (a.aggregate_type, a.aggregate_id)), count(*),
               coalesce(sum(eventstore.event_digest(
                   a.instance_id, a.aggregate_type, a.aggregate_id, a.sequence, a.event_type,
                   a.revision, a.created_at, a.creator, a.owner, a.payload, a.position,
                   a.in_tx_order, a.metadata)), 0)
        INTO r_aggregates, r_events, v_checksum
        FROM archived a;
        PERFORM set_config('strata.removing_events', 'off', true);
    END IF;

    r_done := eventstore.record_archive_batch(
        p_instance, p_run_id, v_types[v_count], v_ids[v_count], v_count, v_run.batch_size,
        r_aggregates, r_events, v_checksum);
    r_outcome := 'moved';
    RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION eventstore.archive_batch(TEXT, BIGINT) FROM PUBLIC;

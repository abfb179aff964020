-- Removes an instance with all its events (hot and archived), unique constraints, idempotency keys
-- (a key left behind would answer a retry with events that are gone), archive manifest, and its
-- subjects' keys and erasure records. Keeps no audit: eventstore.hard_delete is the audited way,
-- with the projections checked.
CREATE OR REPLACE FUNCTION eventstore.remove_instance(p_instance_id TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    removed BIGINT;
    archived BIGINT;
BEGIN
    -- The one mechanism the append-only triggers honour (eventstore.refuse_event_change).
    PERFORM set_config('strata.removing_events', 'on', true);
    DELETE FROM eventstore.events WHERE instance_id = p_instance_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM eventstore.archived_events WHERE instance_id = p_instance_id;
    GET DIAGNOSTICS archived = ROW_COUNT;
    DELETE FROM eventstore.archive_runs WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.unique_constraints WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.idempotency_keys WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.subject_keys WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.erased_subjects WHERE instance_id = p_instance_id;
    PERFORM set_config('strata.removing_events', 'off', true);
    RETURN removed + archived;
END
$$;

REVOKE ALL ON FUNCTION eventstore.remove_instance(TEXT) FROM PUBLIC;

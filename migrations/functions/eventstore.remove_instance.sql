-- The one administrative way to delete events: remove an instance with all its unique constraints
-- idempotency keys (a key left behind would answer a retry with events that are gone), and its
-- subjects' keys and erasure records.
CREATE OR REPLACE FUNCTION eventstore.remove_instance(p_instance_id TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    removed BIGINT;
BEGIN
    PERFORM set_config('strata.removing_instance', 'on', true);
    DELETE FROM eventstore.events WHERE instance_id = p_instance_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM eventstore.unique_constraints WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.idempotency_keys WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.subject_keys WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.erased_subjects WHERE instance_id = p_instance_id;
    PERFORM set_config('strata.removing_instance', 'off', true);
    RETURN removed;
END
$$;

REVOKE ALL ON FUNCTION eventstore.remove_instance(TEXT) FROM PUBLIC;

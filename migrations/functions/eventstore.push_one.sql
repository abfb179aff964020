-- A push of one command with no expected sequence, no unique constraint and no idempotency key:
-- the most common push
-- (a lone request on a quiet store, and the calls that carry one push under light load), with plain
-- parameters instead of push's fifteen arrays, whose decoding and seven-column result rows cost
-- more than this path's own work. eventstore.push calls it for the same case, so both number
-- events one way: the aggregate's advisory lock, the position taken under it, the next sequence
-- from the primary-key probe, one INSERT.
--
-- SECURITY DEFINER with a fixed search_path: the application role may not insert into
-- eventstore.events itself, so events enter only through the push functions, with sequences and
-- positions they compute (docs/schema.md, "Roles").
CREATE OR REPLACE FUNCTION eventstore.push_one(
    p_instance TEXT, p_aggregate_type TEXT, p_aggregate_id TEXT, p_event_type TEXT,
    p_revision INTEGER, p_creator TEXT, p_owner TEXT, p_payload TEXT, p_metadata TEXT
) RETURNS TABLE (r_sequence BIGINT, r_position NUMERIC, r_created_at TIMESTAMPTZ)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.begin_push();
    -- Refused here if the instance moved away; otherwise it cannot move until this commits.
    PERFORM eventstore.enter_instances(ARRAY[p_instance]);
    PERFORM pg_advisory_xact_lock(
        eventstore.aggregate_lock_key(p_instance, p_aggregate_type, p_aggregate_id));
    -- Taken under the lock: a later push to the aggregate gets a later transaction id.
    r_position := pg_current_xact_id()::text::numeric;
    r_created_at := now();
    INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence,
                                   event_type, revision, created_at, creator, owner, payload,
                                   position, in_tx_order, metadata)
    VALUES (p_instance, p_aggregate_type, p_aggregate_id,
            eventstore.current_sequence(p_instance, p_aggregate_type, p_aggregate_id) + 1,
            p_event_type, p_revision, r_created_at, p_creator, p_owner, p_payload::jsonb,
            r_position, 0, p_metadata::jsonb)
    RETURNING sequence INTO r_sequence;
    RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION eventstore.push_one(TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT, TEXT, TEXT)
    FROM PUBLIC;

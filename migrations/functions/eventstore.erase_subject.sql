-- Erases a subject: deletes its keys, records it in erased_subjects and pushes the event that
-- records the erasure (through push_one, like any push), in one transaction. A subject erased
-- before gets no second record (r_sequence IS NULL); keys found for it again are deleted.
--
-- With p_event_type NULL it only forgets the subject (deletes keys, records it) without an event:
-- replaying an erasure recorded earlier, after keys came back from an older backup.
CREATE OR REPLACE FUNCTION eventstore.erase_subject(
    p_instance TEXT, p_subject TEXT,
    p_aggregate_type TEXT, p_aggregate_id TEXT, p_event_type TEXT, p_revision INTEGER,
    p_creator TEXT, p_owner TEXT, p_payload TEXT, p_metadata TEXT
) RETURNS TABLE (r_keys_deleted BIGINT, r_sequence BIGINT, r_position NUMERIC,
                 r_created_at TIMESTAMPTZ)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_erased_before BOOLEAN;
BEGIN
    PERFORM pg_advisory_xact_lock(eventstore.subject_lock_key(p_instance, p_subject));
    SELECT EXISTS (SELECT 1 FROM eventstore.erased_subjects
                   WHERE instance_id = p_instance AND subject_id = p_subject)
    INTO v_erased_before;
    -- The record first: a push must be its transaction's first write (docs/position.md).
    IF NOT v_erased_before AND p_event_type IS NOT NULL THEN
        SELECT one.r_sequence, one.r_position, one.r_created_at
        INTO r_sequence, r_position, r_created_at
        FROM eventstore.push_one(p_instance, p_aggregate_type, p_aggregate_id, p_event_type,
                                 p_revision, p_creator, p_owner, p_payload, p_metadata) one;
    END IF;
    DELETE FROM eventstore.subject_keys WHERE instance_id = p_instance AND subject_id = p_subject;
    GET DIAGNOSTICS r_keys_deleted = ROW_COUNT;
    INSERT INTO eventstore.erased_subjects (instance_id, subject_id, position)
    VALUES (p_instance, p_subject, r_position) ON CONFLICT DO NOTHING;
    -- Delivered at commit to every process listening: their vaults forget the subject's keys
    -- at once. Erasures are rare, so the notice may travel inside the transaction.
    PERFORM pg_notify('strata_erased', p_instance || chr(10) || p_subject);
    RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION eventstore.erase_subject(TEXT, TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT,
                                               TEXT, TEXT) FROM PUBLIC;

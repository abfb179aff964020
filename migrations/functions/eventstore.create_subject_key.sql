-- Stores a subject's data key of a version unless one is stored, and returns the stored one (the
-- first writer's, when two processes create a subject's first key at once). Refuses an erased
-- subject with SQLSTATE 'SE001' (mapped to Error::SubjectErased).
--
-- SECURITY DEFINER: the writer role reads subject_keys but cannot write it itself.
CREATE OR REPLACE FUNCTION eventstore.create_subject_key(
    p_instance TEXT, p_subject TEXT, p_version INTEGER, p_master_key_id TEXT, p_wrapped BYTEA
) RETURNS TABLE (r_master_key_id TEXT, r_wrapped BYTEA)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(eventstore.subject_lock_key(p_instance, p_subject));
    IF EXISTS (SELECT 1 FROM eventstore.erased_subjects
               WHERE instance_id = p_instance AND subject_id = p_subject) THEN
        RAISE EXCEPTION 'subject % of instance % was erased', p_subject, p_instance
            USING ERRCODE = 'SE001';
    END IF;
    INSERT INTO eventstore.subject_keys (instance_id, subject_id, key_version, master_key_id,
                                         wrapped_key)
    VALUES (p_instance, p_subject, p_version, p_master_key_id, p_wrapped)
    ON CONFLICT (instance_id, subject_id, key_version) DO NOTHING;
    RETURN QUERY
        SELECT k.master_key_id, k.wrapped_key FROM eventstore.subject_keys k
        WHERE k.instance_id = p_instance AND k.subject_id = p_subject
          AND k.key_version = p_version;
END
$$;

REVOKE ALL ON FUNCTION eventstore.create_subject_key(TEXT, TEXT, INTEGER, TEXT, BYTEA) FROM PUBLIC;

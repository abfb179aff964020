-- Replaces a key's wrapping (a master key rotation) if the row still holds the old wrapping:
-- a compare-and-swap, so a rotation racing an erasure or another rotation never resurrects or
-- clobbers a key. Returns whether it replaced.
CREATE OR REPLACE FUNCTION eventstore.rewrap_subject_key(
    p_instance TEXT, p_subject TEXT, p_version INTEGER,
    p_old_master_key_id TEXT, p_old_wrapped BYTEA, p_new_master_key_id TEXT, p_new_wrapped BYTEA
) RETURNS BOOLEAN
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE eventstore.subject_keys
    SET master_key_id = p_new_master_key_id, wrapped_key = p_new_wrapped
    WHERE instance_id = p_instance AND subject_id = p_subject AND key_version = p_version
      AND master_key_id = p_old_master_key_id AND wrapped_key = p_old_wrapped;
    RETURN FOUND;
END
$$;

REVOKE ALL ON FUNCTION eventstore.rewrap_subject_key(TEXT, TEXT, INTEGER, TEXT, BYTEA, TEXT, BYTEA)
    FROM PUBLIC;

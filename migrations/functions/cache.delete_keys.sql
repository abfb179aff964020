-- Removes only the keys; an object stays reachable through its other keys, and an object left with
-- no key at all is removed (nothing could ever find it).
CREATE OR REPLACE FUNCTION cache.delete_keys(p_cache_name TEXT, p_index_name TEXT, p_index_keys TEXT[])
RETURNS VOID
LANGUAGE plpgsql
-- Planned afresh on every call, like cache.set_object (see there).
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    touched BIGINT[];
BEGIN
    PERFORM cache.lock_keys_for_writing(
        p_cache_name, array_fill(p_index_name, ARRAY[cardinality(p_index_keys)]), p_index_keys
    );
    WITH gone AS (
        DELETE FROM cache.string_keys k
        WHERE k.cache_name = p_cache_name
            AND k.index_name = p_index_name
            AND k.index_key = ANY (p_index_keys)
        RETURNING k.object_id
    )
    SELECT array_agg(DISTINCT object_id) INTO touched FROM gone;
    IF touched IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM cache.objects o
    WHERE o.cache_name = p_cache_name
        AND o.id = ANY (touched)
        AND NOT EXISTS (
            SELECT 1 FROM cache.string_keys k
            WHERE k.cache_name = p_cache_name AND k.object_id = o.id
        );
END
$$;

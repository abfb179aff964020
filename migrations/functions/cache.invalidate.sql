-- Removes the objects the keys point at, with all their keys.
CREATE OR REPLACE FUNCTION cache.invalidate(p_cache_name TEXT, p_index_name TEXT, p_index_keys TEXT[])
RETURNS VOID
LANGUAGE plpgsql
-- Planned afresh on every call, like cache.set_object (see there).
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    PERFORM cache.lock_keys_for_writing(
        p_cache_name, array_fill(p_index_name, ARRAY[cardinality(p_index_keys)]), p_index_keys
    );
    WITH previous AS (
        SELECT DISTINCT k.object_id
        FROM cache.string_keys k
        WHERE k.cache_name = p_cache_name
            AND k.index_name = p_index_name
            AND k.index_key = ANY (p_index_keys)
    ), gone_keys AS (
        DELETE FROM cache.string_keys k
        USING previous
        WHERE k.cache_name = p_cache_name AND k.object_id = previous.object_id
    )
    DELETE FROM cache.objects o
    USING previous
    WHERE o.cache_name = p_cache_name AND o.id = previous.object_id;
END
$$;

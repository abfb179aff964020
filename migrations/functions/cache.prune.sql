-- Removes expired objects (by either age; NULL means the cache has no such age), objects without
-- keys and keys without objects. Returns how many objects went.
CREATE OR REPLACE FUNCTION cache.prune(p_cache_name TEXT, p_max_age INTERVAL, p_last_use_age INTERVAL)
RETURNS BIGINT
LANGUAGE plpgsql
AS $$
DECLARE
    removed BIGINT;
BEGIN
    PERFORM cache.lock_for_writing(p_cache_name);
    WITH expired AS (
        DELETE FROM cache.objects o
        WHERE o.cache_name = p_cache_name
            AND (
                (p_max_age IS NOT NULL AND o.created_at <= now() - p_max_age)
                OR (p_last_use_age IS NOT NULL AND o.last_used_at <= now() - p_last_use_age)
                OR NOT EXISTS (
                    SELECT 1 FROM cache.string_keys k
                    WHERE k.cache_name = p_cache_name AND k.object_id = o.id
                )
            )
        RETURNING o.id
    )
    SELECT count(*) INTO removed FROM expired;

    DELETE FROM cache.string_keys k
    WHERE k.cache_name = p_cache_name
        AND NOT EXISTS (
            SELECT 1 FROM cache.objects o
            WHERE o.cache_name = p_cache_name AND o.id = k.object_id
        );
    RETURN removed;
END
$$;

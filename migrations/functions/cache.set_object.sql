-- Stores one object under its keys (parallel arrays of index names and keys). Any object one of
-- the keys pointed at is removed with all its keys first, so no stale "ghost" stays reachable
-- through a key the new object does not have.
--
-- Writers sharing a key are serialised by cache.lock_keys_for_writing (see there for why that
-- keeps ghosts out); writers of different keys run side by side.
--
-- Every statement is planned afresh (force_custom_plan), as in the other cache writes. PL/pgSQL
-- otherwise caches a generic plan per connection, and one made while a partition is young and never
-- analyzed stays in use as the partition grows. Planning these small statements costs far less.
CREATE OR REPLACE FUNCTION cache.set_object(
    p_cache_name TEXT, p_index_names TEXT[], p_index_keys TEXT[], p_payload BYTEA
) RETURNS VOID
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    new_id BIGINT;
BEGIN
    PERFORM cache.lock_keys_for_writing(p_cache_name, p_index_names, p_index_keys);
    WITH previous AS (
        SELECT DISTINCT k.object_id
        FROM cache.string_keys k
        JOIN unnest(p_index_names, p_index_keys) AS u(index_name, index_key)
            ON k.index_name = u.index_name AND k.index_key = u.index_key
        WHERE k.cache_name = p_cache_name
    ), gone_keys AS (
        DELETE FROM cache.string_keys k
        USING previous
        WHERE k.cache_name = p_cache_name AND k.object_id = previous.object_id
    )
    DELETE FROM cache.objects o
    USING previous
    WHERE o.cache_name = p_cache_name AND o.id = previous.object_id;

    INSERT INTO cache.objects (cache_name, payload)
    VALUES (p_cache_name, p_payload)
    RETURNING id INTO new_id;

    INSERT INTO cache.string_keys (cache_name, index_name, index_key, object_id)
    SELECT DISTINCT p_cache_name, u.index_name, u.index_key, new_id
    FROM unnest(p_index_names, p_index_keys) AS u(index_name, index_key);
END
$$;

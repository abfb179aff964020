-- Serialises the writes that touch the same keys of one cache (set_object, invalidate,
-- delete_keys), and lets writes of different keys run side by side. Each writer holds the cache's
-- write lock shared, so cache.prune (which takes it exclusively) still runs alone, and then one
-- lock per key it names, taken in hash order so two writers never wait for each other in a cycle.
--
-- This is what keeps "ghosts" out: two sets sharing a key could otherwise each miss the object the
-- other wrote and leave it reachable through its remaining keys. Writers that share no key only
-- meet on rows of objects both replace; those row deletes wait for each other, and neither can
-- touch a key row the other inserts. Key locks are class 1128350537 ("CACI"): two keys whose
-- hashes collide only wait for each other needlessly.
CREATE OR REPLACE FUNCTION cache.lock_keys_for_writing(
    p_cache_name TEXT, p_index_names TEXT[], p_index_keys TEXT[]
) RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    key_hash INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1128350536, hashtext(p_cache_name));
    FOR key_hash IN
        SELECT DISTINCT hashtext(concat_ws(chr(31), p_cache_name, u.index_name, u.index_key))
        FROM unnest(p_index_names, p_index_keys) AS u(index_name, index_key)
        ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(1128350537, key_hash);
    END LOOP;
END
$$;

-- Takes a cache's write lock exclusively, for cache.prune: it runs alone, while the other writers
-- (set_object, invalidate, delete_keys) hold it shared beside their key locks
-- (cache.lock_keys_for_writing).
CREATE OR REPLACE FUNCTION cache.lock_for_writing(p_cache_name TEXT) RETURNS VOID
LANGUAGE sql
AS $$ SELECT cache.advisory_lock(hashtext(p_cache_name)) $$;

-- Serialises the writes of one cache (set_object, invalidate, delete_keys, prune): two writers
-- never interleave their key and object changes, so no key is left pointing at a removed object.
CREATE OR REPLACE FUNCTION cache.lock_for_writing(p_cache_name TEXT) RETURNS VOID
LANGUAGE sql
AS $$ SELECT cache.advisory_lock(hashtext(p_cache_name)) $$;

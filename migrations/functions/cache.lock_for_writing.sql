-- Serialises the writes of one cache (set_object, invalidate, delete_keys, prune): two writers
-- never interleave their key and object changes, so no key is left pointing at a removed object.
-- Advisory lock class 1128350536 (0x43414348, "CACH") belongs to the cache; its key 0 also guards
-- cache.create_partitions.
CREATE OR REPLACE FUNCTION cache.lock_for_writing(p_cache_name TEXT) RETURNS VOID
LANGUAGE sql
AS $$ SELECT pg_advisory_xact_lock(1128350536, hashtext(p_cache_name)) $$;

-- Takes one of the cache's transaction-scoped advisory locks. Class 1128350536 (0x43414348,
-- "CACH") is the cache's; object 0 guards partition DDL (cache.create_partitions), and the hash of
-- a cache's name that cache's writes (cache.lock_for_writing, cache.lock_keys_for_writing). Keys
-- have a class of their own (see cache.lock_keys_for_writing).
CREATE OR REPLACE FUNCTION cache.advisory_lock(p_object INTEGER) RETURNS VOID
LANGUAGE sql
AS $$ SELECT pg_advisory_xact_lock(1128350536, p_object) $$;

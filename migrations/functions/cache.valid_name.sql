-- The grammar of cache names, checked here as well as in Rust because names become identifiers.
-- 48 characters leave room for the 'string_keys_' prefix within PostgreSQL's 63-byte limit.
CREATE OR REPLACE FUNCTION cache.valid_name(p_cache_name TEXT) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT p_cache_name ~ '^[a-z][a-z0-9_]{0,47}$' $$;

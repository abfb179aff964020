-- Empties one cache: its partitions only.
CREATE OR REPLACE FUNCTION cache.truncate(p_cache_name TEXT) RETURNS VOID
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_cache_name IS NULL OR NOT cache.valid_name(p_cache_name) THEN
        RAISE EXCEPTION 'invalid cache name %', p_cache_name USING ERRCODE = '22023';
    END IF;
    EXECUTE format(
        'TRUNCATE cache.%I, cache.%I',
        'string_keys_' || p_cache_name, 'objects_' || p_cache_name
    );
END
$$;

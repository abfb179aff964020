-- Creates the partitions of one cache if they do not exist. Safe when several processes start the
-- same cache at once: an advisory lock serialises the check-and-create, so no one trips over a
-- half-created partition or a duplicate type name.
--
-- SECURITY DEFINER because attaching a partition needs ownership of the parent, which the
-- application role does not have. It creates nothing but the two partitions of a validated name,
-- and only for callers allowed to write the cache. The new partitions get the parent's grants, so a
-- role that may use the cache may also truncate its partitions.
CREATE OR REPLACE FUNCTION cache.create_partitions(p_cache_name TEXT) RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    partition TEXT;
    parent TEXT;
    grant_row RECORD;
BEGIN
    IF p_cache_name IS NULL OR NOT cache.valid_name(p_cache_name) THEN
        RAISE EXCEPTION 'invalid cache name %', p_cache_name USING ERRCODE = '22023';
    END IF;
    IF NOT has_table_privilege(session_user, 'cache.objects', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied to create cache partitions' USING ERRCODE = '42501';
    END IF;
    -- The common case (the cache existed before this process started) takes no lock at all.
    IF to_regclass(format('cache.%I', 'objects_' || p_cache_name)) IS NOT NULL
        AND to_regclass(format('cache.%I', 'string_keys_' || p_cache_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    -- Object 0: partition DDL, one creator at a time.
    PERFORM cache.advisory_lock(0);
    FOREACH parent IN ARRAY ARRAY['objects', 'string_keys'] LOOP
        partition := parent || '_' || p_cache_name;
        IF to_regclass(format('cache.%I', partition)) IS NULL THEN
            EXECUTE format(
                'CREATE UNLOGGED TABLE cache.%I PARTITION OF cache.%I FOR VALUES IN (%L)',
                partition, parent, p_cache_name
            );
            FOR grant_row IN
                SELECT acl.privilege_type, acl.grantee
                FROM pg_class c, aclexplode(c.relacl) acl
                WHERE c.oid = format('cache.%I', parent)::regclass AND acl.grantee <> 0
            LOOP
                EXECUTE format(
                    'GRANT %s ON cache.%I TO %I',
                    grant_row.privilege_type, partition, pg_get_userbyid(grant_row.grantee)
                );
            END LOOP;
        END IF;
    END LOOP;
END
$$;

-- The cache (spec §6): objects and the string keys that find them, one partition per cache.
--
-- Both tables are UNLOGGED: cache data need not survive a crash, and skipping the WAL is the point
-- (PostgreSQL empties unlogged tables after a crash, which for a cache is just a cold start). Both
-- are PARTITION BY LIST (cache_name), so truncating one cache is a TRUNCATE of its own partitions
-- and never touches another cache's rows. The connector (strata-cache) creates the partitions of a
-- cache when the cache starts, through cache.create_partitions.
--
-- No foreign key joins the two tables: the functions below keep them consistent, and the pruner
-- removes whatever a crash mid-way could leave (keys without an object, objects without keys).
-- A foreign key between partitioned tables would also make TRUNCATE of one cache's partitions
-- refuse, because every key partition would reference every object partition.
--
-- When updating this, also update: crates/cache/src/postgres.rs (the SQL it sends and
-- MAX_CACHE_NAME_LEN), docs/cache.md (the schema section).

CREATE SCHEMA IF NOT EXISTS cache;

-- Object ids, which need only be unique while an object lives. UNLOGGED where the server has
-- unlogged sequences (PostgreSQL 15): a logged one writes WAL every 32 values, and that record
-- makes the commit of an otherwise WAL-free set wait for a flush. After a crash both the sequence
-- and the tables restart empty, so ids are never reused by live objects.
DO $$
BEGIN
    IF current_setting('server_version_num')::INT < 150000 THEN
        CREATE SEQUENCE cache.object_ids AS BIGINT;
    ELSE
        CREATE UNLOGGED SEQUENCE cache.object_ids AS BIGINT;
    END IF;
END
$$;
-- Whoever may insert into cache.objects needs the sequence too. The roles migration, which runs
-- later, grants the cache's tables but not its sequences, and an id is worth nothing to anyone, so
-- the sequence is usable by everyone.
GRANT USAGE ON SEQUENCE cache.object_ids TO PUBLIC;

-- NOTE: PostgreSQL 18 refuses UNLOGGED on a partitioned table (it never meant anything there: the
-- persistence of each partition is what counts), so the parents are UNLOGGED only where the
-- server accepts it. The partitions, which hold the rows, are always UNLOGGED.
DO $$
DECLARE
    persistence TEXT := CASE
        WHEN current_setting('server_version_num')::INT < 180000 THEN 'UNLOGGED'
        ELSE ''
    END;
BEGIN
    EXECUTE format($sql$
        CREATE %s TABLE cache.objects (
            cache_name   TEXT        NOT NULL,
            id           BIGINT      NOT NULL DEFAULT nextval('cache.object_ids'),
            created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
            -- Written on a hit only when older than a fraction of the cache's last_use_age (see
            -- docs/cache.md, "The hit path"), so most hits are pure reads.
            last_used_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            -- A format byte followed by the bincode 2 encoding of the value.
            payload      BYTEA       NOT NULL,
            PRIMARY KEY (cache_name, id)
        ) PARTITION BY LIST (cache_name)
    $sql$, persistence);

    EXECUTE format($sql$
        CREATE %s TABLE cache.string_keys (
            cache_name TEXT   NOT NULL,
            index_name TEXT   NOT NULL,
            index_key  TEXT   NOT NULL,
            object_id  BIGINT NOT NULL,
            PRIMARY KEY (cache_name, index_name, index_key)
        ) PARTITION BY LIST (cache_name)
    $sql$, persistence);
END
$$;

-- Invalidation finds every key of an object.
CREATE INDEX string_keys_object ON cache.string_keys (cache_name, object_id);

-- The grammar of cache names, checked here as well as in Rust because names become identifiers.
-- 48 characters leave room for the 'string_keys_' prefix within PostgreSQL's 63-byte limit.
CREATE FUNCTION cache.valid_name(p_cache_name TEXT) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT p_cache_name ~ '^[a-z][a-z0-9_]{0,47}$' $$;

-- Creates the partitions of one cache if they do not exist. Safe when several processes start the
-- same cache at once: an advisory lock serialises the check-and-create, so no one trips over a
-- half-created partition or a duplicate type name.
--
-- SECURITY DEFINER because attaching a partition needs ownership of the parent, which the
-- application role does not have. It creates nothing but the two partitions of a validated name,
-- and only for callers allowed to write the cache. The new partitions get the parent's grants, so a
-- role that may use the cache may also truncate its partitions.
CREATE FUNCTION cache.create_partitions(p_cache_name TEXT) RETURNS VOID
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
    -- Class 'CACH' (0x43414348); object 0 is "partition DDL", distinct from the per-cache write locks.
    PERFORM pg_advisory_xact_lock(1128350536, 0);
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

-- Empties one cache: its partitions only.
CREATE FUNCTION cache.truncate(p_cache_name TEXT) RETURNS VOID
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

-- The write functions below plan every statement afresh (force_custom_plan). PL/pgSQL otherwise
-- caches a generic plan per connection, and one made while a partition is young and never analyzed
-- stays in use as the partition grows: measured, a set went from 0.5 ms to 1.6 ms over its first
-- 4 000 objects. Planning these small statements costs far less than that.

-- Stores one object under its keys (parallel arrays of index names and keys). Any object one of
-- the keys pointed at is removed with all its keys first, so no stale "ghost" stays reachable
-- through a key the new object does not have.
--
-- Writers of one cache are serialised by a transaction-scoped advisory lock: without it, two
-- concurrent sets sharing a key could each miss the other's object and leave one reachable through
-- its remaining keys. Writes to a cache are rare next to reads (a set follows a miss), and the lock
-- is held for the few index operations below, so this costs little.
CREATE FUNCTION cache.set_object(
    p_cache_name TEXT, p_index_names TEXT[], p_index_keys TEXT[], p_payload BYTEA
) RETURNS VOID
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    new_id BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1128350536, hashtext(p_cache_name));
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

-- Removes the objects the keys point at, with all their keys.
CREATE FUNCTION cache.invalidate(p_cache_name TEXT, p_index_name TEXT, p_index_keys TEXT[])
RETURNS VOID
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1128350536, hashtext(p_cache_name));
    WITH previous AS (
        SELECT DISTINCT k.object_id
        FROM cache.string_keys k
        WHERE k.cache_name = p_cache_name
            AND k.index_name = p_index_name
            AND k.index_key = ANY (p_index_keys)
    ), gone_keys AS (
        DELETE FROM cache.string_keys k
        USING previous
        WHERE k.cache_name = p_cache_name AND k.object_id = previous.object_id
    )
    DELETE FROM cache.objects o
    USING previous
    WHERE o.cache_name = p_cache_name AND o.id = previous.object_id;
END
$$;

-- Removes only the keys; an object stays reachable through its other keys, and an object left with
-- no key at all is removed (nothing could ever find it).
CREATE FUNCTION cache.delete_keys(p_cache_name TEXT, p_index_name TEXT, p_index_keys TEXT[])
RETURNS VOID
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    touched BIGINT[];
BEGIN
    PERFORM pg_advisory_xact_lock(1128350536, hashtext(p_cache_name));
    WITH gone AS (
        DELETE FROM cache.string_keys k
        WHERE k.cache_name = p_cache_name
            AND k.index_name = p_index_name
            AND k.index_key = ANY (p_index_keys)
        RETURNING k.object_id
    )
    SELECT array_agg(DISTINCT object_id) INTO touched FROM gone;
    IF touched IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM cache.objects o
    WHERE o.cache_name = p_cache_name
        AND o.id = ANY (touched)
        AND NOT EXISTS (
            SELECT 1 FROM cache.string_keys k
            WHERE k.cache_name = p_cache_name AND k.object_id = o.id
        );
END
$$;

-- Removes expired objects (by either age; NULL means the cache has no such age), objects without
-- keys and keys without objects. Returns how many objects went.
CREATE FUNCTION cache.prune(p_cache_name TEXT, p_max_age INTERVAL, p_last_use_age INTERVAL)
RETURNS BIGINT
LANGUAGE plpgsql
AS $$
DECLARE
    removed BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1128350536, hashtext(p_cache_name));
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

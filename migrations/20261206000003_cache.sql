-- The cache (docs/cache.md): objects and the string keys that find them, one partition per cache.
--
-- Both tables are UNLOGGED: cache data need not survive a crash, and skipping the WAL is the point
-- (PostgreSQL empties unlogged tables after a crash, which for a cache is just a cold start). Both
-- are PARTITION BY LIST (cache_name), so truncating one cache is a TRUNCATE of its own partitions
-- and never touches another cache's rows. The connector (strata-cache) creates the partitions of a
-- cache when the cache starts, through cache.create_partitions.
--
-- No foreign key joins the two tables: the cache functions keep them consistent, and the pruner
-- removes whatever a crash mid-way could leave (keys without an object, objects without keys).
-- A foreign key between partitioned tables would also make TRUNCATE of one cache's partitions
-- refuse, because every key partition would reference every object partition.
--
-- The functions that write and prune the cache are in migrations/functions/cache.*.sql.
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
-- Whoever may insert into cache.objects needs the sequence too. eventstore.grant_roles() grants
-- the cache's tables but not its sequences, and an id is worth nothing to anyone, so
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

REVOKE ALL ON ALL TABLES IN SCHEMA cache FROM PUBLIC;

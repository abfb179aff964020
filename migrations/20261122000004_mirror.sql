-- Progress of `strata mirror` runs into this database: how far in the source's order each mirror
-- (one source, one instance filter) has copied, so a second run copies only what is new and an
-- interrupted run resumes. The row moves in the same transaction as each copied batch.
--
-- A small reference table keyed by mirror, not per instance, like projections.registry: the
-- instance_id-first invariant applies to tenant data (ARCHITECTURE.md). Correctness never depends
-- on this row alone: copied events are inserted with ON CONFLICT DO NOTHING on the events' primary
-- key, so even a lost row cannot duplicate an event.

CREATE TABLE eventstore.mirror_progress (
    -- The source, as host:port/database (no credentials).
    source          TEXT        NOT NULL,
    -- The mirrored instances, sorted and comma-separated; '*' for every instance.
    instances       TEXT        NOT NULL,
    -- The source (position, in_tx_order) of the last event copied.
    position        NUMERIC     NOT NULL,
    in_tx_order     INTEGER     NOT NULL,
    events_copied   BIGINT      NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, instances)
);

-- Mirroring is administration: the migrator role runs it (migration ..._roles.sql creates the role;
-- on a database that already has it, grant here).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'strata_migrator') THEN
        GRANT ALL ON eventstore.mirror_progress TO strata_migrator;
    END IF;
END
$$;

-- The event store's tables: events, unique constraints, mirror progress, and the bookkeeping of
-- the SQL functions and roles `strata_postgres::migrate` keeps current.
--
-- Tables, indexes, triggers and grants live in versioned migrations like this one; every function
-- lives in one file of its own under migrations/functions/, which `migrate` applies after these
-- (docs/schema.md, "Where the SQL lives").
--
-- Invariant: every primary key and unique index of tenant data starts with instance_id, so the
-- schema can be distributed by instance (Citus-style) without change. See ARCHITECTURE.md.

CREATE SCHEMA IF NOT EXISTS eventstore;

CREATE TABLE eventstore.events (
    instance_id    TEXT        NOT NULL,
    aggregate_type TEXT        NOT NULL,
    aggregate_id   TEXT        NOT NULL,
    sequence       BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    revision       INTEGER     NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    creator        TEXT        NOT NULL,
    owner          TEXT        NOT NULL,
    payload        JSONB,
    -- The id of the transaction that wrote the event (an xid8, as a number). See docs/position.md.
    position       NUMERIC     NOT NULL,
    in_tx_order    INTEGER     NOT NULL,
    PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence)
);

COMMENT ON COLUMN eventstore.events.position IS
    'xid8 of the writing transaction; read only below eventstore.commit_horizon() to never skip a late commit';

-- The projection read: one instance, some aggregate types and event types, after a position.
CREATE INDEX events_projection
    ON eventstore.events (instance_id, aggregate_type, event_type, position, in_tx_order);
-- The projection read of whole aggregate types (no event-type filter): without it, such a read
-- would range over the type's entire history in the index above and sort, on every batch.
CREATE INDEX events_aggregate_type_position
    ON eventstore.events (instance_id, aggregate_type, position, in_tx_order);
-- Position order within an instance.
CREATE INDEX events_instance_position
    ON eventstore.events (instance_id, position, in_tx_order);
-- Position order over the whole store (catch-up across instances, mirror). Not unique, so the
-- instance_id-first invariant does not apply.
CREATE INDEX events_position
    ON eventstore.events (position, in_tx_order);

CREATE TABLE eventstore.unique_constraints (
    instance_id  TEXT NOT NULL,
    unique_type  TEXT NOT NULL,
    unique_field TEXT NOT NULL,
    PRIMARY KEY (instance_id, unique_type, unique_field)
);

-- Events are immutable: only eventstore.remove_instance may delete, and nothing may update. The
-- trigger function is part of the table's definition, so it lives here rather than with the
-- functions `migrate` re-applies.
CREATE FUNCTION eventstore.refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('strata.removing_instance', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'eventstore.events is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'events can only be removed with eventstore.remove_instance(instance_id)';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_event_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_event_change();

-- Progress of `strata mirror` runs into this database: how far in the source's order each mirror
-- (one source, one instance filter) has copied, so a second run copies only what is new and an
-- interrupted run resumes. The row moves in the same transaction as each copied batch.
--
-- A small reference table keyed by mirror, not per instance: the instance_id-first invariant
-- applies to tenant data. Correctness never depends on this row alone: copied events are inserted
-- with ON CONFLICT DO NOTHING on the events' primary key, so even a lost row cannot duplicate an
-- event.
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

-- The function files `migrate` applied, by checksum: a file whose text changed is applied again,
-- once (docs/schema.md, "Where the SQL lives").
CREATE TABLE eventstore.applied_functions (
    file       TEXT        PRIMARY KEY,
    checksum   TEXT        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);

-- The roles `strata roles create` (strata_postgres::create_roles) set up for this database. Roles
-- are server-wide, so Strata creates none on its own; once named here, `migrate` keeps their
-- grants current through eventstore.grant_roles().
CREATE TABLE eventstore.roles (
    -- 'writer' (the application) or 'migrator' (migrations and administration).
    kind      TEXT PRIMARY KEY CHECK (kind IN ('writer', 'migrator')),
    role_name TEXT NOT NULL
);

-- Nobody but the owner touches these unless eventstore.grant_roles() says so.
REVOKE ALL ON ALL TABLES IN SCHEMA eventstore FROM PUBLIC;

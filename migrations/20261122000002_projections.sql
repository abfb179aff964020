-- Projection bookkeeping: how far each projection got per instance, and the events it gave up on.
-- Read-model tables belong to the application (its own migrations); only the bookkeeping is here.
--
-- Invariant (ARCHITECTURE.md): every primary key starts with instance_id.

CREATE SCHEMA IF NOT EXISTS projections;

CREATE TABLE projections.current_states (
    instance_id     TEXT        NOT NULL,
    projection_name TEXT        NOT NULL,
    -- The (position, in_tx_order) of the last event processed, applied or skipped.
    position        NUMERIC     NOT NULL,
    in_tx_order     INTEGER     NOT NULL,
    aggregate_type  TEXT        NOT NULL,
    aggregate_id    TEXT        NOT NULL,
    sequence        BIGINT      NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (instance_id, projection_name)
);

CREATE TABLE projections.failed_events (
    instance_id     TEXT        NOT NULL,
    projection_name TEXT        NOT NULL,
    aggregate_type  TEXT        NOT NULL,
    aggregate_id    TEXT        NOT NULL,
    sequence        BIGINT      NOT NULL,
    position        NUMERIC     NOT NULL,
    in_tx_order     INTEGER     NOT NULL,
    failure_count   INTEGER     NOT NULL,
    error           TEXT        NOT NULL,
    last_failed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (instance_id, projection_name, aggregate_type, aggregate_id, sequence)
);

CREATE INDEX failed_events_by_projection ON projections.failed_events (projection_name);

-- Which projections exist and what they read, written by every runtime at start, so operator tools
-- can report lag without the projections' code. A small reference table, not per instance: the
-- instance_id-first invariant applies to tenant data (ARCHITECTURE.md).
CREATE TABLE projections.registry (
    projection_name  TEXT        PRIMARY KEY,
    -- [[aggregate type, [event types]]…]; empty event types mean every event of that aggregate.
    reads            JSONB       NOT NULL,
    has_side_effects BOOLEAN     NOT NULL,
    registered_at    TIMESTAMPTZ NOT NULL
);

-- Operator requests (from the CLI) that whichever runtime runs the projection carries out.
CREATE TABLE projections.requests (
    instance_id     TEXT        NOT NULL,
    id              BIGSERIAL,
    projection_name TEXT        NOT NULL,
    kind            TEXT        NOT NULL CHECK (kind IN ('rebuild', 'retry', 'skip')),
    aggregate_type  TEXT,
    aggregate_id    TEXT,
    sequence        BIGINT,
    requested_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, id)
);

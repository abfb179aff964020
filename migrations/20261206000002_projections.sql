-- Projection bookkeeping: how far each projection got per instance, the events it gave up on, the
-- registry operator tools read, operator requests, and the heartbeats of running runtimes.
-- Read-model tables belong to the application (its own migrations); only the bookkeeping is here.
--
-- Invariant (ARCHITECTURE.md): every primary key of tenant data starts with instance_id.

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
    -- An operator gave up on the event (`strata projections failed skip`): the gap in the read
    -- model is accepted, and catch-ups stop reporting it.
    skipped_by_operator BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (instance_id, projection_name, aggregate_type, aggregate_id, sequence)
);

CREATE INDEX failed_events_by_projection ON projections.failed_events (projection_name);

-- Which projections exist and what they read, written by every runtime at start, so operator tools
-- can report lag without the projections' code. A small reference table, not per instance.
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

-- Running runtimes, refreshed every few seconds, so `strata projections status` can say whether
-- anyone is alive to carry out queued requests. A reference table, not per instance.
CREATE TABLE projections.runtimes (
    runtime_id     TEXT        PRIMARY KEY,
    -- Host and process id, for people.
    host           TEXT        NOT NULL,
    pid            INTEGER     NOT NULL,
    projections    TEXT[]      NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    last_seen_at   TIMESTAMPTZ NOT NULL
);

REVOKE ALL ON ALL TABLES IN SCHEMA projections FROM PUBLIC;

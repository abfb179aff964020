-- Hard delete and archiving: the cold table archived events move to, the manifest of archive runs,
-- and the audit of hard deletes (docs/operations.md, "Hard delete" and "Archiving").
--
-- Invariant (ARCHITECTURE.md): every primary key of tenant data starts with instance_id.

-- Events moved out of the hot table by `strata archive run`, with every column kept as it was
-- (positions, sequences, payload), so `strata archive restore` moves them back unchanged. Same
-- columns in the same order and the same primary key as eventstore.events, so rows move with
-- `INSERT … SELECT *` both ways. To put it on cheaper storage:
--   ALTER TABLE eventstore.archived_events SET TABLESPACE cold;
--   ALTER INDEX eventstore.archived_events_pkey SET TABLESPACE cold;   (and the index below)
-- Only the primary key and one position index: the archive is read rarely (restores, reads that
-- ask for it), and every index is paid for by every archived row.
CREATE TABLE eventstore.archived_events (
    LIKE eventstore.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE
);
ALTER TABLE eventstore.archived_events
    ADD PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence);
-- An instance's archived events in order (reads through the archive, verification).
CREATE INDEX archived_events_instance_position
    ON eventstore.archived_events (instance_id, position, in_tx_order);

-- Events stay immutable in the archive too. One mechanism for every administrative removal: the
-- transaction-local setting strata.removing_events, set only by eventstore.remove_instance,
-- eventstore.hard_delete and the archive's batch functions (it used to be called
-- strata.removing_instance when remove_instance was the only one). The trigger function is part of
-- the tables' definition, so it is replaced here rather than in migrations/functions/.
CREATE OR REPLACE FUNCTION eventstore.refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('strata.removing_events', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '%.% is append-only: % is refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'events are removed only by eventstore.remove_instance, eventstore.hard_delete '
                     'and strata archive (strata_postgres::admin)';
END
$$;

CREATE TRIGGER archived_events_append_only
    BEFORE UPDATE OR DELETE ON eventstore.archived_events
    FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_event_change();

CREATE TRIGGER archived_events_no_truncate
    BEFORE TRUNCATE ON eventstore.archived_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_event_change();

-- The manifest: one row per archive run, restore run or hard delete that touched the archive, with
-- its progress. A run's batches move this row in the same transaction as the events, so a second
-- `strata archive run` resumes after the last committed batch, and `strata archive verify` checks
-- the archive against the sum of the rows (archive adds, restore and hard_delete subtract).
CREATE TABLE eventstore.archive_runs (
    instance_id          TEXT        NOT NULL,
    id                   BIGINT      GENERATED ALWAYS AS IDENTITY,
    kind                 TEXT        NOT NULL CHECK (kind IN ('archive', 'restore', 'hard_delete')),
    -- Only aggregates of these types; empty means every type.
    aggregate_types      TEXT[]      NOT NULL,
    -- Restore: only this aggregate id (with one aggregate type); NULL otherwise.
    aggregate_id         TEXT,
    -- Archive: only aggregates whose latest event has one of these types; empty means any.
    closing_event_types  TEXT[]      NOT NULL,
    -- Archive: only aggregates whose latest event was created before this instant. Fixed when the
    -- run starts, so a resumed run selects by the same rule.
    horizon              TIMESTAMPTZ,
    -- Aggregates per batch (one transaction each).
    batch_size           INTEGER     NOT NULL CHECK (batch_size > 0),
    -- The last aggregate a committed batch handled, in primary-key order: where a resumed run
    -- continues.
    after_aggregate_type TEXT,
    after_aggregate_id   TEXT,
    aggregates           BIGINT      NOT NULL DEFAULT 0,
    events               BIGINT      NOT NULL DEFAULT 0,
    -- Sum of eventstore.event_digest over the events moved (or removed): order-independent, so
    -- it adds up over batches and can be recomputed from the archive.
    checksum             NUMERIC     NOT NULL DEFAULT 0,
    -- Who asked (given by the caller) and the database role that ran it.
    actor                TEXT        NOT NULL,
    db_user              TEXT        NOT NULL DEFAULT current_user,
    started_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at          TIMESTAMPTZ,
    PRIMARY KEY (instance_id, id)
);

-- The audit of hard deletes: what was removed, by whom, when and why. It outlives what it
-- describes (eventstore.remove_instance leaves it alone). It records no removed value: released
-- unique constraints are counted, not named, since their values are often the personal data the
-- delete was for.
CREATE TABLE eventstore.removals (
    instance_id         TEXT        NOT NULL,
    id                  BIGINT      GENERATED ALWAYS AS IDENTITY,
    -- The aggregate removed; both NULL when the whole instance was.
    aggregate_type      TEXT,
    aggregate_id        TEXT,
    hot_events          BIGINT      NOT NULL,
    archived_events     BIGINT      NOT NULL,
    -- The (position, in_tx_order) of the first and last event removed.
    first_position      NUMERIC,
    first_in_tx_order   INTEGER,
    last_position       NUMERIC,
    last_in_tx_order    INTEGER,
    idempotency_keys    BIGINT      NOT NULL,
    unique_constraints  BIGINT      NOT NULL,
    failed_events       BIGINT      NOT NULL,
    -- Projections asked to rebuild in the same transaction (hard_delete's p_rebuild).
    projections_rebuilt TEXT[]      NOT NULL,
    actor               TEXT        NOT NULL,
    db_user             TEXT        NOT NULL DEFAULT current_user,
    removed_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason              TEXT        NOT NULL,
    PRIMARY KEY (instance_id, id)
);

REVOKE ALL ON eventstore.archived_events, eventstore.archive_runs, eventstore.removals FROM PUBLIC;

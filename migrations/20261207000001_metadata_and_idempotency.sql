-- Event metadata (correlation id, causation id, headers) and idempotency keys for pushes.

-- NULL when an event has no metadata, which most have. Nullable without a default, so adding it
-- rewrites nothing and takes only a moment on a table of any size.
ALTER TABLE eventstore.events ADD COLUMN metadata JSONB;

-- Serves `QueryBuilder::correlation_id`: one instance, one correlation id, in position order.
-- Partial, so the events without metadata cost the index nothing; it starts with instance_id like
-- every tenant index (ARCHITECTURE.md, "Invariants").
CREATE INDEX events_correlation
    ON eventstore.events (instance_id, (metadata->>'correlation_id'), position, in_tx_order)
    WHERE metadata IS NOT NULL;

-- One row per idempotency key a push recorded: which commands it was (their fingerprint) and
-- where its events are (position, the first in_tx_order and how many). A retry with the key reads
-- the events back from there. Rows older than the retention count as absent and are deleted by
-- `strata_postgres::admin::prune_idempotency_keys`.
CREATE TABLE eventstore.idempotency_keys (
    instance_id       TEXT        NOT NULL,
    key               TEXT        NOT NULL,
    fingerprint       TEXT        NOT NULL,
    position          NUMERIC     NOT NULL,
    first_in_tx_order INTEGER     NOT NULL,
    event_count       INTEGER     NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (instance_id, key)
);

-- No index on created_at: every keyed push would pay for it, and only pruning (a maintenance job,
-- run rarely) would use it; a sequential scan of a day's keys serves that well enough.

REVOKE ALL ON eventstore.idempotency_keys FROM PUBLIC;

-- The push functions take metadata and keys now. A new argument list is a new overload in
-- PostgreSQL, so the old signatures go; the function files (applied after the migrations) create
-- the new ones.
DROP FUNCTION IF EXISTS eventstore.push(
    INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[], INTEGER[], TEXT[], TEXT[], TEXT[], BIGINT[],
    INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[]
);
DROP FUNCTION IF EXISTS eventstore.append_events(
    INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[], INTEGER[], TEXT[], TEXT[], TEXT[],
    INTEGER, INTEGER, NUMERIC, TIMESTAMPTZ
);
DROP FUNCTION IF EXISTS eventstore.push_one(TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT, TEXT);

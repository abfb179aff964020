-- The commit horizon: every event positioned below it is visible now, and no event positioned
-- below it can appear later (docs/position.md). Readers fetch only below it and so never skip an
-- event whose transaction commits late.
--
-- An event's position is its writing transaction's id. Taking a snapshot S, every id below S's
-- xmax that S does not list as running has finished, so the horizon is xmax, lowered to the
-- smallest running id that can still write events. A transaction can write events only while it
-- holds eventstore.events' ROW EXCLUSIVE lock, which every push takes before it takes its id
-- (eventstore.begin_push) and keeps to the end. So a running id of S whose transaction does not
-- hold that lock when pg_locks is read below either belongs to a transaction that writes no events
-- (an idle session in another database, a report, a migration of another table) or has finished
-- by then; either way it cannot hold the horizon back. A transaction that takes the lock later
-- gets an id at or above S's xmax.
--
-- Waiting for every running id (the snapshot's xmin) would let one idle transaction anywhere on
-- the server stall every projection for as long as it lives.
--
-- A standby has no view of the primary's locks, so there the horizon is the snapshot's xmin.
CREATE OR REPLACE FUNCTION eventstore.commit_horizon() RETURNS NUMERIC
-- VOLATILE (the default): it reads the lock table, which changes under any snapshot.
LANGUAGE plpgsql
AS $$
DECLARE
    v_snapshot pg_snapshot := pg_current_snapshot();
    v_writing  NUMERIC;
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN pg_snapshot_xmin(v_snapshot)::text::numeric;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(v_snapshot)) THEN
        RETURN pg_snapshot_xmax(v_snapshot)::text::numeric;
    END IF;
    -- pg_locks is read once: each read of it copies the whole lock table.
    WITH locks AS MATERIALIZED (
        SELECT locktype, database, relation, transactionid, virtualtransaction, mode, granted
        FROM pg_catalog.pg_locks
    ), writers AS (
        SELECT own.transactionid::text::numeric AS xid32
        FROM locks events_lock
        JOIN locks own ON own.virtualtransaction = events_lock.virtualtransaction
        WHERE events_lock.locktype = 'relation' AND events_lock.granted
          AND events_lock.relation = 'eventstore.events'::regclass
          AND events_lock.database = (SELECT oid FROM pg_catalog.pg_database
                                      WHERE datname = current_database())
          AND events_lock.mode = 'RowExclusiveLock'
          AND own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
    )
    SELECT min(running::text::numeric) INTO v_writing
    FROM pg_snapshot_xip(v_snapshot) AS running
    -- pg_locks shows 32-bit ids; xid8 carries the epoch above them.
    WHERE running::text::numeric % 4294967296 IN (SELECT xid32 FROM writers);
    RETURN coalesce(v_writing, pg_snapshot_xmax(v_snapshot)::text::numeric);
END
$$;

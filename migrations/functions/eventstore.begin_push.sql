-- What every push does first, before it takes advisory locks or a transaction id: it takes the
-- events table's ROW EXCLUSIVE lock, which marks its transaction as one that can still write
-- events. eventstore.commit_horizon() waits only for transactions that hold this lock, and that
-- is safe only if the lock comes before the id: a transaction with an id but without the lock
-- could otherwise write an event below a horizon a reader has already passed.
--
-- A push therefore refuses to run in a transaction that already has an id, unless that
-- transaction took this lock first and has not pushed yet (one push per transaction: the events
-- of two would share a position and repeat in_tx_order). Strata's client sends every push as a
-- transaction of its own, so this only ever stops hand-written SQL.
--
-- Called only by eventstore.push and eventstore.push_one, which fix the search_path it runs with.
CREATE OR REPLACE FUNCTION eventstore.begin_push() RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_xid xid8 := pg_current_xact_id_if_assigned();
BEGIN
    IF v_xid IS NULL THEN
        LOCK TABLE eventstore.events IN ROW EXCLUSIVE MODE;
        RETURN;
    END IF;
    -- The rare case, checked before this function takes the lock itself.
    IF NOT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted
          AND relation = 'eventstore.events'::regclass
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND mode = 'RowExclusiveLock'
    ) OR EXISTS (
        SELECT 1 FROM eventstore.events WHERE position = v_xid::text::numeric
    ) THEN
        RAISE EXCEPTION 'a push must be the first write of its transaction'
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'push in a transaction of its own, as Strata''s client does (docs/position.md)';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION eventstore.begin_push() FROM PUBLIC;

-- What every push does for the instances it touches, after eventstore.begin_push and before any
-- other advisory lock: it takes each instance's lock in shared mode, in key order, then refuses
-- (SQLSTATE SM001, nothing written) if one of them was moved away from this database.
--
-- Race-free against a move: the move marks the instance in eventstore.moved_instances in a
-- transaction that first takes the same lock exclusively (strata_postgres::moved_instances). A push
-- that passed this check holds the shared lock until it commits, so the mark waits for it, and the
-- move's final catch-up, which reads after the mark, sees its events. A push that takes the lock
-- after the mark committed reads the row here: this statement's snapshot is taken after the lock,
-- under READ COMMITTED, as the sequence a push computes under its aggregate's lock requires too.
--
-- Shared locks never wait for each other, and a move holds no other lock while it waits, so taking
-- these before the aggregate locks cannot deadlock. One lock and one probe of a (usually empty)
-- table per distinct instance of the push.
--
-- Called only by eventstore.push and eventstore.push_one, which fix the search_path it runs with.
CREATE OR REPLACE FUNCTION eventstore.enter_instances(p_instances TEXT[]) RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_moved RECORD;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(k)
    FROM (SELECT DISTINCT eventstore.instance_lock_key(i) AS k FROM unnest(p_instances) AS x(i)) keys
    ORDER BY k;
    SELECT m.instance_id, m.moved_to, m.state INTO v_moved
    FROM eventstore.moved_instances m
    WHERE m.instance_id = ANY (p_instances)
    ORDER BY m.instance_id
    LIMIT 1;
    IF FOUND THEN
        -- The detail is for the client, which decodes it into Error::InstanceMoved.
        RAISE EXCEPTION 'instance % moved to shard % (%): nothing was written',
                        v_moved.instance_id, v_moved.moved_to, v_moved.state
            USING ERRCODE = 'SM001',
                  DETAIL = json_build_object('instance', v_moved.instance_id,
                                             'to', v_moved.moved_to)::text,
                  HINT = 'reload the shard directory and push to the shard it names';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION eventstore.enter_instances(TEXT[]) FROM PUBLIC;

--
-- PostgreSQL database dump
--



SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: cache; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA cache;


--
-- Name: eventstore; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA eventstore;


--
-- Name: projections; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA projections;


--
-- Name: advisory_lock(integer); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.advisory_lock(p_object integer) RETURNS void
    LANGUAGE sql
    AS $$ SELECT pg_advisory_xact_lock(1128350536, p_object) $$;


--
-- Name: create_partitions(text); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.create_partitions(p_cache_name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    partition TEXT;
    parent TEXT;
    grant_row RECORD;
BEGIN
    IF p_cache_name IS NULL OR NOT cache.valid_name(p_cache_name) THEN
        RAISE EXCEPTION 'invalid cache name %', p_cache_name USING ERRCODE = '22023';
    END IF;
    IF NOT has_table_privilege(session_user, 'cache.objects', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied to create cache partitions' USING ERRCODE = '42501';
    END IF;
    -- The common case (the cache existed before this process started) takes no lock at all.
    IF to_regclass(format('cache.%I', 'objects_' || p_cache_name)) IS NOT NULL
        AND to_regclass(format('cache.%I', 'string_keys_' || p_cache_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    -- Object 0: partition DDL, one creator at a time.
    PERFORM cache.advisory_lock(0);
    FOREACH parent IN ARRAY ARRAY['objects', 'string_keys'] LOOP
        partition := parent || '_' || p_cache_name;
        IF to_regclass(format('cache.%I', partition)) IS NULL THEN
            EXECUTE format(
                'CREATE UNLOGGED TABLE cache.%I PARTITION OF cache.%I FOR VALUES IN (%L)',
                partition, parent, p_cache_name
            );
            FOR grant_row IN
                SELECT acl.privilege_type, acl.grantee
                FROM pg_class c, aclexplode(c.relacl) acl
                WHERE c.oid = format('cache.%I', parent)::regclass AND acl.grantee <> 0
            LOOP
                EXECUTE format(
                    'GRANT %s ON cache.%I TO %I',
                    grant_row.privilege_type, partition, pg_get_userbyid(grant_row.grantee)
                );
            END LOOP;
        END IF;
    END LOOP;
END
$$;


--
-- Name: delete_keys(text, text, text[]); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.delete_keys(p_cache_name text, p_index_name text, p_index_keys text[]) RETURNS void
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    touched BIGINT[];
BEGIN
    PERFORM cache.lock_keys_for_writing(
        p_cache_name, array_fill(p_index_name, ARRAY[cardinality(p_index_keys)]), p_index_keys
    );
    WITH gone AS (
        DELETE FROM cache.string_keys k
        WHERE k.cache_name = p_cache_name
            AND k.index_name = p_index_name
            AND k.index_key = ANY (p_index_keys)
        RETURNING k.object_id
    )
    SELECT array_agg(DISTINCT object_id) INTO touched FROM gone;
    IF touched IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM cache.objects o
    WHERE o.cache_name = p_cache_name
        AND o.id = ANY (touched)
        AND NOT EXISTS (
            SELECT 1 FROM cache.string_keys k
            WHERE k.cache_name = p_cache_name AND k.object_id = o.id
        );
END
$$;


--
-- Name: invalidate(text, text, text[]); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.invalidate(p_cache_name text, p_index_name text, p_index_keys text[]) RETURNS void
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
BEGIN
    PERFORM cache.lock_keys_for_writing(
        p_cache_name, array_fill(p_index_name, ARRAY[cardinality(p_index_keys)]), p_index_keys
    );
    WITH previous AS (
        SELECT DISTINCT k.object_id
        FROM cache.string_keys k
        WHERE k.cache_name = p_cache_name
            AND k.index_name = p_index_name
            AND k.index_key = ANY (p_index_keys)
    ), gone_keys AS (
        DELETE FROM cache.string_keys k
        USING previous
        WHERE k.cache_name = p_cache_name AND k.object_id = previous.object_id
    )
    DELETE FROM cache.objects o
    USING previous
    WHERE o.cache_name = p_cache_name AND o.id = previous.object_id;
END
$$;


--
-- Name: lock_for_writing(text); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.lock_for_writing(p_cache_name text) RETURNS void
    LANGUAGE sql
    AS $$ SELECT cache.advisory_lock(hashtext(p_cache_name)) $$;


--
-- Name: lock_keys_for_writing(text, text[], text[]); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.lock_keys_for_writing(p_cache_name text, p_index_names text[], p_index_keys text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    key_hash INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1128350536, hashtext(p_cache_name));
    FOR key_hash IN
        SELECT DISTINCT hashtext(concat_ws(chr(31), p_cache_name, u.index_name, u.index_key))
        FROM unnest(p_index_names, p_index_keys) AS u(index_name, index_key)
        ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(1128350537, key_hash);
    END LOOP;
END
$$;


--
-- Name: prune(text, interval, interval); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.prune(p_cache_name text, p_max_age interval, p_last_use_age interval) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    removed BIGINT;
BEGIN
    PERFORM cache.lock_for_writing(p_cache_name);
    WITH expired AS (
        DELETE FROM cache.objects o
        WHERE o.cache_name = p_cache_name
            AND (
                (p_max_age IS NOT NULL AND o.created_at <= now() - p_max_age)
                OR (p_last_use_age IS NOT NULL AND o.last_used_at <= now() - p_last_use_age)
                OR NOT EXISTS (
                    SELECT 1 FROM cache.string_keys k
                    WHERE k.cache_name = p_cache_name AND k.object_id = o.id
                )
            )
        RETURNING o.id
    )
    SELECT count(*) INTO removed FROM expired;

    DELETE FROM cache.string_keys k
    WHERE k.cache_name = p_cache_name
        AND NOT EXISTS (
            SELECT 1 FROM cache.objects o
            WHERE o.cache_name = p_cache_name AND o.id = k.object_id
        );
    RETURN removed;
END
$$;


--
-- Name: set_object(text, text[], text[], bytea); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.set_object(p_cache_name text, p_index_names text[], p_index_keys text[], p_payload bytea) RETURNS void
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    new_id BIGINT;
BEGIN
    PERFORM cache.lock_keys_for_writing(p_cache_name, p_index_names, p_index_keys);
    WITH previous AS (
        SELECT DISTINCT k.object_id
        FROM cache.string_keys k
        JOIN unnest(p_index_names, p_index_keys) AS u(index_name, index_key)
            ON k.index_name = u.index_name AND k.index_key = u.index_key
        WHERE k.cache_name = p_cache_name
    ), gone_keys AS (
        DELETE FROM cache.string_keys k
        USING previous
        WHERE k.cache_name = p_cache_name AND k.object_id = previous.object_id
    )
    DELETE FROM cache.objects o
    USING previous
    WHERE o.cache_name = p_cache_name AND o.id = previous.object_id;

    INSERT INTO cache.objects (cache_name, payload)
    VALUES (p_cache_name, p_payload)
    RETURNING id INTO new_id;

    INSERT INTO cache.string_keys (cache_name, index_name, index_key, object_id)
    SELECT DISTINCT p_cache_name, u.index_name, u.index_key, new_id
    FROM unnest(p_index_names, p_index_keys) AS u(index_name, index_key);
END
$$;


--
-- Name: truncate(text); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.truncate(p_cache_name text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_cache_name IS NULL OR NOT cache.valid_name(p_cache_name) THEN
        RAISE EXCEPTION 'invalid cache name %', p_cache_name USING ERRCODE = '22023';
    END IF;
    EXECUTE format(
        'TRUNCATE cache.%I, cache.%I',
        'string_keys_' || p_cache_name, 'objects_' || p_cache_name
    );
END
$$;


--
-- Name: valid_name(text); Type: FUNCTION; Schema: cache; Owner: -
--

CREATE FUNCTION cache.valid_name(p_cache_name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT
    AS $_$ SELECT p_cache_name ~ '^[a-z][a-z0-9_]{0,47}$' $_$;


--
-- Name: aggregate_lock_key(text, text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.aggregate_lock_key(p_instance text, p_aggregate_type text, p_aggregate_id text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended(((((p_instance || chr(31)) || p_aggregate_type) || chr(31)) || p_aggregate_id), (0)::bigint);


--
-- Name: append_events(integer[], text[], text[], text[], text[], integer[], text[], text[], text[], text[], integer, integer, numeric, timestamp with time zone); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.append_events(p_push integer[], p_instance text[], p_aggregate_type text[], p_aggregate_id text[], p_event_type text[], p_revision integer[], p_creator text[], p_owner text[], p_payload text[], p_metadata text[], p_from integer, p_to integer, p_position numeric, p_now timestamp with time zone) RETURNS TABLE(r_push integer, r_sequence bigint, r_in_tx_order integer)
    LANGUAGE plpgsql
    AS $$
-- PL/pgSQL rather than SQL: a PL/pgSQL function keeps its statement's plan for the session, where a
-- SQL function is planned again on every call, which costs as much as a small push itself.
BEGIN
    -- No joins on purpose: the planner cannot see how many elements the arrays hold and, guessing
    -- low, would pick nested loops that turn a 5 000-event push quadratic. Each aggregate's current
    -- sequence is looked up once (on its first command, by primary key) and spread over its other
    -- commands with a window; the push a row belongs to is read back from p_push by in_tx_order.
    RETURN QUERY
    WITH cmd AS (
        SELECT (ord - 1)::INTEGER AS ord, i, t, a, e, r, c, o, pl, md,
               row_number() OVER (PARTITION BY i, t, a ORDER BY ord) AS nth
        FROM unnest(p_push, p_instance, p_aggregate_type, p_aggregate_id, p_event_type,
                    p_revision, p_creator, p_owner, p_payload, p_metadata)
             WITH ORDINALITY AS x(push, i, t, a, e, r, c, o, pl, md, ord)
        WHERE push BETWEEN p_from AND p_to
    ), looked_up AS (
        SELECT cmd.*,
               CASE WHEN cmd.nth = 1 THEN eventstore.current_sequence(cmd.i, cmd.t, cmd.a)
               END AS current_sequence
        FROM cmd
    ), numbered AS (
        SELECT looked_up.*,
               max(looked_up.current_sequence) OVER (PARTITION BY i, t, a) + looked_up.nth AS next_sequence
        FROM looked_up
    ), inserted AS (
        INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence,
                                       event_type, revision, created_at, creator, owner, payload,
                                       position, in_tx_order, metadata)
        SELECT n.i, n.t, n.a, n.next_sequence, n.e, n.r, p_now, n.c, n.o, n.pl::jsonb, p_position,
               n.ord, n.md::jsonb
        FROM numbered n
        RETURNING sequence, in_tx_order
    )
    SELECT p_push[inserted.in_tx_order + 1], inserted.sequence, inserted.in_tx_order
    FROM inserted
    ORDER BY inserted.in_tx_order;
END
$$;


--
-- Name: archive_batch(text, bigint); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.archive_batch(p_instance text, p_run_id bigint) RETURNS TABLE(r_outcome text, r_done boolean, r_aggregates bigint, r_events bigint, r_projections text[])
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_run      eventstore.archive_runs%ROWTYPE;
    v_types    TEXT[];
    v_ids      TEXT[];
    v_count    INTEGER;
    v_last     RECORD;
    v_checksum NUMERIC;
BEGIN
    -- Locks the run: two processes running it take turns, batch by batch.
    SELECT * INTO v_run FROM eventstore.archive_runs r
    WHERE r.instance_id = p_instance AND r.id = p_run_id AND r.kind = 'archive'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'archive run % of instance % does not exist', p_run_id, p_instance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r_aggregates := 0;
    r_events := 0;
    r_projections := '{}';
    IF v_run.finished_at IS NOT NULL THEN
        r_outcome := 'done';
        r_done := true;
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT coalesce(array_agg(c.aggregate_type ORDER BY c.aggregate_type, c.aggregate_id), '{}'),
           coalesce(array_agg(c.aggregate_id ORDER BY c.aggregate_type, c.aggregate_id), '{}')
    INTO v_types, v_ids
    FROM eventstore.archive_candidates(p_instance, v_run.aggregate_types,
        v_run.closing_event_types, v_run.horizon, v_run.after_aggregate_type,
        v_run.after_aggregate_id, v_run.batch_size) c;
    v_count := cardinality(v_types);

    IF v_count > 0 THEN
        -- No push to these aggregates lands between here and the move (pushes take the same lock).
        PERFORM pg_advisory_xact_lock(eventstore.aggregate_lock_key(p_instance, c.t, c.i))
        FROM unnest(v_types, v_ids) AS c(t, i)
        ORDER BY eventstore.aggregate_lock_key(p_instance, c.t, c.i);

        SELECT e.position, e.in_tx_order INTO v_last
        FROM eventstore.events e JOIN unnest(v_types, v_ids) AS c(t, i)
             ON e.instance_id = p_instance AND e.aggregate_type = c.t AND e.aggregate_id = c.i
        ORDER BY e.position DESC, e.in_tx_order DESC LIMIT 1;

        SELECT coalesce(array_agg(p.projection_name ORDER BY p.projection_name), '{}')
        INTO r_projections
        FROM projections.reading(p_instance, ARRAY(SELECT DISTINCT t FROM unnest(v_types) t)) p
        WHERE p.position IS NULL OR (p.position, p.in_tx_order) < (v_last.position, v_last.in_tx_order);
        IF cardinality(r_projections) > 0 THEN
            r_outcome := 'refused';
            r_done := false;
            RETURN NEXT;
            RETURN;
        END IF;

        PERFORM set_config('strata.removing_events', 'on', true);
        -- An aggregate written after the horizon since it was chosen stays hot, whole.
        WITH moved AS (
            DELETE FROM eventstore.events e
            USING unnest(v_types, v_ids) AS c(t, i)
            WHERE e.instance_id = p_instance AND e.aggregate_type = c.t AND e.aggregate_id = c.i
              AND NOT EXISTS (
                  SELECT 1 FROM eventstore.events n
                  WHERE n.instance_id = p_instance AND n.aggregate_type = c.t
                    AND n.aggregate_id = c.i AND n.created_at >= v_run.horizon)
            RETURNING e.*
        ), archived AS (
            INSERT INTO eventstore.archived_events SELECT * FROM moved RETURNING *
        )
        SELECT count(DISTINCT (a.aggregate_type, a.aggregate_id)), count(*),
               coalesce(sum(eventstore.event_digest(
                   a.instance_id, a.aggregate_type, a.aggregate_id, a.sequence, a.event_type,
                   a.revision, a.created_at, a.creator, a.owner, a.payload, a.position,
                   a.in_tx_order, a.metadata)), 0)
        INTO r_aggregates, r_events, v_checksum
        FROM archived a;
        PERFORM set_config('strata.removing_events', 'off', true);
    END IF;

    r_done := eventstore.record_archive_batch(
        p_instance, p_run_id, v_types[v_count], v_ids[v_count], v_count, v_run.batch_size,
        r_aggregates, r_events, v_checksum);
    r_outcome := 'moved';
    RETURN NEXT;
END
$$;


--
-- Name: archive_candidates(text, text[], text[], timestamp with time zone, text, text, integer); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.archive_candidates(p_instance text, p_types text[], p_closing text[], p_horizon timestamp with time zone, p_after_type text, p_after_id text, p_limit integer) RETURNS TABLE(aggregate_type text, aggregate_id text, events bigint, bytes bigint, last_position numeric, last_in_tx_order integer)
    LANGUAGE sql STABLE
    AS $$
    SELECT e.aggregate_type, e.aggregate_id, count(*), sum(pg_column_size(e.*))::bigint,
           (array_agg(e.position ORDER BY e.position DESC, e.in_tx_order DESC))[1],
           (array_agg(e.in_tx_order ORDER BY e.position DESC, e.in_tx_order DESC))[1]
    FROM eventstore.events e
    WHERE e.instance_id = p_instance
      AND (cardinality(p_types) = 0 OR e.aggregate_type = ANY (p_types))
      AND (p_after_type IS NULL OR (e.aggregate_type, e.aggregate_id) > (p_after_type, p_after_id))
    GROUP BY e.aggregate_type, e.aggregate_id
    HAVING max(e.created_at) < p_horizon
       AND (cardinality(p_closing) = 0
            OR (array_agg(e.event_type ORDER BY e.sequence DESC))[1] = ANY (p_closing))
    ORDER BY e.aggregate_type, e.aggregate_id
    LIMIT p_limit
$$;


--
-- Name: begin_push(); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.begin_push() RETURNS void
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


--
-- Name: commit_horizon(); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.commit_horizon() RETURNS numeric
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


--
-- Name: create_subject_key(text, text, integer, text, bytea); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.create_subject_key(p_instance text, p_subject text, p_version integer, p_master_key_id text, p_wrapped bytea) RETURNS TABLE(r_master_key_id text, r_wrapped bytea)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(eventstore.subject_lock_key(p_instance, p_subject));
    IF EXISTS (SELECT 1 FROM eventstore.erased_subjects
               WHERE instance_id = p_instance AND subject_id = p_subject) THEN
        RAISE EXCEPTION 'subject % of instance % was erased', p_subject, p_instance
            USING ERRCODE = 'SE001';
    END IF;
    INSERT INTO eventstore.subject_keys (instance_id, subject_id, key_version, master_key_id,
                                         wrapped_key)
    VALUES (p_instance, p_subject, p_version, p_master_key_id, p_wrapped)
    ON CONFLICT (instance_id, subject_id, key_version) DO NOTHING;
    RETURN QUERY
        SELECT k.master_key_id, k.wrapped_key FROM eventstore.subject_keys k
        WHERE k.instance_id = p_instance AND k.subject_id = p_subject
          AND k.key_version = p_version;
END
$$;


--
-- Name: current_sequence(text, text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.current_sequence(p_instance text, p_aggregate_type text, p_aggregate_id text) RETURNS bigint
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    v_last     RECORD;
    v_archived BIGINT;
BEGIN
    SELECT ev.instance_id, ev.aggregate_type, ev.aggregate_id, ev.sequence INTO v_last
    FROM eventstore.events ev
    WHERE (ev.instance_id, ev.aggregate_type, ev.aggregate_id, ev.sequence)
          <= (p_instance, p_aggregate_type, p_aggregate_id, 9223372036854775807)
    ORDER BY ev.instance_id DESC, ev.aggregate_type DESC, ev.aggregate_id DESC, ev.sequence DESC
    LIMIT 1;
    IF FOUND AND v_last.instance_id = p_instance AND v_last.aggregate_type = p_aggregate_type
       AND v_last.aggregate_id = p_aggregate_id THEN
        RETURN v_last.sequence;
    END IF;
    -- Equality on the key's first three columns and its order: only the primary key serves it.
    SELECT a.sequence INTO v_archived
    FROM eventstore.archived_events a
    WHERE a.instance_id = p_instance AND a.aggregate_type = p_aggregate_type
      AND a.aggregate_id = p_aggregate_id
    ORDER BY a.sequence DESC
    LIMIT 1;
    RETURN coalesce(v_archived, 0);
END
$$;


--
-- Name: enter_instances(text[]); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.enter_instances(p_instances text[]) RETURNS void
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


--
-- Name: erase_subject(text, text, text, text, text, integer, text, text, text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.erase_subject(p_instance text, p_subject text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text) RETURNS TABLE(r_keys_deleted bigint, r_sequence bigint, r_position numeric, r_created_at timestamp with time zone)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_erased_before BOOLEAN;
BEGIN
    PERFORM pg_advisory_xact_lock(eventstore.subject_lock_key(p_instance, p_subject));
    SELECT EXISTS (SELECT 1 FROM eventstore.erased_subjects
                   WHERE instance_id = p_instance AND subject_id = p_subject)
    INTO v_erased_before;
    -- The record first: a push must be its transaction's first write (docs/position.md).
    IF NOT v_erased_before AND p_event_type IS NOT NULL THEN
        SELECT one.r_sequence, one.r_position, one.r_created_at
        INTO r_sequence, r_position, r_created_at
        FROM eventstore.push_one(p_instance, p_aggregate_type, p_aggregate_id, p_event_type,
                                 p_revision, p_creator, p_owner, p_payload, p_metadata) one;
    END IF;
    DELETE FROM eventstore.subject_keys WHERE instance_id = p_instance AND subject_id = p_subject;
    GET DIAGNOSTICS r_keys_deleted = ROW_COUNT;
    INSERT INTO eventstore.erased_subjects (instance_id, subject_id, position)
    VALUES (p_instance, p_subject, r_position) ON CONFLICT DO NOTHING;
    -- Delivered at commit to every process listening: their vaults forget the subject's keys
    -- at once. Erasures are rare, so the notice may travel inside the transaction.
    PERFORM pg_notify('strata_erased', p_instance || chr(10) || p_subject);
    RETURN NEXT;
END
$$;


--
-- Name: event_digest(text, text, text, bigint, text, integer, timestamp with time zone, text, text, jsonb, numeric, integer, jsonb); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.event_digest(p_instance_id text, p_aggregate_type text, p_aggregate_id text, p_sequence bigint, p_event_type text, p_revision integer, p_created_at timestamp with time zone, p_creator text, p_owner text, p_payload jsonb, p_position numeric, p_in_tx_order integer, p_metadata jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((('x'::text || substr(md5(concat_ws(chr(31), p_instance_id, p_aggregate_type, p_aggregate_id, (p_sequence)::text, p_event_type, (p_revision)::text, (EXTRACT(epoch FROM p_created_at))::text, p_creator, p_owner, COALESCE((p_payload)::text, '\N'::text), (p_position)::text, (p_in_tx_order)::text, COALESCE((p_metadata)::text, '\N'::text))), 1, 15)))::bit(60))::bigint;


--
-- Name: grant_roles(); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.grant_roles() RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_writer   TEXT;
    v_migrator TEXT;
BEGIN
    SELECT r.role_name INTO v_writer FROM eventstore.roles r
    WHERE r.kind = 'writer' AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.role_name);
    SELECT r.role_name INTO v_migrator FROM eventstore.roles r
    WHERE r.kind = 'migrator' AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.role_name);

    IF v_writer IS NOT NULL THEN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), v_writer);
        EXECUTE format('GRANT USAGE ON SCHEMA eventstore, projections, cache TO %I', v_writer);
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER '
                       'ON ALL TABLES IN SCHEMA eventstore FROM %I', v_writer);
        -- The archive is readable like the hot table (reads through the archive, and
        -- EventStore::current_sequence), never writable; personal-data keys are read directly and
        -- written only through their functions.
        EXECUTE format('GRANT SELECT ON eventstore.events, eventstore.unique_constraints, '
                       'eventstore.archived_events, eventstore.subject_keys, '
                       'eventstore.erased_subjects TO %I', v_writer);
        EXECUTE format('GRANT EXECUTE ON FUNCTION '
                       'eventstore.push(INTEGER[], TEXT[], TEXT[], TEXT[], TEXT[], INTEGER[], '
                       'TEXT[], TEXT[], TEXT[], BIGINT[], TEXT[], INTEGER[], TEXT[], TEXT[], TEXT[], '
                       'TEXT[], INTEGER[], TEXT[], TEXT[], TEXT[], INTERVAL), '
                       'eventstore.push_one(TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT, TEXT, TEXT), '
                       'eventstore.recorded_push(TEXT, TEXT, INTERVAL), '
                       'eventstore.create_subject_key(TEXT, TEXT, INTEGER, TEXT, BYTEA), '
                       'eventstore.erase_subject(TEXT, TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT, '
                       'TEXT, TEXT), '
                       'eventstore.rewrap_subject_key(TEXT, TEXT, INTEGER, TEXT, BYTEA, TEXT, BYTEA) '
                       'TO %I', v_writer);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA projections '
                       'TO %I', v_writer);
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA projections TO %I', v_writer);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA cache '
                       'TO %I', v_writer);
    END IF;

    IF v_migrator IS NOT NULL THEN
        EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), v_migrator);
        EXECUTE format('GRANT ALL ON SCHEMA eventstore, projections, cache TO %I', v_migrator);
        EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA eventstore, projections, cache TO %I',
                       v_migrator);
        EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA projections, cache TO %I', v_migrator);
        EXECUTE format('GRANT EXECUTE ON FUNCTION eventstore.remove_instance(TEXT), '
                       'eventstore.hard_delete(TEXT, TEXT, TEXT, TEXT, TEXT, BOOLEAN, TEXT[], TEXT[]), '
                       'eventstore.archive_candidates(TEXT, TEXT[], TEXT[], TIMESTAMPTZ, TEXT, TEXT, '
                       'INTEGER), '
                       'eventstore.archive_batch(TEXT, BIGINT), eventstore.restore_batch(TEXT, BIGINT), '
                       'projections.reading(TEXT, TEXT[]) TO %I', v_migrator);
    END IF;
END
$$;


--
-- Name: hard_delete(text, text, text, text, text, boolean, text[], text[]); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.hard_delete(p_instance text, p_aggregate_type text, p_aggregate_id text, p_actor text, p_reason text, p_rebuild boolean, p_release_unique_types text[], p_release_unique_values text[]) RETURNS TABLE(r_outcome text, r_removal_id bigint, r_hot_events bigint, r_archived_events bigint, r_idempotency_keys bigint, r_unique_constraints bigint, r_failed_events bigint, r_projections text[])
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_whole      BOOLEAN := p_aggregate_type IS NULL AND p_aggregate_id IS NULL;
    v_types      TEXT[];
    v_first      RECORD;
    v_last       RECORD;
    v_checksum   NUMERIC;
BEGIN
    IF coalesce(p_instance, '') = '' OR coalesce(p_actor, '') = '' OR coalesce(p_reason, '') = ''
       OR (p_aggregate_type IS NULL) <> (p_aggregate_id IS NULL)
       OR p_aggregate_type = '' OR p_aggregate_id = ''
       OR cardinality(coalesce(p_release_unique_types, '{}'))
          <> cardinality(coalesce(p_release_unique_values, '{}'))
       OR (v_whole AND cardinality(coalesce(p_release_unique_types, '{}')) > 0) THEN
        RAISE EXCEPTION 'hard_delete: an instance, an actor and a reason are required, an aggregate '
                        'type and id go together, and unique constraints are released per aggregate '
                        'as type/value pairs'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT v_whole THEN
        v_types := ARRAY[p_aggregate_type];
        -- No push to the aggregate can land between the count and the delete.
        PERFORM pg_advisory_xact_lock(
            eventstore.aggregate_lock_key(p_instance, p_aggregate_type, p_aggregate_id));
    END IF;

    -- The projections' leases: none of them can move its checkpoint while this runs.
    PERFORM pg_advisory_xact_lock(projections.lease_key(p.projection_name, p_instance))
    FROM projections.reading(p_instance, v_types) p
    ORDER BY projections.lease_key(p.projection_name, p_instance);

    SELECT e.position, e.in_tx_order INTO v_first
    FROM (SELECT h.position, h.in_tx_order FROM eventstore.events h
          WHERE h.instance_id = p_instance
            AND (v_whole OR (h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id))
          UNION ALL
          SELECT a.position, a.in_tx_order FROM eventstore.archived_events a
          WHERE a.instance_id = p_instance
            AND (v_whole OR (a.aggregate_type = p_aggregate_type AND a.aggregate_id = p_aggregate_id))
         ) e
    ORDER BY e.position, e.in_tx_order LIMIT 1;
    IF NOT FOUND THEN
        r_outcome := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT e.position, e.in_tx_order INTO v_last
    FROM (SELECT h.position, h.in_tx_order FROM eventstore.events h
          WHERE h.instance_id = p_instance
            AND (v_whole OR (h.aggregate_type = p_aggregate_type AND h.aggregate_id = p_aggregate_id))
          UNION ALL
          SELECT a.position, a.in_tx_order FROM eventstore.archived_events a
          WHERE a.instance_id = p_instance
            AND (v_whole OR (a.aggregate_type = p_aggregate_type AND a.aggregate_id = p_aggregate_id))
         ) e
    ORDER BY e.position DESC, e.in_tx_order DESC LIMIT 1;

    SELECT coalesce(array_agg(p.projection_name ORDER BY p.projection_name), '{}') INTO r_projections
    FROM projections.reading(p_instance, v_types) p
    WHERE p.position IS NOT NULL
      AND (p.position, p.in_tx_order) >= (v_first.position, v_first.in_tx_order);
    IF cardinality(r_projections) > 0 AND NOT p_rebuild THEN
        r_outcome := 'refused';
        RETURN NEXT;
        RETURN;
    END IF;

    PERFORM set_config('strata.removing_events', 'on', true);

    -- Keys first, while the events they point at can still be found.
    DELETE FROM eventstore.idempotency_keys k
    WHERE k.instance_id = p_instance
      AND (v_whole OR EXISTS (
          SELECT 1 FROM eventstore.events e
          WHERE e.instance_id = p_instance AND e.aggregate_type = p_aggregate_type
            AND e.aggregate_id = p_aggregate_id AND e.position = k.position
            AND e.in_tx_order BETWEEN k.first_in_tx_order
                                  AND k.first_in_tx_order + k.event_count - 1
          UNION ALL
          SELECT 1 FROM eventstore.archived_events e
          WHERE e.instance_id = p_instance AND e.aggregate_type = p_aggregate_type
            AND e.aggregate_id = p_aggregate_id AND e.position = k.position
            AND e.in_tx_order BETWEEN k.first_in_tx_order
                                  AND k.first_in_tx_order + k.event_count - 1));
    GET DIAGNOSTICS r_idempotency_keys = ROW_COUNT;

    DELETE FROM eventstore.events e
    WHERE e.instance_id = p_instance
      AND (v_whole OR (e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id));
    GET DIAGNOSTICS r_hot_events = ROW_COUNT;

    WITH removed AS (
        DELETE FROM eventstore.archived_events e
        WHERE e.instance_id = p_instance
          AND (v_whole OR (e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id))
        RETURNING e.*
    )
    SELECT count(*), coalesce(sum(eventstore.event_digest(
               instance_id, aggregate_type, aggregate_id, sequence, event_type, revision,
               created_at, creator, owner, payload, position, in_tx_order, metadata)), 0)
    INTO r_archived_events, v_checksum
    FROM removed;

    PERFORM set_config('strata.removing_events', 'off', true);

    IF v_whole THEN
        -- A manifest of an instance that is gone describes nothing.
        DELETE FROM eventstore.archive_runs WHERE instance_id = p_instance;
        DELETE FROM eventstore.unique_constraints WHERE instance_id = p_instance;
        GET DIAGNOSTICS r_unique_constraints = ROW_COUNT;
        DELETE FROM projections.failed_events WHERE instance_id = p_instance;
        GET DIAGNOSTICS r_failed_events = ROW_COUNT;
        -- Its subjects' keys go with it (nothing is left for them to open).
        DELETE FROM eventstore.subject_keys WHERE instance_id = p_instance;
        DELETE FROM eventstore.erased_subjects WHERE instance_id = p_instance;
    ELSE
        IF r_archived_events > 0 THEN
            -- Keeps `strata archive verify` balanced: the manifest says what left the archive.
            INSERT INTO eventstore.archive_runs (instance_id, kind, aggregate_types, aggregate_id,
                closing_event_types, batch_size, aggregates, events, checksum, actor, finished_at)
            VALUES (p_instance, 'hard_delete', ARRAY[p_aggregate_type], p_aggregate_id, '{}', 1, 1,
                    r_archived_events, v_checksum, p_actor, now());
        END IF;
        DELETE FROM eventstore.unique_constraints u
        USING unnest(p_release_unique_types, p_release_unique_values) AS r(t, v)
        WHERE u.instance_id = p_instance AND u.unique_type = r.t AND u.unique_field = r.v;
        GET DIAGNOSTICS r_unique_constraints = ROW_COUNT;
        DELETE FROM projections.failed_events f
        WHERE f.instance_id = p_instance AND f.aggregate_type = p_aggregate_type
          AND f.aggregate_id = p_aggregate_id;
        GET DIAGNOSTICS r_failed_events = ROW_COUNT;
    END IF;

    IF p_rebuild AND cardinality(r_projections) > 0 THEN
        INSERT INTO projections.requests (instance_id, projection_name, kind)
        SELECT p_instance, p, 'rebuild' FROM unnest(r_projections) AS p;
    END IF;

    INSERT INTO eventstore.removals (instance_id, aggregate_type, aggregate_id, hot_events,
        archived_events, first_position, first_in_tx_order, last_position, last_in_tx_order,
        idempotency_keys, unique_constraints, failed_events, projections_rebuilt, actor, reason)
    VALUES (p_instance, p_aggregate_type, p_aggregate_id, r_hot_events, r_archived_events,
            v_first.position, v_first.in_tx_order, v_last.position, v_last.in_tx_order,
            r_idempotency_keys, r_unique_constraints, r_failed_events, r_projections, p_actor,
            p_reason)
    RETURNING id INTO r_removal_id;
    r_outcome := 'removed';
    RETURN NEXT;
END
$$;


--
-- Name: idempotency_lock_key(text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.idempotency_lock_key(p_instance text, p_key text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended((((('idempotency'::text || chr(31)) || p_instance) || chr(31)) || p_key), (0)::bigint);


--
-- Name: instance_lock_key(text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.instance_lock_key(p_instance text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended((('instance'::text || chr(31)) || p_instance), (0)::bigint);


--
-- Name: push(integer[], text[], text[], text[], text[], integer[], text[], text[], text[], bigint[], text[], integer[], text[], text[], text[], text[], integer[], text[], text[], text[], interval); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.push(p_push integer[], p_instance text[], p_aggregate_type text[], p_aggregate_id text[], p_event_type text[], p_revision integer[], p_creator text[], p_owner text[], p_payload text[], p_expected bigint[], p_metadata text[], u_push integer[], u_op text[], u_instance text[], u_type text[], u_value text[], k_push integer[], k_instance text[], k_key text[], k_fingerprint text[], p_key_retention interval) RETURNS TABLE(r_push integer, r_sequence bigint, r_in_tx_order integer, r_position numeric, r_created_at timestamp with time zone, r_error text, r_error_args bigint[])
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_position  NUMERIC;
    v_now       TIMESTAMPTZ := now();
    v_last_push INTEGER := coalesce(p_push[array_upper(p_push, 1)], -1);
    v_push      INTEGER;
    v_conflict  RECORD;
    v_add       RECORD;
    v_failed_op BIGINT;
    v_keyed     BOOLEAN := cardinality(k_push) > 0;
    v_per_push  BOOLEAN;
    v_key_instance TEXT;
    v_key          TEXT;
    v_key_fingerprint TEXT;
    v_recorded  RECORD;
BEGIN
    -- One command, no expectation, no unique constraint, no key: eventstore.push_one, the one
    -- definition of that path.
    IF cardinality(p_push) = 1 AND cardinality(u_push) = 0 AND p_expected[1] IS NULL
       AND NOT v_keyed THEN
        RETURN QUERY
        SELECT 0, one.r_sequence, 0, one.r_position, one.r_created_at, NULL::TEXT, NULL::BIGINT[]
        FROM eventstore.push_one(p_instance[1], p_aggregate_type[1], p_aggregate_id[1],
                                 p_event_type[1], p_revision[1], p_creator[1], p_owner[1],
                                 p_payload[1], p_metadata[1]) one;
        RETURN;
    END IF;

    PERFORM eventstore.begin_push();
    -- Every instance the call touches, before the aggregate locks: refused here if it moved away.
    PERFORM eventstore.enter_instances(p_instance || u_instance || k_instance);

    -- Lock every aggregate, unique value and idempotency key the call touches, in key order, so two
    -- calls that share keys queue instead of deadlocking. Sequences are then computed under the
    -- lock, so concurrent writers to one aggregate never collide and never retry; and a push with
    -- an idempotency key finds the key recorded if a push with it committed before, so concurrent
    -- retries store one copy.
    PERFORM pg_advisory_xact_lock(k)
    FROM (
        SELECT eventstore.aggregate_lock_key(i, t, a) AS k
        FROM unnest(p_instance, p_aggregate_type, p_aggregate_id) AS x(i, t, a)
        UNION
        SELECT eventstore.unique_lock_key(i, t, v)
        FROM unnest(u_op, u_instance, u_type, u_value) AS y(op, i, t, v)
        WHERE op <> 'clear'
        UNION
        SELECT eventstore.idempotency_lock_key(i, key)
        FROM unnest(k_instance, k_key) AS z(i, key)
    ) keys
    ORDER BY k;

    -- The position is this transaction's id, taken only now that the locks are held: a later push to
    -- the same aggregate is assigned a later id, so position order agrees with sequence order.
    v_position := pg_current_xact_id()::text::numeric;

    v_per_push := cardinality(u_push) > 0
                  OR EXISTS (SELECT 1 FROM unnest(p_expected) e WHERE e IS NOT NULL);
    IF v_keyed AND NOT v_per_push THEN
        -- Record every key before appending, in one statement: where a push's events will be is
        -- known already (this position; in_tx_order = the command's place in the call). A key
        -- that is new, or recorded longer ago than the retention, is written; one that is live
        -- (a retry) is left alone and not returned, and a key two pushes share is written once.
        -- All written (every first attempt): the fast path below stores the events. Otherwise
        -- the rows just written are taken back and every push goes through the per-push path,
        -- which tells replays from first pushes. ON CONFLICT finds a live key through the
        -- primary key whatever the statistics say; a separate probe planned while the table was
        -- small kept a sequential scan for the session and slowed keyed pushes as it grew.
        WITH pushes AS (
            SELECT x.push, (min(x.ord) - 1)::INTEGER AS first, count(*)::INTEGER AS n
            FROM unnest(p_push) WITH ORDINALITY AS x(push, ord)
            GROUP BY x.push
        ), written AS (
            INSERT INTO eventstore.idempotency_keys AS ik
                (instance_id, key, fingerprint, position, first_in_tx_order, event_count, created_at)
            SELECT DISTINCT ON (k.i, k.key) k.i, k.key, k.fp, v_position, c.first, c.n, v_now
            FROM unnest(k_push, k_instance, k_key, k_fingerprint) AS k(push, i, key, fp)
            JOIN pushes c ON c.push = k.push
            ORDER BY k.i, k.key, k.push
            ON CONFLICT (instance_id, key) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, position = EXCLUDED.position,
                first_in_tx_order = EXCLUDED.first_in_tx_order,
                event_count = EXCLUDED.event_count, created_at = EXCLUDED.created_at
            WHERE ik.created_at <= v_now - p_key_retention
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM written) < cardinality(k_push) INTO v_per_push;
    END IF;

    IF NOT v_per_push THEN
        -- Fast path: nothing can fail per push, so all pushes go in as one statement (their keys,
        -- if any, are recorded above).
        RETURN QUERY
        SELECT a.r_push, a.r_sequence, a.r_in_tx_order, v_position, v_now, NULL::TEXT, NULL::BIGINT[]
        FROM eventstore.append_events(p_push, p_instance, p_aggregate_type, p_aggregate_id,
                                      p_event_type, p_revision, p_creator, p_owner, p_payload,
                                      p_metadata, 0, v_last_push, v_position, v_now) a;
        RETURN;
    END IF;

    -- Only this path runs statements on eventstore.unique_constraints and the expected-sequence
    -- check: they may only probe indexes in nested loops, whatever the statistics said when the
    -- session first planned them. Set here for the rest of the transaction, which is the push
    -- call's own, rather than as SET clauses, which every call would pay for.
    PERFORM set_config('enable_seqscan', 'off', true),
            set_config('enable_hashjoin', 'off', true),
            set_config('enable_mergejoin', 'off', true);

    -- Take back the keys recorded above for the fast path that did not happen: each push records
    -- its own below, once it is stored. (This transaction's position marks exactly those rows; an
    -- expired row they took over is gone, which is what expired means.)
    IF v_keyed THEN
        DELETE FROM eventstore.idempotency_keys ik
        USING unnest(k_instance, k_key) AS k(i, key)
        WHERE ik.instance_id = k.i AND ik.key = k.key AND ik.position = v_position;
    END IF;

    FOR v_push IN 0 .. v_last_push LOOP
        -- A recorded key answers for its push, which stores nothing. Read inside this transaction,
        -- so a key an earlier push of this call recorded counts: two pushes of one call with one
        -- key store one copy.
        v_key := NULL;
        IF v_keyed THEN
            SELECT k.i, k.key, k.fp INTO v_key_instance, v_key, v_key_fingerprint
            FROM unnest(k_push, k_instance, k_key, k_fingerprint) AS k(push, i, key, fp)
            WHERE k.push = v_push;
        END IF;
        IF v_key IS NOT NULL THEN
            SELECT ik.fingerprint, ik.position, ik.first_in_tx_order, ik.event_count INTO v_recorded
            FROM eventstore.idempotency_keys ik
            WHERE ik.instance_id = v_key_instance AND ik.key = v_key
              AND ik.created_at > v_now - p_key_retention;
            IF FOUND THEN
                r_push := v_push; r_sequence := NULL; r_in_tx_order := NULL; r_created_at := NULL;
                IF v_recorded.fingerprint = v_key_fingerprint THEN
                    r_error := 'replay'; r_position := v_recorded.position;
                    r_error_args := ARRAY[v_recorded.first_in_tx_order, v_recorded.event_count];
                ELSE
                    r_error := 'key_reused'; r_position := NULL; r_error_args := NULL;
                END IF;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;

        -- Expected sequences compare with the aggregate before this push.
        SELECT c.ord, c.expected, cur.seq INTO v_conflict
        FROM unnest(p_push, p_instance, p_aggregate_type, p_aggregate_id, p_expected)
             WITH ORDINALITY AS c(push, i, t, a, expected, ord)
        CROSS JOIN LATERAL (
            SELECT eventstore.current_sequence(c.i, c.t, c.a) AS seq
        ) cur
        WHERE c.push = v_push AND c.expected IS NOT NULL AND c.expected <> cur.seq
        ORDER BY c.ord
        LIMIT 1;
        IF FOUND THEN
            r_push := v_push; r_error := 'conflict';
            r_error_args := ARRAY[v_conflict.ord - 1, v_conflict.expected, v_conflict.seq];
            r_sequence := NULL; r_in_tx_order := NULL; r_position := NULL; r_created_at := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF v_push = ANY(u_push) THEN
            -- A subtransaction, so a clash undoes this push's removals and earlier additions only.
            BEGIN
                DELETE FROM eventstore.unique_constraints uc
                USING unnest(u_push, u_op, u_instance, u_type, u_value) AS r(push, op, i, t, v)
                WHERE r.push = v_push AND r.op = 'remove'
                  AND uc.instance_id = r.i AND uc.unique_type = r.t AND uc.unique_field = r.v;
                DELETE FROM eventstore.unique_constraints uc
                USING unnest(u_push, u_op, u_instance) AS r(push, op, i)
                WHERE r.push = v_push AND r.op = 'clear' AND uc.instance_id = r.i;
                FOR v_add IN
                    SELECT r.ord, r.i, r.t, r.v
                    FROM unnest(u_push, u_op, u_instance, u_type, u_value)
                         WITH ORDINALITY AS r(push, op, i, t, v, ord)
                    WHERE r.push = v_push AND r.op = 'add'
                    ORDER BY r.ord
                LOOP
                    INSERT INTO eventstore.unique_constraints (instance_id, unique_type, unique_field)
                    VALUES (v_add.i, v_add.t, v_add.v)
                    ON CONFLICT DO NOTHING;
                    IF NOT FOUND THEN
                        v_failed_op := v_add.ord - 1;
                        RAISE EXCEPTION USING ERRCODE = 'SU001';
                    END IF;
                END LOOP;
                RETURN QUERY
                SELECT a.r_push, a.r_sequence, a.r_in_tx_order, v_position, v_now, NULL::TEXT, NULL::BIGINT[]
                FROM eventstore.append_events(p_push, p_instance, p_aggregate_type, p_aggregate_id,
                                              p_event_type, p_revision, p_creator, p_owner, p_payload,
                                              p_metadata, v_push, v_push, v_position, v_now) a;
                -- Inside the subtransaction: the key is recorded exactly when the events are.
                IF v_key IS NOT NULL THEN
                    PERFORM eventstore.record_idempotency_key(v_key_instance, v_key,
                        v_key_fingerprint, v_position, p_push, v_push, v_now);
                END IF;
            EXCEPTION WHEN SQLSTATE 'SU001' THEN
                r_push := v_push; r_error := 'unique'; r_error_args := ARRAY[v_failed_op];
                r_sequence := NULL; r_in_tx_order := NULL; r_position := NULL; r_created_at := NULL;
                RETURN NEXT;
            END;
        ELSE
            RETURN QUERY
            SELECT a.r_push, a.r_sequence, a.r_in_tx_order, v_position, v_now, NULL::TEXT, NULL::BIGINT[]
            FROM eventstore.append_events(p_push, p_instance, p_aggregate_type, p_aggregate_id,
                                          p_event_type, p_revision, p_creator, p_owner, p_payload,
                                          p_metadata, v_push, v_push, v_position, v_now) a;
            IF v_key IS NOT NULL THEN
                PERFORM eventstore.record_idempotency_key(v_key_instance, v_key,
                    v_key_fingerprint, v_position, p_push, v_push, v_now);
            END IF;
        END IF;
    END LOOP;
END
$$;


--
-- Name: push_one(text, text, text, text, integer, text, text, text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.push_one(p_instance text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text) RETURNS TABLE(r_sequence bigint, r_position numeric, r_created_at timestamp with time zone)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM eventstore.begin_push();
    -- Refused here if the instance moved away; otherwise it cannot move until this commits.
    PERFORM eventstore.enter_instances(ARRAY[p_instance]);
    PERFORM pg_advisory_xact_lock(
        eventstore.aggregate_lock_key(p_instance, p_aggregate_type, p_aggregate_id));
    -- Taken under the lock: a later push to the aggregate gets a later transaction id.
    r_position := pg_current_xact_id()::text::numeric;
    r_created_at := now();
    INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence,
                                   event_type, revision, created_at, creator, owner, payload,
                                   position, in_tx_order, metadata)
    VALUES (p_instance, p_aggregate_type, p_aggregate_id,
            eventstore.current_sequence(p_instance, p_aggregate_type, p_aggregate_id) + 1,
            p_event_type, p_revision, r_created_at, p_creator, p_owner, p_payload::jsonb,
            r_position, 0, p_metadata::jsonb)
    RETURNING sequence INTO r_sequence;
    RETURN NEXT;
END
$$;


--
-- Name: record_archive_batch(text, bigint, text, text, integer, integer, bigint, bigint, numeric); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.record_archive_batch(p_instance text, p_run_id bigint, p_last_type text, p_last_id text, p_selected integer, p_batch_size integer, p_aggregates bigint, p_events bigint, p_checksum numeric) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_done BOOLEAN := p_selected < p_batch_size;
BEGIN
    UPDATE eventstore.archive_runs r SET
        after_aggregate_type = coalesce(p_last_type, r.after_aggregate_type),
        after_aggregate_id = coalesce(p_last_id, r.after_aggregate_id),
        aggregates = r.aggregates + p_aggregates,
        events = r.events + p_events,
        checksum = r.checksum + coalesce(p_checksum, 0),
        updated_at = now(),
        finished_at = CASE WHEN v_done THEN now() END
    WHERE r.instance_id = p_instance AND r.id = p_run_id;
    RETURN v_done;
END
$$;


--
-- Name: record_idempotency_key(text, text, text, numeric, integer[], integer, timestamp with time zone); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.record_idempotency_key(p_instance text, p_key text, p_fingerprint text, p_position numeric, p_push_of_command integer[], p_push integer, p_now timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO eventstore.idempotency_keys AS ik
        (instance_id, key, fingerprint, position, first_in_tx_order, event_count, created_at)
    SELECT p_instance, p_key, p_fingerprint, p_position,
           (min(x.ord) - 1)::INTEGER, count(*)::INTEGER, p_now
    FROM unnest(p_push_of_command) WITH ORDINALITY AS x(push, ord)
    WHERE x.push = p_push
    ON CONFLICT (instance_id, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, position = EXCLUDED.position,
        first_in_tx_order = EXCLUDED.first_in_tx_order,
        event_count = EXCLUDED.event_count, created_at = EXCLUDED.created_at;
END
$$;


--
-- Name: recorded_push(text, text, interval); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.recorded_push(p_instance text, p_key text, p_key_retention interval) RETURNS TABLE(r_position numeric, r_first_in_tx_order integer, r_event_count integer)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT ik.position, ik.first_in_tx_order, ik.event_count
    FROM eventstore.idempotency_keys ik
    WHERE ik.instance_id = p_instance AND ik.key = p_key
      AND ik.created_at > now() - p_key_retention
$$;


--
-- Name: refuse_event_change(); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.refuse_event_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: remove_instance(text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.remove_instance(p_instance_id text) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    removed BIGINT;
    archived BIGINT;
BEGIN
    -- The one mechanism the append-only triggers honour (eventstore.refuse_event_change).
    PERFORM set_config('strata.removing_events', 'on', true);
    DELETE FROM eventstore.events WHERE instance_id = p_instance_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM eventstore.archived_events WHERE instance_id = p_instance_id;
    GET DIAGNOSTICS archived = ROW_COUNT;
    DELETE FROM eventstore.archive_runs WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.unique_constraints WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.idempotency_keys WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.subject_keys WHERE instance_id = p_instance_id;
    DELETE FROM eventstore.erased_subjects WHERE instance_id = p_instance_id;
    PERFORM set_config('strata.removing_events', 'off', true);
    RETURN removed + archived;
END
$$;


--
-- Name: restore_batch(text, bigint); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.restore_batch(p_instance text, p_run_id bigint) RETURNS TABLE(r_done boolean, r_aggregates bigint, r_events bigint)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_run      eventstore.archive_runs%ROWTYPE;
    v_types    TEXT[];
    v_ids      TEXT[];
    v_count    INTEGER;
    v_checksum NUMERIC;
BEGIN
    SELECT * INTO v_run FROM eventstore.archive_runs r
    WHERE r.instance_id = p_instance AND r.id = p_run_id AND r.kind = 'restore'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'restore run % of instance % does not exist', p_run_id, p_instance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r_aggregates := 0;
    r_events := 0;
    IF v_run.finished_at IS NOT NULL THEN
        r_done := true;
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT coalesce(array_agg(c.aggregate_type ORDER BY c.aggregate_type, c.aggregate_id), '{}'),
           coalesce(array_agg(c.aggregate_id ORDER BY c.aggregate_type, c.aggregate_id), '{}')
    INTO v_types, v_ids
    FROM (SELECT a.aggregate_type, a.aggregate_id
          FROM eventstore.archived_events a
          WHERE a.instance_id = p_instance
            AND (cardinality(v_run.aggregate_types) = 0
                 OR a.aggregate_type = ANY (v_run.aggregate_types))
            AND (v_run.aggregate_id IS NULL OR a.aggregate_id = v_run.aggregate_id)
            AND (v_run.after_aggregate_type IS NULL
                 OR (a.aggregate_type, a.aggregate_id)
                    > (v_run.after_aggregate_type, v_run.after_aggregate_id))
          GROUP BY a.aggregate_type, a.aggregate_id
          ORDER BY a.aggregate_type, a.aggregate_id
          LIMIT v_run.batch_size) c;
    v_count := cardinality(v_types);

    IF v_count > 0 THEN
        PERFORM pg_advisory_xact_lock(eventstore.aggregate_lock_key(p_instance, c.t, c.i))
        FROM unnest(v_types, v_ids) AS c(t, i)
        ORDER BY eventstore.aggregate_lock_key(p_instance, c.t, c.i);

        PERFORM set_config('strata.removing_events', 'on', true);
        WITH moved AS (
            DELETE FROM eventstore.archived_events a
            USING unnest(v_types, v_ids) AS c(t, i)
            WHERE a.instance_id = p_instance AND a.aggregate_type = c.t AND a.aggregate_id = c.i
            RETURNING a.*
        ), restored AS (
            INSERT INTO eventstore.events SELECT * FROM moved RETURNING *
        )
        SELECT count(DISTINCT (e.aggregate_type, e.aggregate_id)), count(*),
               coalesce(sum(eventstore.event_digest(
                   e.instance_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                   e.revision, e.created_at, e.creator, e.owner, e.payload, e.position,
                   e.in_tx_order, e.metadata)), 0)
        INTO r_aggregates, r_events, v_checksum
        FROM restored e;
        PERFORM set_config('strata.removing_events', 'off', true);
    END IF;

    r_done := eventstore.record_archive_batch(
        p_instance, p_run_id, v_types[v_count], v_ids[v_count], v_count, v_run.batch_size,
        r_aggregates, r_events, v_checksum);
    RETURN NEXT;
END
$$;


--
-- Name: rewrap_subject_key(text, text, integer, text, bytea, text, bytea); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.rewrap_subject_key(p_instance text, p_subject text, p_version integer, p_old_master_key_id text, p_old_wrapped bytea, p_new_master_key_id text, p_new_wrapped bytea) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    UPDATE eventstore.subject_keys
    SET master_key_id = p_new_master_key_id, wrapped_key = p_new_wrapped
    WHERE instance_id = p_instance AND subject_id = p_subject AND key_version = p_version
      AND master_key_id = p_old_master_key_id AND wrapped_key = p_old_wrapped;
    RETURN FOUND;
END
$$;


--
-- Name: set_up_roles(text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.set_up_roles(p_writer text, p_migrator text) RETURNS TABLE(r_kind text, r_role_name text, r_created boolean)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_previous TEXT;
BEGIN
    IF p_writer = p_migrator THEN
        RAISE EXCEPTION 'the writer and the migrator must be different roles'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR r_kind, r_role_name IN VALUES ('writer', p_writer), ('migrator', p_migrator) LOOP
        r_created := false;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r_role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r_role_name);
                r_created := true;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                -- Another database's set-up created it a moment ago.
                NULL;
            END;
        END IF;
        SELECT role_name INTO v_previous FROM eventstore.roles WHERE kind = r_kind;
        IF v_previous IS NOT NULL AND v_previous <> r_role_name
           AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_previous) THEN
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA eventstore, projections, cache FROM %I',
                           v_previous);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA projections, cache FROM %I',
                           v_previous);
            EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventstore FROM %I', v_previous);
            EXECUTE format('REVOKE ALL ON SCHEMA eventstore, projections, cache FROM %I', v_previous);
            EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), v_previous);
        END IF;
        INSERT INTO eventstore.roles (kind, role_name) VALUES (r_kind, r_role_name)
        ON CONFLICT (kind) DO UPDATE SET role_name = EXCLUDED.role_name;
        RETURN NEXT;
    END LOOP;
    PERFORM eventstore.grant_roles();
END
$$;


--
-- Name: subject_lock_key(text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.subject_lock_key(p_instance text, p_subject text) RETURNS bigint
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT hashtextextended('subject' || chr(31) || p_instance || chr(31) || p_subject, 0)
$$;


--
-- Name: unique_lock_key(text, text, text); Type: FUNCTION; Schema: eventstore; Owner: -
--

CREATE FUNCTION eventstore.unique_lock_key(p_instance text, p_unique_type text, p_value text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended((((((('unique'::text || chr(31)) || p_instance) || chr(31)) || p_unique_type) || chr(31)) || p_value), (0)::bigint);


--
-- Name: lease_key(text, text); Type: FUNCTION; Schema: projections; Owner: -
--

CREATE FUNCTION projections.lease_key(p_projection text, p_instance text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended((((('projection'::text || chr(31)) || p_projection) || chr(31)) || p_instance), (0)::bigint);


--
-- Name: reading(text, text[]); Type: FUNCTION; Schema: projections; Owner: -
--

CREATE FUNCTION projections.reading(p_instance text, p_aggregate_types text[]) RETURNS TABLE(projection_name text, "position" numeric, in_tx_order integer)
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(cs.projection_name, r.projection_name), cs.position, cs.in_tx_order
    FROM (SELECT s.projection_name, s.position, s.in_tx_order
          FROM projections.current_states s WHERE s.instance_id = p_instance) cs
    FULL JOIN projections.registry r ON r.projection_name = cs.projection_name
    WHERE r.projection_name IS NULL
       OR p_aggregate_types IS NULL
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(r.reads) AS rd(pair)
                  WHERE rd.pair->>0 = ANY (p_aggregate_types))
    ORDER BY 1
$$;


--
-- Name: switch_key(text); Type: FUNCTION; Schema: projections; Owner: -
--

CREATE FUNCTION projections.switch_key(p_projection text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended((('projection switch'::text || chr(31)) || p_projection), (0)::bigint);


--
-- Name: object_ids; Type: SEQUENCE; Schema: cache; Owner: -
--

CREATE UNLOGGED SEQUENCE cache.object_ids
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


SET default_tablespace = '';

--
-- Name: objects; Type: TABLE; Schema: cache; Owner: -
--

CREATE UNLOGGED TABLE cache.objects (
    cache_name text NOT NULL,
    id bigint DEFAULT nextval('cache.object_ids'::regclass) NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_used_at timestamp with time zone DEFAULT now() NOT NULL,
    payload bytea NOT NULL
)
PARTITION BY LIST (cache_name);


--
-- Name: string_keys; Type: TABLE; Schema: cache; Owner: -
--

CREATE UNLOGGED TABLE cache.string_keys (
    cache_name text NOT NULL,
    index_name text NOT NULL,
    index_key text NOT NULL,
    object_id bigint NOT NULL
)
PARTITION BY LIST (cache_name);


SET default_table_access_method = heap;

--
-- Name: applied_functions; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.applied_functions (
    file text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone NOT NULL
);


--
-- Name: archive_runs; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.archive_runs (
    instance_id text NOT NULL,
    id bigint NOT NULL,
    kind text NOT NULL,
    aggregate_types text[] NOT NULL,
    aggregate_id text,
    closing_event_types text[] NOT NULL,
    horizon timestamp with time zone,
    batch_size integer NOT NULL,
    after_aggregate_type text,
    after_aggregate_id text,
    aggregates bigint DEFAULT 0 NOT NULL,
    events bigint DEFAULT 0 NOT NULL,
    checksum numeric DEFAULT 0 NOT NULL,
    actor text NOT NULL,
    db_user text DEFAULT CURRENT_USER NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    CONSTRAINT archive_runs_batch_size_check CHECK ((batch_size > 0)),
    CONSTRAINT archive_runs_kind_check CHECK ((kind = ANY (ARRAY['archive'::text, 'restore'::text, 'hard_delete'::text])))
);


--
-- Name: archive_runs_id_seq; Type: SEQUENCE; Schema: eventstore; Owner: -
--

ALTER TABLE eventstore.archive_runs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME eventstore.archive_runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: archived_events; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.archived_events (
    instance_id text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint NOT NULL,
    event_type text NOT NULL,
    revision integer NOT NULL,
    created_at timestamp with time zone NOT NULL,
    creator text NOT NULL,
    owner text NOT NULL,
    payload jsonb,
    "position" numeric NOT NULL,
    in_tx_order integer NOT NULL,
    metadata jsonb
);


--
-- Name: erased_subjects; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.erased_subjects (
    instance_id text NOT NULL,
    subject_id text NOT NULL,
    erased_at timestamp with time zone DEFAULT now() NOT NULL,
    "position" numeric
);


--
-- Name: events; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.events (
    instance_id text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint NOT NULL,
    event_type text NOT NULL,
    revision integer NOT NULL,
    created_at timestamp with time zone NOT NULL,
    creator text NOT NULL,
    owner text NOT NULL,
    payload jsonb,
    "position" numeric NOT NULL,
    in_tx_order integer NOT NULL,
    metadata jsonb
);


--
-- Name: COLUMN events."position"; Type: COMMENT; Schema: eventstore; Owner: -
--

COMMENT ON COLUMN eventstore.events."position" IS 'xid8 of the writing transaction; read only below eventstore.commit_horizon() to never skip a late commit';


--
-- Name: idempotency_keys; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.idempotency_keys (
    instance_id text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    "position" numeric NOT NULL,
    first_in_tx_order integer NOT NULL,
    event_count integer NOT NULL,
    created_at timestamp with time zone NOT NULL
);


--
-- Name: mirror_progress; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.mirror_progress (
    source text NOT NULL,
    instances text NOT NULL,
    "position" numeric NOT NULL,
    in_tx_order integer NOT NULL,
    events_copied bigint NOT NULL,
    updated_at timestamp with time zone NOT NULL
);


--
-- Name: moved_instances; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.moved_instances (
    instance_id text NOT NULL,
    moved_to text NOT NULL,
    state text NOT NULL,
    moved_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT moved_instances_state_check CHECK ((state = ANY (ARRAY['moving'::text, 'moved'::text])))
);


--
-- Name: removals; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.removals (
    instance_id text NOT NULL,
    id bigint NOT NULL,
    aggregate_type text,
    aggregate_id text,
    hot_events bigint NOT NULL,
    archived_events bigint NOT NULL,
    first_position numeric,
    first_in_tx_order integer,
    last_position numeric,
    last_in_tx_order integer,
    idempotency_keys bigint NOT NULL,
    unique_constraints bigint NOT NULL,
    failed_events bigint NOT NULL,
    projections_rebuilt text[] NOT NULL,
    actor text NOT NULL,
    db_user text DEFAULT CURRENT_USER NOT NULL,
    removed_at timestamp with time zone DEFAULT now() NOT NULL,
    reason text NOT NULL
);


--
-- Name: removals_id_seq; Type: SEQUENCE; Schema: eventstore; Owner: -
--

ALTER TABLE eventstore.removals ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME eventstore.removals_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: roles; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.roles (
    kind text NOT NULL,
    role_name text NOT NULL,
    CONSTRAINT roles_kind_check CHECK ((kind = ANY (ARRAY['writer'::text, 'migrator'::text])))
);


--
-- Name: subject_keys; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.subject_keys (
    instance_id text NOT NULL,
    subject_id text NOT NULL,
    key_version integer NOT NULL,
    master_key_id text NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT subject_keys_key_version_check CHECK ((key_version > 0))
);


--
-- Name: unique_constraints; Type: TABLE; Schema: eventstore; Owner: -
--

CREATE TABLE eventstore.unique_constraints (
    instance_id text NOT NULL,
    unique_type text NOT NULL,
    unique_field text NOT NULL
);


--
-- Name: current_states; Type: TABLE; Schema: projections; Owner: -
--

CREATE TABLE projections.current_states (
    instance_id text NOT NULL,
    projection_name text NOT NULL,
    "position" numeric NOT NULL,
    in_tx_order integer NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint NOT NULL,
    updated_at timestamp with time zone NOT NULL
);


--
-- Name: failed_events; Type: TABLE; Schema: projections; Owner: -
--

CREATE TABLE projections.failed_events (
    instance_id text NOT NULL,
    projection_name text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint NOT NULL,
    "position" numeric NOT NULL,
    in_tx_order integer NOT NULL,
    failure_count integer NOT NULL,
    error text NOT NULL,
    last_failed_at timestamp with time zone NOT NULL,
    skipped_by_operator boolean DEFAULT false NOT NULL,
    parked boolean DEFAULT false NOT NULL
);


--
-- Name: registry; Type: TABLE; Schema: projections; Owner: -
--

CREATE TABLE projections.registry (
    projection_name text NOT NULL,
    reads jsonb NOT NULL,
    has_side_effects boolean NOT NULL,
    registered_at timestamp with time zone NOT NULL,
    consumer_name text,
    stall_after_ms bigint
);


--
-- Name: requests; Type: TABLE; Schema: projections; Owner: -
--

CREATE TABLE projections.requests (
    instance_id text NOT NULL,
    id bigint NOT NULL,
    projection_name text NOT NULL,
    kind text NOT NULL,
    aggregate_type text,
    aggregate_id text,
    sequence bigint,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT requests_kind_check CHECK ((kind = ANY (ARRAY['rebuild'::text, 'retry'::text, 'skip'::text])))
);


--
-- Name: requests_id_seq; Type: SEQUENCE; Schema: projections; Owner: -
--

CREATE SEQUENCE projections.requests_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: requests_id_seq; Type: SEQUENCE OWNED BY; Schema: projections; Owner: -
--

ALTER SEQUENCE projections.requests_id_seq OWNED BY projections.requests.id;


--
-- Name: runtimes; Type: TABLE; Schema: projections; Owner: -
--

CREATE TABLE projections.runtimes (
    runtime_id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    projections text[] NOT NULL,
    started_at timestamp with time zone NOT NULL,
    last_seen_at timestamp with time zone NOT NULL
);


--
-- Name: versions; Type: TABLE; Schema: projections; Owner: -
--

CREATE TABLE projections.versions (
    projection_name text NOT NULL,
    version integer NOT NULL,
    pair_name text NOT NULL,
    state text NOT NULL,
    tables text[] DEFAULT '{}'::text[] NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    switched_at timestamp with time zone,
    retired_at timestamp with time zone,
    CONSTRAINT versions_state_check CHECK ((state = ANY (ARRAY['building'::text, 'live'::text, 'retired'::text, 'dropped'::text]))),
    CONSTRAINT versions_version_check CHECK ((version >= 0))
);


--
-- Name: _sqlx_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public._sqlx_migrations (
    version bigint NOT NULL,
    description text NOT NULL,
    installed_on timestamp with time zone DEFAULT now() NOT NULL,
    success boolean NOT NULL,
    checksum bytea NOT NULL,
    execution_time bigint NOT NULL
);


--
-- Name: requests id; Type: DEFAULT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.requests ALTER COLUMN id SET DEFAULT nextval('projections.requests_id_seq'::regclass);


--
-- Name: objects objects_pkey; Type: CONSTRAINT; Schema: cache; Owner: -
--

ALTER TABLE ONLY cache.objects
    ADD CONSTRAINT objects_pkey PRIMARY KEY (cache_name, id);


--
-- Name: string_keys string_keys_pkey; Type: CONSTRAINT; Schema: cache; Owner: -
--

ALTER TABLE ONLY cache.string_keys
    ADD CONSTRAINT string_keys_pkey PRIMARY KEY (cache_name, index_name, index_key);


--
-- Name: applied_functions applied_functions_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.applied_functions
    ADD CONSTRAINT applied_functions_pkey PRIMARY KEY (file);


--
-- Name: archive_runs archive_runs_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.archive_runs
    ADD CONSTRAINT archive_runs_pkey PRIMARY KEY (instance_id, id);


--
-- Name: archived_events archived_events_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.archived_events
    ADD CONSTRAINT archived_events_pkey PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence);


--
-- Name: erased_subjects erased_subjects_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.erased_subjects
    ADD CONSTRAINT erased_subjects_pkey PRIMARY KEY (instance_id, subject_id);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence);


--
-- Name: idempotency_keys idempotency_keys_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (instance_id, key);


--
-- Name: mirror_progress mirror_progress_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.mirror_progress
    ADD CONSTRAINT mirror_progress_pkey PRIMARY KEY (source, instances);


--
-- Name: moved_instances moved_instances_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.moved_instances
    ADD CONSTRAINT moved_instances_pkey PRIMARY KEY (instance_id);


--
-- Name: removals removals_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.removals
    ADD CONSTRAINT removals_pkey PRIMARY KEY (instance_id, id);


--
-- Name: roles roles_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.roles
    ADD CONSTRAINT roles_pkey PRIMARY KEY (kind);


--
-- Name: subject_keys subject_keys_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.subject_keys
    ADD CONSTRAINT subject_keys_pkey PRIMARY KEY (instance_id, subject_id, key_version);


--
-- Name: unique_constraints unique_constraints_pkey; Type: CONSTRAINT; Schema: eventstore; Owner: -
--

ALTER TABLE ONLY eventstore.unique_constraints
    ADD CONSTRAINT unique_constraints_pkey PRIMARY KEY (instance_id, unique_type, unique_field);


--
-- Name: current_states current_states_pkey; Type: CONSTRAINT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.current_states
    ADD CONSTRAINT current_states_pkey PRIMARY KEY (instance_id, projection_name);


--
-- Name: failed_events failed_events_pkey; Type: CONSTRAINT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.failed_events
    ADD CONSTRAINT failed_events_pkey PRIMARY KEY (instance_id, projection_name, aggregate_type, aggregate_id, sequence);


--
-- Name: registry registry_pkey; Type: CONSTRAINT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.registry
    ADD CONSTRAINT registry_pkey PRIMARY KEY (projection_name);


--
-- Name: requests requests_pkey; Type: CONSTRAINT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.requests
    ADD CONSTRAINT requests_pkey PRIMARY KEY (instance_id, id);


--
-- Name: runtimes runtimes_pkey; Type: CONSTRAINT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.runtimes
    ADD CONSTRAINT runtimes_pkey PRIMARY KEY (runtime_id);


--
-- Name: versions versions_pair_name_key; Type: CONSTRAINT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.versions
    ADD CONSTRAINT versions_pair_name_key UNIQUE (pair_name);


--
-- Name: versions versions_pkey; Type: CONSTRAINT; Schema: projections; Owner: -
--

ALTER TABLE ONLY projections.versions
    ADD CONSTRAINT versions_pkey PRIMARY KEY (projection_name, version);


--
-- Name: _sqlx_migrations _sqlx_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public._sqlx_migrations
    ADD CONSTRAINT _sqlx_migrations_pkey PRIMARY KEY (version);


--
-- Name: string_keys_object; Type: INDEX; Schema: cache; Owner: -
--

CREATE INDEX string_keys_object ON ONLY cache.string_keys USING btree (cache_name, object_id);


--
-- Name: archived_events_instance_position; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX archived_events_instance_position ON eventstore.archived_events USING btree (instance_id, "position", in_tx_order);


--
-- Name: events_aggregate_type_position; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX events_aggregate_type_position ON eventstore.events USING btree (instance_id, aggregate_type, "position", in_tx_order);


--
-- Name: events_correlation; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX events_correlation ON eventstore.events USING btree (instance_id, ((metadata ->> 'correlation_id'::text)), "position", in_tx_order) WHERE (metadata IS NOT NULL);


--
-- Name: events_exclusion; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX events_exclusion ON eventstore.events USING btree (instance_id, aggregate_type, event_type, aggregate_id);


--
-- Name: events_instance_position; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX events_instance_position ON eventstore.events USING btree (instance_id, "position", in_tx_order);


--
-- Name: events_position; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX events_position ON eventstore.events USING btree ("position", in_tx_order);


--
-- Name: events_projection; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX events_projection ON eventstore.events USING btree (instance_id, aggregate_type, event_type, "position", in_tx_order);


--
-- Name: subject_keys_master_key; Type: INDEX; Schema: eventstore; Owner: -
--

CREATE INDEX subject_keys_master_key ON eventstore.subject_keys USING btree (master_key_id);


--
-- Name: failed_events_by_projection; Type: INDEX; Schema: projections; Owner: -
--

CREATE INDEX failed_events_by_projection ON projections.failed_events USING btree (projection_name);


--
-- Name: versions_one_live; Type: INDEX; Schema: projections; Owner: -
--

CREATE UNIQUE INDEX versions_one_live ON projections.versions USING btree (projection_name) WHERE (state = 'live'::text);


--
-- Name: archived_events archived_events_append_only; Type: TRIGGER; Schema: eventstore; Owner: -
--

CREATE TRIGGER archived_events_append_only BEFORE DELETE OR UPDATE ON eventstore.archived_events FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_event_change();


--
-- Name: archived_events archived_events_no_truncate; Type: TRIGGER; Schema: eventstore; Owner: -
--

CREATE TRIGGER archived_events_no_truncate BEFORE TRUNCATE ON eventstore.archived_events FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_event_change();


--
-- Name: events events_append_only; Type: TRIGGER; Schema: eventstore; Owner: -
--

CREATE TRIGGER events_append_only BEFORE DELETE OR UPDATE ON eventstore.events FOR EACH ROW EXECUTE FUNCTION eventstore.refuse_event_change();


--
-- Name: events events_no_truncate; Type: TRIGGER; Schema: eventstore; Owner: -
--

CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON eventstore.events FOR EACH STATEMENT EXECUTE FUNCTION eventstore.refuse_event_change();


--
-- Name: SCHEMA cache; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA cache TO strata_writer;
GRANT ALL ON SCHEMA cache TO strata_migrator;


--
-- Name: SCHEMA eventstore; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA eventstore TO strata_writer;
GRANT ALL ON SCHEMA eventstore TO strata_migrator;


--
-- Name: SCHEMA projections; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA projections TO strata_writer;
GRANT ALL ON SCHEMA projections TO strata_migrator;


--
-- Name: FUNCTION append_events(p_push integer[], p_instance text[], p_aggregate_type text[], p_aggregate_id text[], p_event_type text[], p_revision integer[], p_creator text[], p_owner text[], p_payload text[], p_metadata text[], p_from integer, p_to integer, p_position numeric, p_now timestamp with time zone); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.append_events(p_push integer[], p_instance text[], p_aggregate_type text[], p_aggregate_id text[], p_event_type text[], p_revision integer[], p_creator text[], p_owner text[], p_payload text[], p_metadata text[], p_from integer, p_to integer, p_position numeric, p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION archive_batch(p_instance text, p_run_id bigint); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.archive_batch(p_instance text, p_run_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.archive_batch(p_instance text, p_run_id bigint) TO strata_migrator;


--
-- Name: FUNCTION archive_candidates(p_instance text, p_types text[], p_closing text[], p_horizon timestamp with time zone, p_after_type text, p_after_id text, p_limit integer); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.archive_candidates(p_instance text, p_types text[], p_closing text[], p_horizon timestamp with time zone, p_after_type text, p_after_id text, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.archive_candidates(p_instance text, p_types text[], p_closing text[], p_horizon timestamp with time zone, p_after_type text, p_after_id text, p_limit integer) TO strata_migrator;


--
-- Name: FUNCTION begin_push(); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.begin_push() FROM PUBLIC;


--
-- Name: FUNCTION create_subject_key(p_instance text, p_subject text, p_version integer, p_master_key_id text, p_wrapped bytea); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.create_subject_key(p_instance text, p_subject text, p_version integer, p_master_key_id text, p_wrapped bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.create_subject_key(p_instance text, p_subject text, p_version integer, p_master_key_id text, p_wrapped bytea) TO strata_writer;


--
-- Name: FUNCTION enter_instances(p_instances text[]); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.enter_instances(p_instances text[]) FROM PUBLIC;


--
-- Name: FUNCTION erase_subject(p_instance text, p_subject text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.erase_subject(p_instance text, p_subject text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.erase_subject(p_instance text, p_subject text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text) TO strata_writer;


--
-- Name: FUNCTION grant_roles(); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.grant_roles() FROM PUBLIC;


--
-- Name: FUNCTION hard_delete(p_instance text, p_aggregate_type text, p_aggregate_id text, p_actor text, p_reason text, p_rebuild boolean, p_release_unique_types text[], p_release_unique_values text[]); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.hard_delete(p_instance text, p_aggregate_type text, p_aggregate_id text, p_actor text, p_reason text, p_rebuild boolean, p_release_unique_types text[], p_release_unique_values text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.hard_delete(p_instance text, p_aggregate_type text, p_aggregate_id text, p_actor text, p_reason text, p_rebuild boolean, p_release_unique_types text[], p_release_unique_values text[]) TO strata_migrator;


--
-- Name: FUNCTION push(p_push integer[], p_instance text[], p_aggregate_type text[], p_aggregate_id text[], p_event_type text[], p_revision integer[], p_creator text[], p_owner text[], p_payload text[], p_expected bigint[], p_metadata text[], u_push integer[], u_op text[], u_instance text[], u_type text[], u_value text[], k_push integer[], k_instance text[], k_key text[], k_fingerprint text[], p_key_retention interval); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.push(p_push integer[], p_instance text[], p_aggregate_type text[], p_aggregate_id text[], p_event_type text[], p_revision integer[], p_creator text[], p_owner text[], p_payload text[], p_expected bigint[], p_metadata text[], u_push integer[], u_op text[], u_instance text[], u_type text[], u_value text[], k_push integer[], k_instance text[], k_key text[], k_fingerprint text[], p_key_retention interval) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.push(p_push integer[], p_instance text[], p_aggregate_type text[], p_aggregate_id text[], p_event_type text[], p_revision integer[], p_creator text[], p_owner text[], p_payload text[], p_expected bigint[], p_metadata text[], u_push integer[], u_op text[], u_instance text[], u_type text[], u_value text[], k_push integer[], k_instance text[], k_key text[], k_fingerprint text[], p_key_retention interval) TO strata_writer;


--
-- Name: FUNCTION push_one(p_instance text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.push_one(p_instance text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.push_one(p_instance text, p_aggregate_type text, p_aggregate_id text, p_event_type text, p_revision integer, p_creator text, p_owner text, p_payload text, p_metadata text) TO strata_writer;


--
-- Name: FUNCTION record_archive_batch(p_instance text, p_run_id bigint, p_last_type text, p_last_id text, p_selected integer, p_batch_size integer, p_aggregates bigint, p_events bigint, p_checksum numeric); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.record_archive_batch(p_instance text, p_run_id bigint, p_last_type text, p_last_id text, p_selected integer, p_batch_size integer, p_aggregates bigint, p_events bigint, p_checksum numeric) FROM PUBLIC;


--
-- Name: FUNCTION record_idempotency_key(p_instance text, p_key text, p_fingerprint text, p_position numeric, p_push_of_command integer[], p_push integer, p_now timestamp with time zone); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.record_idempotency_key(p_instance text, p_key text, p_fingerprint text, p_position numeric, p_push_of_command integer[], p_push integer, p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION recorded_push(p_instance text, p_key text, p_key_retention interval); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.recorded_push(p_instance text, p_key text, p_key_retention interval) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.recorded_push(p_instance text, p_key text, p_key_retention interval) TO strata_writer;


--
-- Name: FUNCTION remove_instance(p_instance_id text); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.remove_instance(p_instance_id text) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.remove_instance(p_instance_id text) TO strata_migrator;


--
-- Name: FUNCTION restore_batch(p_instance text, p_run_id bigint); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.restore_batch(p_instance text, p_run_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.restore_batch(p_instance text, p_run_id bigint) TO strata_migrator;


--
-- Name: FUNCTION rewrap_subject_key(p_instance text, p_subject text, p_version integer, p_old_master_key_id text, p_old_wrapped bytea, p_new_master_key_id text, p_new_wrapped bytea); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.rewrap_subject_key(p_instance text, p_subject text, p_version integer, p_old_master_key_id text, p_old_wrapped bytea, p_new_master_key_id text, p_new_wrapped bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION eventstore.rewrap_subject_key(p_instance text, p_subject text, p_version integer, p_old_master_key_id text, p_old_wrapped bytea, p_new_master_key_id text, p_new_wrapped bytea) TO strata_writer;


--
-- Name: FUNCTION set_up_roles(p_writer text, p_migrator text); Type: ACL; Schema: eventstore; Owner: -
--

REVOKE ALL ON FUNCTION eventstore.set_up_roles(p_writer text, p_migrator text) FROM PUBLIC;


--
-- Name: FUNCTION reading(p_instance text, p_aggregate_types text[]); Type: ACL; Schema: projections; Owner: -
--

REVOKE ALL ON FUNCTION projections.reading(p_instance text, p_aggregate_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION projections.reading(p_instance text, p_aggregate_types text[]) TO strata_migrator;


--
-- Name: SEQUENCE object_ids; Type: ACL; Schema: cache; Owner: -
--

GRANT USAGE ON SEQUENCE cache.object_ids TO PUBLIC;
GRANT ALL ON SEQUENCE cache.object_ids TO strata_migrator;


--
-- Name: TABLE objects; Type: ACL; Schema: cache; Owner: -
--

GRANT SELECT,INSERT,DELETE,TRUNCATE,UPDATE ON TABLE cache.objects TO strata_writer;
GRANT ALL ON TABLE cache.objects TO strata_migrator;


--
-- Name: TABLE string_keys; Type: ACL; Schema: cache; Owner: -
--

GRANT SELECT,INSERT,DELETE,TRUNCATE,UPDATE ON TABLE cache.string_keys TO strata_writer;
GRANT ALL ON TABLE cache.string_keys TO strata_migrator;


--
-- Name: TABLE applied_functions; Type: ACL; Schema: eventstore; Owner: -
--

GRANT ALL ON TABLE eventstore.applied_functions TO strata_migrator;


--
-- Name: TABLE archive_runs; Type: ACL; Schema: eventstore; Owner: -
--

GRANT ALL ON TABLE eventstore.archive_runs TO strata_migrator;


--
-- Name: TABLE archived_events; Type: ACL; Schema: eventstore; Owner: -
--

GRANT SELECT ON TABLE eventstore.archived_events TO strata_writer;
GRANT ALL ON TABLE eventstore.archived_events TO strata_migrator;


--
-- Name: TABLE erased_subjects; Type: ACL; Schema: eventstore; Owner: -
--

GRANT SELECT ON TABLE eventstore.erased_subjects TO strata_writer;
GRANT ALL ON TABLE eventstore.erased_subjects TO strata_migrator;


--
-- Name: TABLE events; Type: ACL; Schema: eventstore; Owner: -
--

GRANT SELECT ON TABLE eventstore.events TO strata_writer;
GRANT ALL ON TABLE eventstore.events TO strata_migrator;


--
-- Name: TABLE idempotency_keys; Type: ACL; Schema: eventstore; Owner: -
--

GRANT ALL ON TABLE eventstore.idempotency_keys TO strata_migrator;


--
-- Name: TABLE mirror_progress; Type: ACL; Schema: eventstore; Owner: -
--

GRANT ALL ON TABLE eventstore.mirror_progress TO strata_migrator;


--
-- Name: TABLE moved_instances; Type: ACL; Schema: eventstore; Owner: -
--

GRANT ALL ON TABLE eventstore.moved_instances TO strata_migrator;


--
-- Name: TABLE removals; Type: ACL; Schema: eventstore; Owner: -
--

GRANT ALL ON TABLE eventstore.removals TO strata_migrator;


--
-- Name: TABLE roles; Type: ACL; Schema: eventstore; Owner: -
--

GRANT ALL ON TABLE eventstore.roles TO strata_migrator;


--
-- Name: TABLE subject_keys; Type: ACL; Schema: eventstore; Owner: -
--

GRANT SELECT ON TABLE eventstore.subject_keys TO strata_writer;
GRANT ALL ON TABLE eventstore.subject_keys TO strata_migrator;


--
-- Name: TABLE unique_constraints; Type: ACL; Schema: eventstore; Owner: -
--

GRANT SELECT ON TABLE eventstore.unique_constraints TO strata_writer;
GRANT ALL ON TABLE eventstore.unique_constraints TO strata_migrator;


--
-- Name: TABLE current_states; Type: ACL; Schema: projections; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE projections.current_states TO strata_writer;
GRANT ALL ON TABLE projections.current_states TO strata_migrator;


--
-- Name: TABLE failed_events; Type: ACL; Schema: projections; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE projections.failed_events TO strata_writer;
GRANT ALL ON TABLE projections.failed_events TO strata_migrator;


--
-- Name: TABLE registry; Type: ACL; Schema: projections; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE projections.registry TO strata_writer;
GRANT ALL ON TABLE projections.registry TO strata_migrator;


--
-- Name: TABLE requests; Type: ACL; Schema: projections; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE projections.requests TO strata_writer;
GRANT ALL ON TABLE projections.requests TO strata_migrator;


--
-- Name: SEQUENCE requests_id_seq; Type: ACL; Schema: projections; Owner: -
--

GRANT USAGE ON SEQUENCE projections.requests_id_seq TO strata_writer;
GRANT ALL ON SEQUENCE projections.requests_id_seq TO strata_migrator;


--
-- Name: TABLE runtimes; Type: ACL; Schema: projections; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE projections.runtimes TO strata_writer;
GRANT ALL ON TABLE projections.runtimes TO strata_migrator;


--
-- Name: TABLE versions; Type: ACL; Schema: projections; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE projections.versions TO strata_writer;
GRANT ALL ON TABLE projections.versions TO strata_migrator;


--
-- PostgreSQL database dump complete
--



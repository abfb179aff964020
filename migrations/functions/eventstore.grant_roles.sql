-- Gives the roles named in eventstore.roles exactly the rights they need in this database, and
-- takes back what the writer must not have. `migrate` calls it after every run, so tables and
-- functions added later reach the roles too; with no roles named it does nothing.
--
-- The writer (the application) reads events and pushes them only through eventstore.push and
-- eventstore.push_one (and finds a keyed push's outcome through eventstore.recorded_push); it
-- creates, rewraps and erases personal-data keys only through their functions; it cannot insert, update or delete events or unique constraints itself,
-- remove an instance, or change the schema. It runs projections (their bookkeeping tables) and
-- caches. The migrator applies migrations and administers (remove_instance, hard_delete, the archive,
-- mirror).
CREATE OR REPLACE FUNCTION eventstore.grant_roles() RETURNS VOID
LANGUAGE plpgsql AS $$
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

REVOKE ALL ON FUNCTION eventstore.grant_roles() FROM PUBLIC;

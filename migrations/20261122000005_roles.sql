-- Least privilege: two roles, so the application never runs with rights it does not need.
--
-- strata_writer  pushes and reads events, runs projections and caches. It cannot UPDATE, DELETE or
--                TRUNCATE events, remove an instance, or change the schema. Grant it to the login
--                role your services use: GRANT strata_writer TO my_service;
-- strata_migrator  applies migrations and administers (remove_instance). Grant it to the login role
--                  that runs `cargo xtask migrate` / `strata migrate`.
--
-- Roles are cluster-wide; creating them tolerates another database's migration doing it first.

DO $$
BEGIN
    BEGIN
        CREATE ROLE strata_writer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE strata_migrator NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO strata_writer', current_database());
    EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO strata_migrator', current_database());
END
$$;

-- Events: append and read only. (The append-only triggers refuse changes even to owners; the
-- grants make a compromised application unable to try.)
GRANT USAGE ON SCHEMA eventstore TO strata_writer;
GRANT SELECT, INSERT ON eventstore.events TO strata_writer;
GRANT SELECT, INSERT, DELETE ON eventstore.unique_constraints TO strata_writer;
REVOKE EXECUTE ON FUNCTION eventstore.remove_instance(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore.remove_instance(TEXT) TO strata_migrator;

-- Projection bookkeeping: the runtime moves checkpoints and records failures.
GRANT USAGE ON SCHEMA projections TO strata_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA projections TO strata_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA projections TO strata_writer;

-- The cache schema, when present: the connector creates one partition per cache at start.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cache') THEN
        GRANT USAGE, CREATE ON SCHEMA cache TO strata_writer;
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA cache TO strata_writer;
    END IF;
END
$$;

-- The migrator administers everything Strata owns.
GRANT ALL ON SCHEMA eventstore, projections TO strata_migrator;
GRANT ALL ON ALL TABLES IN SCHEMA eventstore, projections TO strata_migrator;
GRANT ALL ON ALL SEQUENCES IN SCHEMA projections TO strata_migrator;

-- Names the writer and migrator roles of this database, creating each that does not exist yet
-- (NOLOGIN: grant them to the login roles your services use), and grants them their rights
-- (eventstore.grant_roles). A role this database named before under the same kind loses what it was
-- granted here. Returns, per kind, the role and whether this call created it: a role that already
-- existed may be another database's, which the caller should know.
--
-- Nothing calls this implicitly: roles are server-wide, so creating them is an explicit step
-- (`strata roles create`, strata_postgres::set_up_roles).
CREATE OR REPLACE FUNCTION eventstore.set_up_roles(p_writer TEXT, p_migrator TEXT)
RETURNS TABLE (r_kind TEXT, r_role_name TEXT, r_created BOOLEAN)
LANGUAGE plpgsql AS $$
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

REVOKE ALL ON FUNCTION eventstore.set_up_roles(TEXT, TEXT) FROM PUBLIC;

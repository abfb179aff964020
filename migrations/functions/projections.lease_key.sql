-- The advisory-lock key of one (projection, instance): the lease a projection batch holds. The
-- 'projection' prefix keeps it apart from the event store's keys. Inlined by the planner.
CREATE OR REPLACE FUNCTION projections.lease_key(p_projection TEXT, p_instance TEXT)
RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended('projection' || chr(31) || p_projection || chr(31) || p_instance, 0);

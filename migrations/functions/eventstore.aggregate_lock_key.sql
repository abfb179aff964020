-- The advisory-lock key of an aggregate: one definition for every push path, which must take the
-- very same lock for the same aggregate. Inlined by the planner.
CREATE OR REPLACE FUNCTION eventstore.aggregate_lock_key(
    p_instance TEXT, p_aggregate_type TEXT, p_aggregate_id TEXT
) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended(p_instance || chr(31) || p_aggregate_type || chr(31) || p_aggregate_id, 0);

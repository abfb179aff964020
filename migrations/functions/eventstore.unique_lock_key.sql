-- The advisory-lock key of a unique value: pushes that add or remove the same value queue on it.
-- The 'unique' prefix keeps it apart from every aggregate's key. Inlined by the planner.
CREATE OR REPLACE FUNCTION eventstore.unique_lock_key(
    p_instance TEXT, p_unique_type TEXT, p_value TEXT
) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended('unique' || chr(31) || p_instance || chr(31) || p_unique_type || chr(31) || p_value, 0);

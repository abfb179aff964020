-- The advisory-lock key of an idempotency key: pushes with the same key queue on it, so the second
-- sees what the first recorded and never stores a second copy. The 'idempotency' prefix keeps it
-- apart from every aggregate's and unique value's key. Inlined by the planner.
CREATE OR REPLACE FUNCTION eventstore.idempotency_lock_key(p_instance TEXT, p_key TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended('idempotency' || chr(31) || p_instance || chr(31) || p_key, 0);

-- The advisory-lock key of an instance: every push takes it in shared mode for each instance it
-- touches, and a move takes it exclusively to mark the instance moved (eventstore.enter_instances).
-- The 'instance' prefix keeps it apart from every aggregate's, unique value's and idempotency key's
-- key. Inlined by the planner.
CREATE OR REPLACE FUNCTION eventstore.instance_lock_key(p_instance TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended('instance' || chr(31) || p_instance, 0);

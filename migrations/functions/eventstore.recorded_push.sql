-- Where the push recorded under an idempotency key stored its events (position, first in_tx_order,
-- count), when the key is live (younger than p_key_retention). No row: the key is absent or
-- expired, and a push with it would be a first push.
--
-- It lets a caller who retries a whole operation (load, decide, push) find the first attempt's
-- outcome before deciding again: the retry's decision, made on a state that already holds the
-- first attempt's events, would differ, and its push would be refused as a reused key.
--
-- SECURITY DEFINER with a fixed search_path: the application role may not read
-- eventstore.idempotency_keys itself (docs/schema.md, "Roles").
CREATE OR REPLACE FUNCTION eventstore.recorded_push(
    p_instance TEXT, p_key TEXT, p_key_retention INTERVAL
) RETURNS TABLE (r_position NUMERIC, r_first_in_tx_order INTEGER, r_event_count INTEGER)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ik.position, ik.first_in_tx_order, ik.event_count
    FROM eventstore.idempotency_keys ik
    WHERE ik.instance_id = p_instance AND ik.key = p_key
      AND ik.created_at > now() - p_key_retention
$$;

REVOKE ALL ON FUNCTION eventstore.recorded_push(TEXT, TEXT, INTERVAL) FROM PUBLIC;

-- Records the idempotency key of push p_push of a push call (group-local push index into p_push),
-- whose events this transaction has just stored at p_position: where they start (in_tx_order) and
-- how many there are. A row whose key expired is taken over. Called only by eventstore.push, on its
-- per-push path, right after the push's events are appended and inside the same subtransaction,
-- so the key is recorded exactly when the events are.
CREATE OR REPLACE FUNCTION eventstore.record_idempotency_key(
    p_instance TEXT, p_key TEXT, p_fingerprint TEXT, p_position NUMERIC, p_push_of_command INTEGER[],
    p_push INTEGER, p_now TIMESTAMPTZ
) RETURNS VOID
LANGUAGE plpgsql AS $$
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

REVOKE ALL ON FUNCTION eventstore.record_idempotency_key(
    TEXT, TEXT, TEXT, NUMERIC, INTEGER[], INTEGER, TIMESTAMPTZ
) FROM PUBLIC;

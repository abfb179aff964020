-- Records one batch of an archive or restore run on its eventstore.archive_runs row, in the
-- batch's transaction: the cursor moves to the batch's last aggregate (kept when the batch was
-- empty), counts and checksum grow by the batch's, and a batch smaller than the run's batch size
-- finishes the run. Returns whether it did. Shared by eventstore.archive_batch and
-- eventstore.restore_batch, so both keep the manifest one way.
CREATE OR REPLACE FUNCTION eventstore.record_archive_batch(
    p_instance TEXT, p_run_id BIGINT, p_last_type TEXT, p_last_id TEXT, p_selected INTEGER,
    p_batch_size INTEGER, p_aggregates BIGINT, p_events BIGINT, p_checksum NUMERIC
) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
    v_done BOOLEAN := p_selected < p_batch_size;
BEGIN
    UPDATE eventstore.archive_runs r SET
        after_aggregate_type = coalesce(p_last_type, r.after_aggregate_type),
        after_aggregate_id = coalesce(p_last_id, r.after_aggregate_id),
        aggregates = r.aggregates + p_aggregates,
        events = r.events + p_events,
        checksum = r.checksum + coalesce(p_checksum, 0),
        updated_at = now(),
        finished_at = CASE WHEN v_done THEN now() END
    WHERE r.instance_id = p_instance AND r.id = p_run_id;
    RETURN v_done;
END
$$;

REVOKE ALL ON FUNCTION eventstore.record_archive_batch(
    TEXT, BIGINT, TEXT, TEXT, INTEGER, INTEGER, BIGINT, BIGINT, NUMERIC) FROM PUBLIC;

-- A 60-bit digest of one event's every column, for the archive's checksums: summed over a set of
-- events it gives a checksum that does not depend on their order, so batches add up and
-- `strata archive verify` can recompute it from the archive. The instant is taken as epoch
-- seconds and the JSON as jsonb's canonical text, so the digest depends on no session setting.
CREATE OR REPLACE FUNCTION eventstore.event_digest(
    p_instance_id TEXT, p_aggregate_type TEXT, p_aggregate_id TEXT, p_sequence BIGINT,
    p_event_type TEXT, p_revision INTEGER, p_created_at TIMESTAMPTZ, p_creator TEXT, p_owner TEXT,
    p_payload JSONB, p_position NUMERIC, p_in_tx_order INTEGER, p_metadata JSONB
) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ('x' || substr(md5(concat_ws(chr(31),
    p_instance_id, p_aggregate_type, p_aggregate_id, p_sequence::text, p_event_type,
    p_revision::text, extract(epoch FROM p_created_at)::text, p_creator, p_owner,
    coalesce(p_payload::text, '\N'), p_position::text, p_in_tx_order::text,
    coalesce(p_metadata::text, '\N'))), 1, 15))::bit(60)::bigint;

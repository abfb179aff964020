-- The aggregates of an instance an archive run would move, in primary-key order after
-- (p_after_type, p_after_id), at most p_limit of them (all when NULL): those whose latest hot event
-- was created before p_horizon, of the types in p_types (any when empty), and whose latest event
-- has one of the types in p_closing (any when empty). With each: its hot events, their size, and
-- the (position, in_tx_order) of its last one. `strata archive plan` sums them; each batch of
-- `strata archive run` takes the next p_limit.
CREATE OR REPLACE FUNCTION eventstore.archive_candidates(
    p_instance TEXT, p_types TEXT[], p_closing TEXT[], p_horizon TIMESTAMPTZ,
    p_after_type TEXT, p_after_id TEXT, p_limit INTEGER
) RETURNS TABLE (
    aggregate_type TEXT, aggregate_id TEXT, events BIGINT, bytes BIGINT,
    last_position NUMERIC, last_in_tx_order INTEGER
)
LANGUAGE sql STABLE AS $$
    SELECT e.aggregate_type, e.aggregate_id, count(*), sum(pg_column_size(e.*))::bigint,
           (array_agg(e.position ORDER BY e.position DESC, e.in_tx_order DESC))[1],
           (array_agg(e.in_tx_order ORDER BY e.position DESC, e.in_tx_order DESC))[1]
    FROM eventstore.events e
    WHERE e.instance_id = p_instance
      AND (cardinality(p_types) = 0 OR e.aggregate_type = ANY (p_types))
      AND (p_after_type IS NULL OR (e.aggregate_type, e.aggregate_id) > (p_after_type, p_after_id))
    GROUP BY e.aggregate_type, e.aggregate_id
    HAVING max(e.created_at) < p_horizon
       AND (cardinality(p_closing) = 0
            OR (array_agg(e.event_type ORDER BY e.sequence DESC))[1] = ANY (p_closing))
    ORDER BY e.aggregate_type, e.aggregate_id
    LIMIT p_limit
$$;

REVOKE ALL ON FUNCTION eventstore.archive_candidates(
    TEXT, TEXT[], TEXT[], TIMESTAMPTZ, TEXT, TEXT, INTEGER) FROM PUBLIC;

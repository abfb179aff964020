-- The projections that read any of `p_aggregate_types` (every projection when NULL) in one
-- instance, with their checkpoint there (NULL when they have none yet): whose read models a hard
-- delete or an archive run can affect. A projection with a checkpoint but no registration is
-- included whatever it reads, since nothing says what it reads.
CREATE OR REPLACE FUNCTION projections.reading(p_instance TEXT, p_aggregate_types TEXT[])
RETURNS TABLE (projection_name TEXT, "position" NUMERIC, in_tx_order INTEGER)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(cs.projection_name, r.projection_name), cs.position, cs.in_tx_order
    FROM (SELECT s.projection_name, s.position, s.in_tx_order
          FROM projections.current_states s WHERE s.instance_id = p_instance) cs
    FULL JOIN projections.registry r ON r.projection_name = cs.projection_name
    WHERE r.projection_name IS NULL
       OR p_aggregate_types IS NULL
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(r.reads) AS rd(pair)
                  WHERE rd.pair->>0 = ANY (p_aggregate_types))
    ORDER BY 1
$$;

REVOKE ALL ON FUNCTION projections.reading(TEXT, TEXT[]) FROM PUBLIC;

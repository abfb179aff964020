-- The advisory-lock key of a projection's switch lock: every batch of any of its versions holds
-- it shared (with its lease), a switch exclusively, so a switch waits for the batches in flight
-- and none overlaps it. Takes the projection's name (`users`, not a version's `users@v2`).
CREATE OR REPLACE FUNCTION projections.switch_key(p_projection TEXT)
RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended('projection switch' || chr(31) || p_projection, 0);

-- Durable consumers and ordered parking.
--
-- A consumer is registered like a projection (its parts are pairs of their own, named
-- `name#part/parts` when there is more than one), with the consumer it belongs to; a failed
-- event can park its aggregate, whose later events then wait in that pair (docs/consumers.md).

ALTER TABLE projections.failed_events
    ADD COLUMN parked BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE projections.registry
    ADD COLUMN consumer_name TEXT;

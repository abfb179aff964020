-- Exclusion queries (`exclude_aggregates_with`, seed 002) ask, for each candidate event, whether
-- its aggregate has an excluding event. With this index that is one descent per candidate, so a
-- query that returns a page costs the same however long the instance's history: the hashed
-- `NOT IN` the queries used before read every excluded aggregate's event (one heap page each)
-- before returning a row, and at 10 M events ran at 0.38 × its 1 M rate (docs/benchmarks.md,
-- "How cost grows with the data").
--
-- It costs every push one more index entry (about a tenth of the events table's index bytes).
-- On a large existing table, building it blocks writes for as long as it takes; an operator who
-- cannot afford that creates it first with CREATE INDEX CONCURRENTLY under this name, and this
-- migration then finds it.
CREATE INDEX IF NOT EXISTS events_exclusion
    ON eventstore.events (instance_id, aggregate_type, event_type, aggregate_id);

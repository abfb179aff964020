-- Instances moved away from this database (or being moved: 'moving'), so the push functions refuse
-- them here whatever directory the pushing process routes by (docs/scaling.md, "Moving an
-- instance"). A move writes its row under the instance's advisory lock, which every push to the
-- instance takes in shared mode (eventstore.enter_instances): a push either committed before the
-- row, or sees it and writes nothing. Empty unless instances were moved; one row per instance.
CREATE TABLE eventstore.moved_instances (
    instance_id TEXT        PRIMARY KEY,
    -- The name of the shard it went to (strata-shard's directory names it).
    moved_to    TEXT        NOT NULL,
    -- 'moving' from the freeze until the directory switched; 'moved' afterwards. Pushes are
    -- refused in both; a failed move deletes its 'moving' row.
    state       TEXT        NOT NULL CHECK (state IN ('moving', 'moved')),
    moved_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

REVOKE ALL ON eventstore.moved_instances FROM PUBLIC;

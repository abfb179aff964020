-- Versioned projections: each version of a projection that declares its tables has its own
-- tables (`users_v2`), checkpoints (pair name `users@v2`) and a state; readers read the live
-- version through a view under the declared name, which a switch replaces in one transaction
-- (docs/projections.md, "Versions"). Version 0 stands for the projection as it ran before it
-- declared versions.

CREATE TABLE projections.versions (
    projection_name TEXT        NOT NULL,
    version         INTEGER     NOT NULL CHECK (version >= 0),
    -- The name its checkpoints, leases and failed events are kept under.
    pair_name       TEXT        NOT NULL UNIQUE,
    state           TEXT        NOT NULL
                    CHECK (state IN ('building', 'live', 'retired', 'dropped')),
    -- The declared names of its tables (for version 0: those a switch renamed to `name_v0`).
    tables          TEXT[]      NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    switched_at     TIMESTAMPTZ,
    retired_at      TIMESTAMPTZ,
    PRIMARY KEY (projection_name, version)
);

-- At most one live version per projection, whatever a crashed switch left behind.
CREATE UNIQUE INDEX versions_one_live ON projections.versions (projection_name)
    WHERE state = 'live';

-- How long a pair may sit still with events waiting before operator tools call it stalled.
ALTER TABLE projections.registry
    ADD COLUMN stall_after_ms BIGINT;

REVOKE ALL ON projections.versions FROM PUBLIC;

-- Personal data's keys (docs/personal-data.md): one data key per (instance, subject, version),
-- stored wrapped by a master key the service holds, and the subjects that were erased.
--
-- Strata never stores a key in the clear. Erasing a subject deletes its rows here in the same
-- transaction as its erased_subjects row and the event recording the erasure
-- (eventstore.erase_subject), after which no key of the subject can be created again.

CREATE TABLE eventstore.subject_keys (
    instance_id   TEXT        NOT NULL,
    subject_id    TEXT        NOT NULL,
    key_version   INTEGER     NOT NULL CHECK (key_version > 0),
    -- The master key that wrapped it: a rotation rewraps row by row, and readers hold the old and
    -- the new master key meanwhile.
    master_key_id TEXT        NOT NULL,
    -- Nonce and ciphertext of the data key under the master key.
    wrapped_key   BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, subject_id, key_version)
);

-- The next keys a rotation rewraps. Not unique, so the instance_id-first invariant does not apply.
CREATE INDEX subject_keys_master_key ON eventstore.subject_keys (master_key_id);

CREATE TABLE eventstore.erased_subjects (
    instance_id TEXT        NOT NULL,
    subject_id  TEXT        NOT NULL,
    erased_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The event recording the erasure, when this database pushed it (NULL when an erasure recorded
    -- elsewhere was replayed here).
    position    NUMERIC,
    PRIMARY KEY (instance_id, subject_id)
);

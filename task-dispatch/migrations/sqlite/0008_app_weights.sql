-- Load-aware ownership (issue 16): an app's weight (what it reserves of its owner, whether it
-- runs or not; at least 1), and the version of the app set, bumped in the transaction of every
-- app created or deleted, so that a node re-reads the ids and weights only when they changed.
ALTER TABLE apps ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
CREATE TABLE app_set (
    id      INTEGER NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO app_set (id, version) VALUES (1, 0);

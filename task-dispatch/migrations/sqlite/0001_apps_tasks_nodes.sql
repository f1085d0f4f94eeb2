-- task-dispatch schema (SQLite). Same tables, columns and indexes as migrations/mysql.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE apps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    executor    TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    handle      TEXT    NULL,
    version     INTEGER NOT NULL,
    owner_node  TEXT    NULL,
    owner_epoch INTEGER NULL,
    last_error  TEXT    NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX apps_state_id ON apps (state, id);

CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          INTEGER NOT NULL,
    action          TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    claimed_by      TEXT    NULL,
    claim_epoch     INTEGER NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT    NULL,
    idempotency_key TEXT    NULL UNIQUE,
    version         INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER NULL,
    finished_at     INTEGER NULL
);
CREATE INDEX tasks_status_app ON tasks (status, app_id);
CREATE INDEX tasks_app_status_id ON tasks (app_id, status, id);

CREATE TABLE node_epochs (
    node_id       TEXT    PRIMARY KEY NOT NULL,
    epoch         INTEGER NOT NULL,
    registered_at INTEGER NOT NULL
);

-- task-dispatch schema (MySQL / MariaDB). Times are milliseconds since the Unix epoch.

-- Apps and their state machine. `version` grows on every write; every owner write is a
-- conditional update on it. `owner_node`/`owner_epoch` is the app lease: the node session that
-- may act on the app.
CREATE TABLE apps (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    name        VARCHAR(255) NOT NULL,
    executor    VARCHAR(64)  NOT NULL,
    spec        LONGTEXT     NOT NULL,
    state       VARCHAR(16)  NOT NULL,
    handle      LONGTEXT     NULL,
    version     BIGINT       NOT NULL,
    owner_node  VARCHAR(255) NULL,
    owner_epoch BIGINT       NULL,
    last_error  TEXT         NULL,
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    PRIMARY KEY (id),
    -- active apps, read when ownership changes
    KEY apps_state_id (state, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The task queue. Never deleted: a failed task stays FAILED with its error.
CREATE TABLE tasks (
    id              BIGINT       NOT NULL AUTO_INCREMENT,
    app_id          BIGINT       NOT NULL,
    action          VARCHAR(16)  NOT NULL,
    status          VARCHAR(16)  NOT NULL,
    claimed_by      VARCHAR(255) NULL,
    claim_epoch     BIGINT       NULL,
    attempts        BIGINT       NOT NULL DEFAULT 0,
    error           TEXT         NULL,
    idempotency_key VARCHAR(255) NULL,
    version         BIGINT       NOT NULL,
    created_at      BIGINT       NOT NULL,
    updated_at      BIGINT       NOT NULL,
    started_at      BIGINT       NULL,
    finished_at     BIGINT       NULL,
    PRIMARY KEY (id),
    UNIQUE KEY tasks_idempotency_key (idempotency_key),
    -- the poll: which apps have PENDING or RUNNING tasks (reads only those rows)
    KEY tasks_status_app (status, app_id),
    -- an app's next unfinished task, in submission order
    KEY tasks_app_status_id (app_id, status, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per node id: the epoch of its current session. Registering increments it; a node
-- taking over from a dead one increments the dead one's (fencing). Writes carrying an older
-- epoch are refused.
CREATE TABLE node_epochs (
    node_id       VARCHAR(255) NOT NULL,
    epoch         BIGINT       NOT NULL,
    registered_at BIGINT       NOT NULL,
    PRIMARY KEY (node_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

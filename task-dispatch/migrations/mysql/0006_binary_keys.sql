-- Identifiers compare byte for byte (issue 12, finding 12). The tables' default collation,
-- utf8mb4_general_ci, made idempotency key `A` return the task of key `a`, and node ids that differ
-- only in case share one epoch row (fencing one fenced the other). The registry's tables already
-- use binary collation.
ALTER TABLE tasks
    MODIFY idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    MODIFY claimed_by VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
ALTER TABLE apps
    MODIFY owner_node VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
ALTER TABLE node_epochs
    MODIFY node_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;

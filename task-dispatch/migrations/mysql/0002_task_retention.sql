-- Finished tasks are kept for a retention period, then purged by the cluster leader in
-- batches; this index lets it find the oldest without scanning the table.
CREATE INDEX tasks_finished_at ON tasks (finished_at);

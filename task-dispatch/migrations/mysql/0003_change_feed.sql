-- The change feed of the web console (GET /api/v1/events): each node that has listeners reads
-- the apps and tasks changed since a moment; these indexes keep that from scanning the tables.
CREATE INDEX apps_updated_at ON apps (updated_at);
CREATE INDEX tasks_updated_at ON tasks (updated_at);

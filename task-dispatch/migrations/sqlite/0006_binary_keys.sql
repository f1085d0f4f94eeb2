-- Identifiers compare byte for byte (issue 12, finding 12): SQLite's default collation (BINARY)
-- already does, so there is nothing to change; the migration keeps both schemas' histories alike.
SELECT 1;

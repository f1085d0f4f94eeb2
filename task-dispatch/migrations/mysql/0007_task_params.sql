-- Task parameters (issue 13): what the request asked beyond the action, as JSON, given to the
-- executor: `{"savepoint": false}` on a stop, `{"restore": "none" | "<location>"}` on a start of a
-- `flink` app. NULL for none.
ALTER TABLE tasks ADD COLUMN params TEXT NULL;

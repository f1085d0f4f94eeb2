-- Host affinity (issue 12): the host a copy of the app may be running on, set when a host-bound
-- app (a `process` app) is claimed for a start and cleared once it is known to be gone (stopped,
-- or found dead). Only nodes on that host may own the app meanwhile. Compared byte for byte.
ALTER TABLE apps ADD COLUMN host VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

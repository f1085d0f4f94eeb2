-- Host affinity (issue 12): the host a copy of the app may be running on, set when a host-bound
-- app (a `process` app) is claimed for a start and cleared once it is known to be gone (stopped,
-- or found dead). Only nodes on that host may own the app meanwhile.
ALTER TABLE apps ADD COLUMN host TEXT NULL;

-- Facts every node of the cluster shares through the task database (issue 12): the cluster's id
-- (tags the apps' processes) and the key that signs node-to-node calls when `cluster.secret` is not
-- configured. Written once by the first node (insert-if-absent), read by every node.
CREATE TABLE cluster_settings (
    name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    value VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
);

//! registry-zookeeper: filled by a later issue.

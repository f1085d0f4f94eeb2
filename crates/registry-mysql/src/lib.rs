//! registry-mysql: filled by a later issue.

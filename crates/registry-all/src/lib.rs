//! registry-all: filled by a later issue.

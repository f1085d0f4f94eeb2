//! task-dispatch: filled by a later issue.

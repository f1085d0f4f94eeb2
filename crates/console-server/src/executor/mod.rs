//! Executors: how an app really runs.
//!
//! **Architecture invariant:** executors know nothing about the database, the registry or HTTP.
//! They act on the host they run on and report; the dispatcher records.

mod error;
// Used by the process executor, which comes next.
#[cfg_attr(not(test), allow(dead_code))]
mod proc_stat;
mod spec;

pub use error::ExecutorError;
pub use spec::{ProcessSpec, validate_spec};

//! The conformance cases, one module per part of the contract. Each case takes a fresh
//! [`Environment`] and returns a [`CaseResult`](super::CaseResult) whose
//! failure says what was expected. Every case is re-exported here by name, which is how
//! [`registry_conformance_tests!`](crate::registry_conformance_tests) finds it.
//!
//! | module | what |
//! |---|---|
//! | `sessions` | connecting, the connection state, calls after `close` |
//! | `kv` | put, get, exists, delete, children, path rules |
//! | `events` | subscriptions: which events, in which order, until when |
//! | `ephemeral` | ephemeral keys, and what closing, losing or crashing a session does to them and to its locks |
//! | `locks` | exclusion, timeouts, hand-over on release or drop, fencing tokens |
//! | `election` | leader election built on the registry |
//! | `cancellation` | calls dropped half-way: what the `# Cancellation safety` sections promise |
//! | `peers` | the failures that peers' registry plugins shipped: `Removed` without a value, a replacement removed by the old session, no recovery after a long outage, a resumed watch losing or repeating changes |
//!
//! Keys live under `/conformance/<case>` so that a shared namespace would still separate cases.
//! A new case goes into the module of its part of the contract and into the case list of
//! `registry_conformance_tests!` (`testkit/mod.rs`).

mod cancellation;
mod election;
mod ephemeral;
mod events;
mod kv;
mod locks;
mod peers;
mod sessions;

use std::time::Duration;

use super::Environment;

pub use cancellation::*;
pub use election::*;
pub use ephemeral::*;
pub use events::*;
pub use kv::*;
pub use locks::*;
pub use peers::*;
pub use sessions::*;

/// How long an event may take to arrive before the case fails: generous, because this is a
/// liveness check, not a latency measurement.
fn event_wait<E: Environment>(env: &E) -> Duration {
    Duration::from_secs(10) + env.session_timeout()
}

/// How long a crashed or closed session may keep its ephemerals and locks: the session timeout
/// plus slack for the backend to notice and for the event to travel.
fn session_end_wait<E: Environment>(env: &E) -> Duration {
    env.session_timeout() + Duration::from_secs(5)
}

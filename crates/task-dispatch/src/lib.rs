//! task-dispatch: who owns which app, and how a start/stop request reaches its owner.
//!
//! - [`Ring`]: consistent hashing of app ids over the set of live node ids.

mod ring;

pub use ring::{Ring, RingKind, TooManyNodes, UnknownRingKind, hash64, hash64_with_seed};

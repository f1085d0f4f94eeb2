//! The registry SPI: how console nodes find each other, watch each other and coordinate.
//!
//! A [`Registry`] is a client of a coordination service (ZooKeeper, a MySQL database, or the
//! in-process [`StandaloneRegistry`]) offering a key tree with ephemeral keys, change
//! [`Subscription`]s, [`ConnectionState`]s, locks with fencing tokens ([`LockGuard`]) and, built on
//! those, [`election`] of a leader. Backends live in their own crates, announce themselves with a
//! [`RegistryFactory`] through `inventory`, and are built by name with [`create`].
//!
//! Every backend must meet the same semantics; the conformance kit (feature `testkit`,
//! [`testkit`]) states them as executable cases that each backend runs against itself.
//!
//! # Writing a backend
//! 1. Implement [`Registry`] for your client. Use [`Subscribers`] to fan events out and
//!    [`ConnectionStates`] to track and broadcast the connection state.
//! 2. Give your section of the configuration (`registry.<name>`) a serde type that implements
//!    [`BackendConfig`], and submit a [`RegistryFactory`] with `inventory::submit!`.
//! 3. In `tests/conformance.rs`, implement [`testkit::Environment`] and call
//!    [`registry_conformance_tests!`].
//! 4. Add the crate to `registry-all`.
//!
//! The whole path, with compiled excerpts, is [`writing_a_backend`] (`docs/writing-a-backend.md`).

mod connection;
pub mod election;
mod error;
mod event;
mod factory;
mod held;
mod lock;
pub mod path;
mod registry;
mod secret;
mod standalone;
mod subscription;

#[cfg(any(feature = "testkit", doc))]
pub mod testkit;

// The guide's code blocks run as doc tests of this module.
#[doc = include_str!("../../docs/writing-a-backend.md")]
#[cfg(any(doc, doctest))]
pub mod writing_a_backend {}

pub use connection::{ConnectionListener, ConnectionState, ConnectionStates};
pub use election::{LeaderContender, LeaderElection, LeaderInfo, LeaderRetrieval, LeaderSessionId};
pub use error::{RegistryError, Result};
pub use event::{Event, EventKind, Mode};
pub use factory::{
    BackendConfig, RegistryFactory, create, factory, known_types, parse_config, section_defaults,
};
pub use held::{HeldEphemerals, PendingWrite};
pub use lock::{LockGuard, LockRelease};
pub use registry::{Registry, RegistryExt};
pub use secret::Secret;
pub use standalone::{StandaloneRegistry, StandaloneServer};
pub use subscription::{Subscribers, Subscription};

// Re-exported so that backends submit factories with the same `inventory` version.
#[doc(hidden)]
pub use inventory;

//! The etcd backend of the registry SPI: [`EtcdRegistry`], built by name as `"etcd"` through the
//! plugin factory registry. Written from `docs/writing-a-backend.md`.
//!
//! # Mapping
//! - A session is a lease with a TTL of `session_timeout_ms` (whole seconds), refreshed by the
//!   client every third of its TTL. Ephemeral keys are put with the lease, so the server
//!   deletes them when the lease ends: on `close` (revoked), a crash or a partition (expired).
//! - Registry path `/a/b` is the etcd key `<namespace>/keys/a/b`; implied parents are not
//!   stored (`children` lists them, `get` does not see them). `put` is one transaction whose
//!   compares refuse another lease's ephemeral key (`Conflict`), an ephemeral ancestor, and
//!   children under an ephemeral key (`InvalidPath`); `delete` removes the key and its subtree in
//!   one transaction.
//! - A subscription is a prefix watch with `prev_kv`: `Removed` carries the value the key had.
//!   After a broken stream it resumes from the revision after the last one delivered; when that
//!   revision was compacted, it re-reads the prefix and delivers the difference. Nothing is lost
//!   or repeated (after a compaction, values overwritten meanwhile are skipped).
//! - Locks are etcd's `concurrency.Mutex` recipe: a claim key per call under
//!   `<namespace>/locks/<path>/` with the lease; its create revision is the fencing token.
//! - Leader election is the generic one of `registry_api::election`.
//!
//! # Failure behaviour
//! - A refresh that goes unanswered: `Suspended`, calls fail with `NotConnected`; the next
//!   answered refresh: `Reconnected`, nothing lost.
//! - The server says the lease is gone, or no refresh was answered for a whole TTL:
//!   `SessionLost` (lock guards turn invalid), then, as soon as the server answers, the old lease
//!   is revoked (its keys removed, if the server had kept it), a new one granted, the held
//!   ephemeral keys re-created where nobody else owns them now, and `Connected`.
//!
//! # Why `etcd-client`
//! [`etcd-client`](https://docs.rs/etcd-client) is the maintained async (tonic) client of the v3
//! API, with leases, keep-alive streams, watches with `prev_kv` and start revisions, and
//! transactions with lease and range compares. Its build generates code with protoc: see
//! `.cargo/config.toml`.
//!
//! # Modules
//! `client` (the facade), `state` (the state machine and the task that keeps the lease),
//! `watch` (subscriptions), `lock`, `config`, `factory`, `error`.

mod client;
mod config;
mod error;
mod factory;
mod lock;
mod state;
mod watch;

pub use client::EtcdRegistry;
pub use config::EtcdConfig;

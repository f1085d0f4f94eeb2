//! The MySQL/MariaDB backend of the registry SPI (`registry.type: mysql`).
//!
//! A [`MysqlRegistry`] is one client session kept in a database: a row in `<prefix>clients`
//! refreshed by heartbeats, ephemeral keys owned by that row, an event log that subscribers read
//! in commit order, and lock rows with fencing counters. See [`MysqlRegistry`] for the
//! guarantees and `schema.rs` for the tables.
//!
//! # Bird's-eye view
//! - `config`: the `registry.mysql` section; `factory`: the `"mysql"` plugin factory.
//! - `schema`: table names and the embedded, prefix-aware migrations.
//! - `error`: how database failures (classified by error number) become registry errors.
//! - `link`: the client's two connections (calls, heartbeats), their session limits, and how
//!   failures discard them.
//! - `timing`: the durations derived from the configuration.
//! - `clock`: whether the database's clock may judge expiry now (steps hold purges).
//! - `state`: the client's state machine (phases, held ephemeral keys, connection states).
//! - `session`: the background task that drives it: heartbeats, the poll, session rebuilds.
//! - `store`: the key tree and the purge of dead clients.
//! - `write`: how a write transaction runs and commits its events in one packet.
//! - `events`: the change log (poll, purge by age).
//! - `failpoint`: the test-only stop inside a write.
//! - `lock`: locks with fencing tokens.
//! - `registry`: [`MysqlRegistry`], the facade that implements the SPI.
//!
//! Modules depend one way: `registry` → `lock`, `session` → `state` → `link`, `schema`,
//! `timing`, `error`; `session` and `registry` → `store` → `events`.
//!
//! **Architecture invariants:** every change to `data` and its events commit in one transaction
//! whose final packet takes the `sequence` row lock, numbers the events and commits, so the log's
//! sequence order is commit order and no lock shared by all clients is ever held across a round
//! trip to a client; expiry is only ever judged by the database's clock, and only a purge (held
//! while that clock looks stepped) ends a session; a heartbeat never
//! waits for a call.
//!
//! # Idle load
//! At rest a client runs one heartbeat and one poll per heartbeat interval and nothing else
//! (plus one event purge per minute by default). Measure it with
//! `cargo run --release -p registry-mysql --example idle_load`.
//!
//! # Compatibility
//! Written for MariaDB 10.11 and MySQL 8: no `RETURNING`, no sequences, no `LIKE` (subtrees are
//! byte ranges over `VARBINARY` keys, so `_`, `%`, case and trailing spaces are literal);
//! `LOCK IN SHARE MODE`, `GET_LOCK`, `LAST_INSERT_ID(expr)` and `UTC_TIMESTAMP(6)` exist on
//! both. Tested on MariaDB 10.11 only. Timestamps use `UTC_TIMESTAMP(6)` rather than `NOW(6)`
//! so that clients with different session time zones agree.

mod clock;
mod config;
mod error;
mod events;
mod factory;
mod failpoint;
mod link;
mod lock;
mod registry;
mod schema;
mod session;
mod state;
mod store;
mod timing;
mod write;

pub use config::MysqlConfig;
pub use registry::MysqlRegistry;

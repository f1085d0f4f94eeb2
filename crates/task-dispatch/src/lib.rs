//! task-dispatch: who owns which app, and how a start/stop request reaches its owner.
//!
//! - [`Ring`]: consistent hashing of app ids over the set of live node ids.
//! - [`Store`]: apps and tasks in MySQL/MariaDB or SQLite, node sessions and fencing.
//! - [`state`]: the app state machine's one transition table.

mod error;
mod ring;
pub mod state;
mod store;

pub use error::{Entity, Error, Result};
pub use ring::{Ring, RingKind, TooManyNodes, UnknownRingKind, hash64, hash64_with_seed};
pub use state::{Action, AppState, IllegalTransition, Phase};
pub use store::{
    Adoption, App, AppId, Backend, Claim, NewApp, NodeLease, Outcome, Page, Store, Submitted, Task,
    TaskId, TaskStatus,
};

//! task-dispatch: who owns which app, and how a start/stop request reaches its owner.
//!
//! - [`Ring`]: consistent hashing of app ids over the set of live node ids.
//! - [`Assignment`]: bounded-load rendezvous over app weights and node capacities.
//! - [`LiveSet`]: who owns an app, from the live nodes with their hosts and the app's host
//!   ([`AppPlacement`]): an app tied to a host goes only to nodes on that host.
//! - [`Store`]: apps and tasks in MySQL/MariaDB or SQLite, node sessions and fencing.
//! - [`state`]: the app state machine's one transition table.
//! - [`Membership`]: which apps this node owns, from registry events (pure logic).
//! - [`Dispatcher`]: one per node; runs its apps' tasks in order, monitors them, adopts and
//!   releases them as membership changes.
//! - [`AppActions`], [`OwnerNotifier`]: what the console plugs in (executors, wake-up signals).
//! - [`unix_millis`], [`redact_url`]: the timestamps the store records and the database URL as
//!   it may be printed, shared with the console so that both say the same.
//!
//! Architecture invariant: task-dispatch knows nothing about HTTP or ZooKeeper. The console
//! feeds it registry events and signals and maps its [`Error`] to HTTP statuses.
//!
//! # Wiring (what `console-server` does)
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use task_dispatch::{
//!     Action, AppActions, Dispatcher, DispatcherConfig, HostId, LiveNode, NewApp, OwnerNotifier,
//!     Store,
//! };
//!
//! # async fn wire(executors: Arc<dyn AppActions>, nudge: Arc<dyn OwnerNotifier>,
//! #               live_from_registry: Vec<LiveNode>) -> task_dispatch::Result<()> {
//! // `database.url`; migrations run here.
//! let store = Store::connect("mysql://root@127.0.0.1:3306/console").await?;
//! let mut config = DispatcherConfig::new("10.0.0.1:10000"); // node.id
//! config.host = Some(HostId::new("vm1/3d1219c7c4c5404aaa1f6d2a48adfda4")); // this machine
//! config.monitor_interval = Duration::from_millis(1000); // monitor.interval_ms
//! let dispatcher = Dispatcher::start(config, store.clone(), executors, nudge).await?;
//!
//! // Registry subscription on the nodes path: pass the whole live set, each node with the host
//! // it publishes, on every change.
//! dispatcher.nodes_changed(live_from_registry.clone());
//! // Connection state: SessionLost (or Suspended for ~2/3 of the session timeout) ...
//! dispatcher.session_lost();
//! // ... and Connected again, once the node's ephemeral entry is back.
//! dispatcher.session_restored(live_from_registry);
//! // The receiving end of the OwnerNotifier (registry key, HTTP nudge): wake the app.
//! dispatcher.wake(42);
//!
//! // HTTP handlers (any node).
//! let app = store
//!     .create_app(NewApp {
//!         name: "wordcount".into(),
//!         executor: "process".into(),
//!         spec: serde_json::json!({"command": ["sh", "-c", "sleep 1000"]}),
//!         weight: 1,
//!     })
//!     .await?; // POST /api/v1/apps -> 201
//! let submitted = dispatcher.submit(app.id, Action::Start, Some("idempotency-key")).await?;
//! let task = store.get_task(submitted.task.id).await?; // GET /api/v1/tasks/{id}
//! let owner = dispatcher.owner_of(&app); // the `owner` field of GET /api/v1/apps/{id}
//! let ready = dispatcher.is_ready(); // GET /readyz
//! # let _ = (task, owner, ready);
//!
//! // Graceful stop: finish actions in flight, release every lease; then leave the registry.
//! dispatcher.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod actions;
mod affinity;
mod assignment;
mod clock;
mod dispatcher;
mod error;
mod membership;
mod redact;
mod ring;
pub mod state;
mod store;

pub use actions::{ActionContext, ActionError, AppActions, Liveness, OwnerNotifier, PollOnly};
pub use affinity::{AppPlacement, HostId, LiveNode, LiveSet, Unowned};
pub use assignment::{
    Assignment, AssignmentError, AssignmentKind, Change, Epsilon, LoadBound, MAX_CAPACITY,
    NodeLoad, Placement,
};
pub use clock::{unix_millis, unix_millis_at};
pub use dispatcher::{
    DispatchStats, Dispatcher, DispatcherConfig, MAX_SUBMISSION_BATCH, PollStrategy,
};
pub use error::{Entity, Error, Result};
pub use membership::{Membership, OwnershipChange};
pub use redact::redact_url;
pub use ring::{Ring, RingKind, TooManyNodes, UnknownRingKind, hash64, hash64_with_seed};
pub use state::{Action, AppState, IllegalTransition, Phase};
pub use store::{
    Adoption, App, AppFilter, AppId, AppSet, Backend, Claim, ClaimRequest, ClusterSettings,
    FinishRequest, MAX_APP_WEIGHT, MAX_OWNER_BATCH, MAX_PAGE_SIZE, MAX_TASK_PAGE_SIZE, NewApp,
    NodeLease, Outcome, Page, Store, Submission, Submitted, Task, TaskId, TaskStatus,
};

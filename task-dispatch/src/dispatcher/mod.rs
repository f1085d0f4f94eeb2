//! The dispatcher: one per node. It owns the node's share of the apps and runs their tasks.
//!
//! ```text
//!  console ──nodes_changed / session_lost / session_restored / wake──▶ control loop
//!                                                                        │ owns Membership
//!     submit (any node) ── Store::submit_tasks (group commit) ── OwnerNotifier ──▶ owner │ spawns, releases,
//!                                                                        ▼ aborts
//!                                        one worker per owned app: adopt lease → run tasks in
//!                                        id order → monitor (probe) → release when lost
//! ```
//!
//! # Guarantees
//! - Tasks of one app run one at a time, in submission (id) order, on the node holding the
//!   app's lease; tasks of different apps run in parallel, at most
//!   [`DispatcherConfig::max_parallel_actions`] executor calls at once.
//! - A task ends SUCCEEDED or FAILED with its error; none is deleted. A task whose owner died is
//!   claimed again by the next owner once the membership no longer lists the dead node (its
//!   session is fenced first), up to [`DispatcherConfig::max_attempts`] claims.
//! - When ownership moves to a live node, the old owner finishes the action in flight, then
//!   releases the lease; the new owner waits for the release.
//! - On session loss every worker is dropped at once: no executor call, probe or database write
//!   of this node happens after [`Dispatcher::session_lost`] returns control to the runtime.
//! - The control loop (`control.rs`) never waits for the database: a new epoch is registered,
//!   and the apps to track are read, in the background, so a session loss or a shutdown is acted
//!   on at once even while the database is slow or down.
//!
//! # Load at rest
//! One indexed query per `poll_interval` (default 1 s): the ids of apps with PENDING or RUNNING
//! tasks, read through `tasks_status_app`. Monitoring calls the executor's `probe`, not the
//! database, unless an app is found dead. Wakes for apps the node does not own are checked in
//! batches through the same index, one read at a time.

mod batcher;
mod config;
mod control;
mod owner_batches;
mod submitter;
mod worker;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info};

use crate::actions::{AppActions, OwnerNotifier};
use crate::affinity::{AppPlacement, LiveNode, LiveSet, Unowned};
use crate::assignment::{AssignmentKind, Placement};
use crate::error::Result;
use crate::membership::{Membership, owner_in};
use crate::state::Action;
use crate::store::{AppId, NodeLease, Store, Submission, Submitted};

pub use config::{DispatchStats, DispatcherConfig, PollStrategy};
use control::Control;
pub use submitter::MAX_BATCH as MAX_SUBMISSION_BATCH;

/// A handle on a node's dispatcher. Cheap to clone.
///
/// Dropping every handle stops the dispatcher at once, like a crash (nothing is released);
/// call [`Dispatcher::shutdown`] for a graceful stop.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    notifier: Arc<dyn OwnerNotifier>,
    submitter: submitter::Submitter,
}

impl std::fmt::Debug for dyn OwnerNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerNotifier")
    }
}

impl std::fmt::Debug for dyn AppActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppActions")
    }
}

/// What the control loop publishes for the handles and the workers.
#[derive(Debug)]
struct Shared {
    config: DispatcherConfig,
    store: Store,
    /// The owner's statements in batches (group commit of reads, adoptions, claims, outcomes).
    batches: owner_batches::OwnerBatches,
    view: RwLock<View>,
    acting: Mutex<Acting>,
    stats: DispatchStats,
}

/// Which session the node acts with, read by every worker right before an executor call.
///
/// [`Dispatcher::session_lost`] clears it at once, before the control loop hears of the loss
/// and drops the workers, so no call starts in between. `losses` counts those calls: the
/// control loop acts with a new epoch only if it has seen every loss counted, so a
/// registration that completes while a loss is still queued does not revive the node.
#[derive(Debug, Default)]
struct Acting {
    epoch: Option<i64>,
    losses: u64,
}

#[derive(Debug, Clone)]
struct View {
    live: Arc<LiveSet>,
    /// The bounded-load placement, under `dispatch.assignment: bounded`.
    placement: Option<Arc<Placement>>,
    ready: bool,
    owned: usize,
    /// Under `bounded`: the weight the placement gives this node; otherwise the weight of the
    /// known apps it owns.
    owned_weight: u64,
    tracked: usize,
}

impl Shared {
    fn view(&self) -> View {
        // A poisoned lock only means a panic elsewhere; the view itself is always whole.
        self.view
            .read()
            .map_or_else(|e| e.into_inner().clone(), |v| v.clone())
    }

    fn publish(&self, view: View) {
        match self.view.write() {
            Ok(mut guard) => *guard = view,
            Err(e) => *e.into_inner() = view,
        }
    }

    fn acting(&self) -> std::sync::MutexGuard<'_, Acting> {
        // A poisoned lock only means a panic elsewhere; two plain fields are always whole.
        self.acting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `lease` is the session the node acts with now.
    fn is_acting(&self, lease: &NodeLease) -> bool {
        self.acting().epoch == Some(lease.epoch)
    }

    /// The handle's side of a session loss: stop acting now.
    fn session_lost(&self) {
        let mut acting = self.acting();
        acting.epoch = None;
        acting.losses += 1;
    }

    /// The control loop acts with `epoch` from now on, unless a loss it has not seen yet (one
    /// of more than `losses_seen`) is queued; answers whether it does.
    fn act_with(&self, epoch: i64, losses_seen: u64) -> bool {
        let mut acting = self.acting();
        if acting.losses != losses_seen {
            return false;
        }
        acting.epoch = Some(epoch);
        true
    }

    /// The control loop stops acting (fenced, or a loss it handles).
    fn stop_acting(&self) {
        self.acting().epoch = None;
    }
}

/// Requests from the handles.
#[derive(Debug)]
enum Command {
    NodesChanged(Vec<LiveNode>),
    SessionLost,
    SessionRestored(Vec<LiveNode>),
    Wake(AppId),
    Shutdown(oneshot::Sender<()>),
}

impl Dispatcher {
    /// Registers the node (a new fencing epoch) and starts its control loop.
    ///
    /// The node owns nothing until [`Dispatcher::nodes_changed`] gives it a live set that
    /// includes `config.node_id`: call it with the registry's view right after registering.
    ///
    /// # Notable errors
    /// [`crate::Error::InvalidInput`] for a bad config; database errors from the registration.
    pub async fn start(
        config: DispatcherConfig,
        store: Store,
        actions: Arc<dyn AppActions>,
        notifier: Arc<dyn OwnerNotifier>,
    ) -> Result<Self> {
        config.validate()?;
        let lease = store.register_node(&config.node_id).await?;
        info!(node = %lease, "dispatcher registered");
        let membership = match config.assignment {
            AssignmentKind::Rendezvous => Membership::new(config.node_id.clone(), config.ring),
            AssignmentKind::Bounded => {
                Membership::bounded(config.node_id.clone(), config.ring, config.epsilon)
            }
        };
        let shared = Arc::new(Shared {
            view: RwLock::new(View {
                live: membership.live_set().clone(),
                placement: membership.placement().cloned(),
                ready: false,
                owned: 0,
                owned_weight: 0,
                tracked: 0,
            }),
            batches: owner_batches::OwnerBatches::start(
                &store,
                config.max_attempts,
                config.group_commit,
            ),
            config,
            store,
            acting: Mutex::new(Acting {
                epoch: Some(lease.epoch),
                losses: 0,
            }),
            stats: DispatchStats::default(),
        });
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (internal, internal_rx) = mpsc::unbounded_channel();
        let control = Control {
            permits: Arc::new(Semaphore::new(shared.config.max_parallel_actions)),
            shared: shared.clone(),
            actions,
            membership,
            lease: Some(lease),
            restoring: None,
            restore_requests: 0,
            losses_seen: 0,
            registering: false,
            workers: HashMap::new(),
            next_worker: 0,
            internal,
            reading_index: false,
            reading_app_set: false,
            app_set_due: false,
            poll_due: false,
            unchecked_wakes: BTreeSet::new(),
            stopping: false,
            shutdown: Vec::new(),
        };
        tokio::spawn(control.run(commands_rx, internal_rx));
        Ok(Self {
            handle: Arc::new(Handle {
                submitter: submitter::Submitter::start(shared.clone()),
                shared,
                commands,
                notifier,
            }),
        })
    }

    /// The live node set changed. Pass the whole set, this node included: each node's id and
    /// host ([`LiveNode`]; a bare id is a node that does not say its host, which owns no app
    /// tied to a host).
    pub fn nodes_changed<I, N>(&self, live: I)
    where
        I: IntoIterator<Item = N>,
        N: Into<LiveNode>,
    {
        self.send(Command::NodesChanged(
            live.into_iter().map(Into::into).collect(),
        ));
    }

    /// The registry session is lost (or `Suspended` for longer than about two thirds of the
    /// session timeout): every worker is dropped at once and nothing is claimed until
    /// [`Dispatcher::session_restored`].
    pub fn session_lost(&self) {
        // Before the control loop hears of it: no executor call starts from now on.
        self.handle.shared.session_lost();
        self.send(Command::SessionLost);
    }

    /// A new registry session is up: the node registers a new epoch (in the background; it owns
    /// nothing meanwhile, and retries every second while the database refuses), then recomputes
    /// what it owns from `live` and adopts it.
    pub fn session_restored<I, N>(&self, live: I)
    where
        I: IntoIterator<Item = N>,
        N: Into<LiveNode>,
    {
        self.send(Command::SessionRestored(
            live.into_iter().map(Into::into).collect(),
        ));
    }

    /// A signal that app `app_id` has a new task (from the console's end of an
    /// [`OwnerNotifier`]).
    ///
    /// # Notable behaviors
    /// A hint, never trusted: an app this node owns is handed to its worker (which reads its
    /// task queue); any other id is checked against the task index together with the others
    /// woken meanwhile (one read at a time, at most 256 ids waiting, beyond which one full poll
    /// replaces the checks) and tracked only if it has unfinished tasks. Wakes with made-up ids
    /// therefore neither grow the node's memory nor cost a query each.
    pub fn wake(&self, app_id: AppId) {
        self.send(Command::Wake(app_id));
    }

    /// Queues `action` for the app (see [`Store::submit_task`]) and signals its owner: this node
    /// directly, another through the [`OwnerNotifier`] (in the background).
    ///
    /// A start or restart of an app whose copy may run on a host where no node is live in this
    /// node's view is refused ([`Store::submit_task_if_reachable`]): nobody could find that
    /// copy before starting another.
    ///
    /// # Notable errors
    /// Those of [`Store::submit_task`]: NotFound, IllegalTransition, Conflict, InvalidInput;
    /// HostUnreachable.
    pub async fn submit(
        &self,
        app_id: AppId,
        action: Action,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted> {
        self.submit_with(Submission {
            app_id,
            action,
            idempotency_key: idempotency_key.map(str::to_owned),
            params: None,
        })
        .await
    }

    /// [`Dispatcher::submit`] of a [`Submission`], with the parameters the executor gets
    /// ([`Task::params`](crate::Task::params)).
    ///
    /// # Notable errors
    /// Those of [`Dispatcher::submit`]; InvalidInput for parameters that are not a JSON object
    /// of at most 4 KiB.
    pub async fn submit_with(&self, submission: Submission) -> Result<Submitted> {
        let submitted = self.handle.submitter.submit(submission).await?;
        self.signal_owner(&submitted);
        Ok(submitted)
    }

    /// Queues many actions at once (the bulk API): in batches of up to
    /// [`MAX_SUBMISSION_BATCH`], each one transaction, answered in order exactly as
    /// [`Dispatcher::submit`] would answer each alone; the owners of the queued tasks are
    /// woken.
    pub async fn submit_many(&self, submissions: &[Submission]) -> Vec<Result<Submitted>> {
        let mut answers = Vec::with_capacity(submissions.len());
        for batch in submissions.chunks(MAX_SUBMISSION_BATCH) {
            let live = self.handle.shared.view().live;
            let written = self
                .handle
                .shared
                .store
                .submit_tasks(batch, |host| live.has_host(host))
                .await;
            for submitted in written.iter().flatten() {
                self.signal_owner(submitted);
            }
            answers.extend(written);
        }
        answers
    }

    /// Wakes the owner of a newly queued task (this node's worker, or a peer over HTTP).
    fn signal_owner(&self, submitted: &Submitted) {
        let signals = self.handle.shared.config.poll_strategy != PollStrategy::FullTableScan;
        let app_id = submitted.task.app_id;
        if submitted.created && signals {
            match self.owner_of(AppPlacement::new(app_id, submitted.host.clone())) {
                Some(owner) if owner == self.node_id() => self.wake(app_id),
                Some(owner) => {
                    let notifier = self.handle.notifier.clone();
                    let task_id = submitted.task.id;
                    tokio::spawn(async move { notifier.notify(&owner, app_id, task_id).await });
                }
                None => debug!(app_id, "no live node to signal; the owner will poll"),
            }
        }
    }

    /// The node that owns `app` in this node's view of the live set: give the [`App`]
    /// (its host counts) or, for an app not tied to a host, its id.
    ///
    /// [`App`]: crate::App
    #[must_use]
    pub fn owner_of(&self, app: impl Into<AppPlacement>) -> Option<String> {
        self.owner(app).ok()
    }

    /// Like [`Dispatcher::owner_of`], saying why an app has no owner.
    ///
    /// # Notable errors
    /// [`Unowned`]: no live node, or none on the host the app's copy may run on.
    pub fn owner(&self, app: impl Into<AppPlacement>) -> std::result::Result<String, Unowned> {
        let view = self.handle.shared.view();
        owner_in(&view.live, view.placement.as_deref(), &app.into()).map(str::to_owned)
    }

    /// The live nodes with their capacities and the weight each owns, under the `bounded`
    /// assignment (`None` under plain rendezvous): this node's computation, the same on every
    /// node that read the same app set.
    #[must_use]
    pub fn placement(&self) -> Option<Arc<Placement>> {
        self.handle.shared.view().placement
    }

    /// Under `bounded`, the weight the placement gives this node; otherwise the total weight
    /// of the known apps (active ones and those with tasks) this node owns.
    #[must_use]
    pub fn owned_weight(&self) -> u64 {
        self.handle.shared.view().owned_weight
    }

    /// The live node ids in this node's view, sorted.
    #[must_use]
    pub fn live_nodes(&self) -> Vec<String> {
        self.handle.shared.view().live.ids().to_vec()
    }

    /// Has a session and appears in the live set (for `/readyz`).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.handle.shared.view().ready
    }

    /// How many of the known apps (active ones and those with tasks) this node owns.
    #[must_use]
    pub fn owned_apps(&self) -> usize {
        self.handle.shared.view().owned
    }

    /// How many apps this node keeps track of (owned or not): the active apps and those with
    /// unfinished tasks that it has seen.
    #[must_use]
    pub fn tracked_apps(&self) -> usize {
        self.handle.shared.view().tracked
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.handle.shared.config.node_id
    }

    /// The store the dispatcher uses (for the console's reads: apps, tasks).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.handle.shared.store
    }

    /// Counters for metrics.
    #[must_use]
    pub fn stats(&self) -> &DispatchStats {
        &self.handle.shared.stats
    }

    /// Stops gracefully: no new claims; every worker finishes its action in flight and releases
    /// its app's lease, so the next owners take over without waiting for this node's session
    /// to expire. Returns when all are done.
    ///
    /// # Cancellation safety
    /// Dropping the future does not cancel the shutdown, which continues in the background.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        self.send(Command::Shutdown(done));
        // An error means the loop is already gone: nothing left to wait for.
        let _ = wait.await;
    }

    fn send(&self, command: Command) {
        if self.handle.commands.send(command).is_err() {
            debug!("dispatcher already stopped");
        }
    }
}

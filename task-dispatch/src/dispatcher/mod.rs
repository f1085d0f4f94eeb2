//! The dispatcher: one per node. It owns the node's share of the apps and runs their tasks.
//!
//! ```text
//!  console ──nodes_changed / session_lost / session_restored / wake──▶ control loop
//!                                                                        │ owns Membership
//!     submit (any node) ── Store::submit_task ── OwnerNotifier ──▶ owner │ spawns, releases,
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
//!
//! # Load at rest
//! One indexed query per `poll_interval` (default 1 s): the ids of apps with PENDING or RUNNING
//! tasks, read through `tasks_status_app`. Monitoring calls the executor's `probe`, not the
//! database, unless an app is found dead.

mod worker;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::actions::{AppActions, OwnerNotifier};
use crate::error::{Error, Result};
use crate::membership::{Membership, OwnershipChange};
use crate::ring::{Ring, RingKind};
use crate::state::Action;
use crate::store::{AppId, NodeLease, Store, Submitted};

use worker::{AppWorker, WorkerExit};

/// How a dispatcher behaves. [`DispatcherConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's id, as registered in the registry (by default `host:port`).
    pub node_id: String,
    /// The ring implementation (every node of a cluster must use the same).
    pub ring: RingKind,
    /// The fallback poll for tasks whose wake-up signal was lost. Default 1 s.
    pub poll_interval: Duration,
    /// What the poll reads. Default [`PollStrategy::Indexed`].
    pub poll_strategy: PollStrategy,
    /// How often each owned RUNNING app is probed (`monitor.interval_ms`). Default 1 s.
    pub monitor_interval: Duration,
    /// Executor calls (start/stop) running at once on this node. Default 16.
    pub max_parallel_actions: usize,
    /// Claims of one task before it is failed as abandoned (its owners kept dying). Default 3.
    pub max_attempts: i64,
    /// How often a new owner retries taking a lease that a live node still holds. Default
    /// 500 ms (a release also wakes it through the poll).
    pub lease_retry_interval: Duration,
}

impl DispatcherConfig {
    /// The defaults for node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            ring: RingKind::default(),
            poll_interval: Duration::from_secs(1),
            poll_strategy: PollStrategy::Indexed,
            monitor_interval: Duration::from_secs(1),
            max_parallel_actions: 16,
            max_attempts: 3,
            lease_retry_interval: Duration::from_millis(500),
        }
    }

    fn validate(&self) -> Result<()> {
        let zero = [
            ("poll_interval", self.poll_interval),
            ("monitor_interval", self.monitor_interval),
            ("lease_retry_interval", self.lease_retry_interval),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::InvalidInput(format!("{name} must be above zero")));
        }
        if self.max_parallel_actions == 0 || self.max_attempts < 1 {
            return Err(Error::InvalidInput(
                "max_parallel_actions and max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What the dispatcher's poll reads to find apps with work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollStrategy {
    /// Only the PENDING and RUNNING rows, through the status index.
    #[default]
    Indexed,
    /// The whole task table, every column, filtered in memory: what the StreamPark design did
    /// every 50 ms on every node. No wake-ups either, not even of a local owner: a task is found
    /// by the scan alone, as there. Kept only as the baseline of the cluster benchmark; never
    /// use it in production.
    FullTableScan,
}

/// Counters for `/metrics` (monotonic since start, except the in-flight gauge).
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Executor calls running now (a gauge).
    pub actions_in_flight: AtomicU64,
    /// Tasks this node finished SUCCEEDED.
    pub tasks_succeeded: AtomicU64,
    /// Tasks this node finished FAILED (executor errors, refusals, abandoned).
    pub tasks_failed: AtomicU64,
    /// Fallback polls run.
    pub polls: AtomicU64,
    /// Reads of one app's task queue by its worker: one per task run plus one to find the
    /// queue empty after a wake. Monitoring a running app reads none.
    pub task_queue_reads: AtomicU64,
    /// App leases taken.
    pub adoptions: AtomicU64,
    /// Apps found dead by a probe and marked FAILED.
    pub apps_found_dead: AtomicU64,
}

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
    view: RwLock<View>,
    stats: DispatchStats,
}

#[derive(Debug, Clone)]
struct View {
    ring: Arc<Ring>,
    lease: Option<NodeLease>,
    ready: bool,
    owned: usize,
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
}

/// Requests from the handles.
#[derive(Debug)]
enum Command {
    NodesChanged(BTreeSet<String>),
    SessionLost,
    SessionRestored(BTreeSet<String>),
    Wake(Option<AppId>),
    Shutdown(oneshot::Sender<()>),
}

/// Reports to the control loop from its own tasks.
#[derive(Debug)]
enum Internal {
    WorkerExited {
        app_id: AppId,
        worker: u64,
        exit: WorkerExit,
    },
    RetryRegister,
    Read(Read),
}

/// Results of the control loop's background reads.
#[derive(Debug)]
enum Read {
    Active(Result<Vec<AppId>>),
    Unfinished(Result<Vec<AppId>>),
}

impl Dispatcher {
    /// Registers the node (a new fencing epoch) and starts its control loop.
    ///
    /// The node owns nothing until [`Dispatcher::nodes_changed`] gives it a live set that
    /// includes `config.node_id`: call it with the registry's view right after registering.
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for a bad config; database errors from the registration.
    pub async fn start(
        config: DispatcherConfig,
        store: Store,
        actions: Arc<dyn AppActions>,
        notifier: Arc<dyn OwnerNotifier>,
    ) -> Result<Self> {
        config.validate()?;
        let lease = store.register_node(&config.node_id).await?;
        info!(node = %lease, "dispatcher registered");
        let membership = Membership::new(config.node_id.clone(), config.ring);
        let shared = Arc::new(Shared {
            view: RwLock::new(View {
                ring: membership.ring().clone(),
                lease: Some(lease.clone()),
                ready: false,
                owned: 0,
            }),
            config,
            store,
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
            retry_register: None,
            workers: HashMap::new(),
            next_worker: 0,
            internal,
            polling: false,
            stopping: false,
            shutdown: Vec::new(),
        };
        tokio::spawn(control.run(commands_rx, internal_rx));
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                commands,
                notifier,
            }),
        })
    }

    /// The live node set changed. Pass the whole set (node ids), this node included.
    pub fn nodes_changed<I, S>(&self, live: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.send(Command::NodesChanged(
            live.into_iter().map(Into::into).collect(),
        ));
    }

    /// The registry session is lost (or `Suspended` for longer than about two thirds of the
    /// session timeout): every worker is dropped at once and nothing is claimed until
    /// [`Dispatcher::session_restored`].
    pub fn session_lost(&self) {
        self.send(Command::SessionLost);
    }

    /// A new registry session is up: the node registers a new epoch, then recomputes what it
    /// owns from `live` and adopts it.
    pub fn session_restored<I, S>(&self, live: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.send(Command::SessionRestored(
            live.into_iter().map(Into::into).collect(),
        ));
    }

    /// A signal that app `app_id` has a new task (from the console's end of an
    /// [`OwnerNotifier`]). Ignored unless this node owns the app.
    pub fn wake(&self, app_id: AppId) {
        self.send(Command::Wake(Some(app_id)));
    }

    /// Polls for tasks now instead of at the next fallback poll.
    pub fn wake_all(&self) {
        self.send(Command::Wake(None));
    }

    /// Queues `action` for the app (see [`Store::submit_task`]) and signals its owner: this node
    /// directly, another through the [`OwnerNotifier`] (in the background).
    ///
    /// # Notable errors
    /// Those of [`Store::submit_task`]: NotFound, IllegalTransition, Conflict, InvalidInput.
    pub async fn submit(
        &self,
        app_id: AppId,
        action: Action,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted> {
        let submitted = self
            .handle
            .shared
            .store
            .submit_task(app_id, action, idempotency_key)
            .await?;
        let signals = self.handle.shared.config.poll_strategy != PollStrategy::FullTableScan;
        if submitted.created && signals {
            match self.owner_of(app_id) {
                Some(owner) if owner == self.node_id() => self.wake(app_id),
                Some(owner) => {
                    let notifier = self.handle.notifier.clone();
                    let task_id = submitted.task.id;
                    tokio::spawn(async move { notifier.notify(&owner, app_id, task_id).await });
                }
                None => debug!(app_id, "no live node to signal; the owner will poll"),
            }
        }
        Ok(submitted)
    }

    /// The node that owns `app_id` in this node's view of the live set.
    #[must_use]
    pub fn owner_of(&self, app_id: AppId) -> Option<String> {
        self.handle
            .shared
            .view()
            .ring
            .owner_of_app(app_id)
            .map(str::to_owned)
    }

    /// The live node ids in this node's view, sorted.
    #[must_use]
    pub fn live_nodes(&self) -> Vec<String> {
        self.handle.shared.view().ring.nodes().to_vec()
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

    /// The node's current session (None while the session is lost).
    #[must_use]
    pub fn lease(&self) -> Option<NodeLease> {
        self.handle.shared.view().lease
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

/// The control loop's state: membership, the workers, the session.
struct Control {
    shared: Arc<Shared>,
    actions: Arc<dyn AppActions>,
    permits: Arc<Semaphore>,
    membership: Membership,
    lease: Option<NodeLease>,
    /// Set while a new epoch could not be registered yet: the live set to restore with.
    retry_register: Option<Vec<String>>,
    workers: HashMap<AppId, WorkerHandle>,
    next_worker: u64,
    internal: mpsc::UnboundedSender<Internal>,
    /// A poll is in flight.
    polling: bool,
    /// Shutting down; these callers wait for the last worker to release.
    stopping: bool,
    shutdown: Vec<oneshot::Sender<()>>,
}

struct WorkerHandle {
    id: u64,
    wake: Arc<Notify>,
    release: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Control {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut poll = tokio::time::interval(self.shared.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => {
                        // Every handle is gone: stop at once, like a crash.
                        self.abort_all();
                        return;
                    }
                },
                Some(report) = internal.recv() => self.on_internal(report).await,
                _ = poll.tick(), if self.lease.is_some() && !self.stopping => self.poll(),
            }
            if self.stopping && self.workers.is_empty() {
                for done in self.shutdown.drain(..) {
                    let _ = done.send(());
                }
                info!(node = %self.shared.config.node_id, "dispatcher stopped");
                return;
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        if self.stopping {
            if let Command::Shutdown(done) = command {
                // Already stopping: this caller waits for the same end.
                self.shutdown.push(done);
            }
            return;
        }
        match command {
            Command::NodesChanged(live) => {
                if let Some(pending) = self.retry_register.as_mut() {
                    // Re-registering: remember the newest view for when it succeeds.
                    *pending = live.iter().cloned().collect();
                }
                match self.membership.nodes_changed(live) {
                    Ok(change) => self.apply(change),
                    Err(e) => warn!(error = %e, "membership change ignored"),
                }
                self.refresh_known_apps();
            }
            Command::SessionLost => {
                warn!(node = %self.shared.config.node_id, "registry session lost: dropping every app");
                self.retry_register = None;
                self.lose_session();
            }
            Command::SessionRestored(live) => {
                let live: Vec<String> = live.into_iter().collect();
                self.restore_session(live).await;
            }
            Command::Wake(Some(app_id)) => self.wake_app(app_id),
            Command::Wake(None) => self.poll(),
            Command::Shutdown(done) => {
                info!(node = %self.shared.config.node_id, "dispatcher stopping: releasing every app");
                self.stopping = true;
                self.shutdown.push(done);
                for worker in self.workers.values() {
                    let _ = worker.release.send(true);
                }
            }
        }
        self.publish();
    }

    async fn on_internal(&mut self, report: Internal) {
        match report {
            Internal::WorkerExited {
                app_id,
                worker,
                exit,
            } => {
                if self.workers.get(&app_id).is_none_or(|w| w.id != worker) {
                    // A worker already replaced or aborted (its session is gone): stale news.
                    return;
                }
                self.workers.remove(&app_id);
                match exit {
                    WorkerExit::Released => {
                        // Regained while it was releasing: start over.
                        if self.membership.owns(app_id) && !self.stopping {
                            self.spawn_worker(app_id);
                        }
                    }
                    WorkerExit::Gone => self.membership.forget(app_id),
                    WorkerExit::Fenced => self.on_fenced().await,
                }
            }
            Internal::RetryRegister => {
                if let Some(live) = self.retry_register.take() {
                    self.restore_session(live).await;
                }
            }
            Internal::Read(read) => self.on_read(read),
        }
        self.publish();
    }

    /// Another node declared this node dead (or the node re-registered elsewhere): this
    /// session's writes are refused. Drop everything and come back with a new epoch.
    async fn on_fenced(&mut self) {
        if self.lease.is_none() || self.stopping {
            return;
        }
        warn!(node = %self.shared.config.node_id, "session fenced: re-registering");
        let live = self.membership.live().to_vec();
        self.lose_session();
        self.restore_session(live).await;
    }

    fn lose_session(&mut self) {
        self.membership.session_lost();
        self.lease = None;
        self.abort_all();
    }

    async fn restore_session(&mut self, live: Vec<String>) {
        self.abort_all();
        self.retry_register = None;
        match self
            .shared
            .store
            .register_node(&self.shared.config.node_id)
            .await
        {
            Ok(lease) => {
                info!(node = %lease, "session restored with a new epoch");
                self.lease = Some(lease);
                match self.membership.session_restored(live) {
                    Ok(change) => self.apply(change),
                    Err(e) => warn!(error = %e, "membership change ignored"),
                }
                self.refresh_known_apps();
            }
            Err(e) => {
                // Without a current epoch nothing may be written: own nothing until it works.
                warn!(error = %e, "cannot register a new epoch; retrying in 1 s");
                self.lease = None;
                self.membership.session_lost();
                self.retry_register = Some(live);
                let internal = self.internal.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = internal.send(Internal::RetryRegister);
                });
            }
        }
    }

    /// Reads, in the background, the apps this node must know about: active ones (they are
    /// monitored by their owner) and those with unfinished tasks (the poll).
    ///
    /// The control loop never waits for the database itself, so a session loss is acted on
    /// at once even while the database is slow or down.
    fn refresh_known_apps(&mut self) {
        if self.lease.is_none() {
            return;
        }
        let (store, internal) = (self.shared.store.clone(), self.internal.clone());
        tokio::spawn(async move {
            let _ = internal.send(Internal::Read(Read::Active(store.active_app_ids().await)));
        });
        self.poll();
    }

    /// The fallback poll (and the reaction to `wake_all`): apps with PENDING or RUNNING tasks.
    /// At most one runs at a time.
    fn poll(&mut self) {
        if self.lease.is_none() || self.polling {
            return;
        }
        self.polling = true;
        self.shared.stats.polls.fetch_add(1, Ordering::Relaxed);
        let (store, internal) = (self.shared.store.clone(), self.internal.clone());
        let strategy = self.shared.config.poll_strategy;
        tokio::spawn(async move {
            let ids = match strategy {
                PollStrategy::Indexed => store.apps_with_unfinished_tasks().await,
                PollStrategy::FullTableScan => {
                    store.apps_with_unfinished_tasks_by_full_scan().await
                }
            };
            let _ = internal.send(Internal::Read(Read::Unfinished(ids)));
        });
    }

    fn on_read(&mut self, read: Read) {
        match read {
            Read::Active(Ok(ids)) => {
                let change = self.membership.track(ids);
                self.apply(change);
            }
            Read::Unfinished(Ok(ids)) => {
                self.polling = false;
                let change = self.membership.track(ids.iter().copied());
                self.apply(change);
                for app_id in ids {
                    self.wake_app(app_id);
                }
            }
            Read::Active(Err(e)) => warn!(error = %e, "cannot list active apps"),
            Read::Unfinished(Err(e)) => {
                self.polling = false;
                warn!(error = %e, "poll failed");
            }
        }
    }

    fn wake_app(&mut self, app_id: AppId) {
        if self.lease.is_none() {
            return;
        }
        let change = self.membership.track([app_id]);
        self.apply(change);
        if !self.membership.owns(app_id) {
            return;
        }
        if !self.workers.contains_key(&app_id) {
            self.spawn_worker(app_id);
        }
        if let Some(worker) = self.workers.get(&app_id) {
            worker.wake.notify_one();
        }
    }

    fn apply(&mut self, change: OwnershipChange) {
        if change.is_empty() {
            return;
        }
        // Workers decide whether a lease holder is alive from the published view: it must
        // show the membership that made them owners before they start.
        self.publish();
        debug!(
            gained = change.gained.len(),
            lost = change.lost.len(),
            "ownership changed"
        );
        for app_id in change.lost {
            if let Some(worker) = self.workers.get(&app_id) {
                // Finish the action in flight, then release the lease.
                let _ = worker.release.send(true);
            }
        }
        if self.stopping {
            return;
        }
        for app_id in change.gained {
            match self.workers.get(&app_id) {
                // Still releasing from an earlier loss: keep it instead.
                Some(worker) => {
                    let _ = worker.release.send(false);
                }
                None => self.spawn_worker(app_id),
            }
        }
    }

    fn spawn_worker(&mut self, app_id: AppId) {
        let Some(lease) = self.lease.clone() else {
            return;
        };
        self.next_worker += 1;
        let id = self.next_worker;
        let wake = Arc::new(Notify::new());
        let (release, release_rx) = watch::channel(false);
        let worker = AppWorker {
            app_id,
            lease,
            shared: self.shared.clone(),
            actions: self.actions.clone(),
            permits: self.permits.clone(),
            wake: wake.clone(),
            release: release_rx,
        };
        let internal = self.internal.clone();
        let task = tokio::spawn(async move {
            let exit = worker.run().await;
            let _ = internal.send(Internal::WorkerExited {
                app_id,
                worker: id,
                exit,
            });
        });
        self.workers.insert(
            app_id,
            WorkerHandle {
                id,
                wake,
                release,
                task,
            },
        );
    }

    /// Drops every worker now: in-flight executor calls are cancelled, nothing is written.
    fn abort_all(&mut self) {
        for (_, worker) in self.workers.drain() {
            worker.task.abort();
        }
    }

    fn publish(&self) {
        self.shared.publish(View {
            ring: self.membership.ring().clone(),
            lease: self.lease.clone(),
            ready: self.lease.is_some() && self.membership.is_ready(),
            owned: self.membership.owned().len(),
        });
    }
}

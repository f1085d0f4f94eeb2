//! The control loop: one task per node that owns the membership, the session and the workers.
//!
//! It never waits for the database. Registering a new epoch, listing the apps to track and the
//! fallback poll run in tasks of their own and report back as [`Internal`] messages, so a
//! session loss, a membership change or a shutdown is acted on at once even while the database
//! is slow or down.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::worker::{AppWorker, WorkerExit};
use super::{Command, PollStrategy, Shared, View};
use crate::actions::AppActions;
use crate::affinity::{AppPlacement, LiveNode};
use crate::error::Result;
use crate::membership::{Membership, OwnershipChange};
use crate::store::{AppId, AppSet, NodeLease};

/// How long the loop waits before it tries again to register a new epoch.
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// How many woken apps wait for a check at most. Beyond that they are dropped in favour of
/// one full poll, which finds every app with unfinished tasks anyway: a flood of wakes costs a
/// bounded set and one read at a time.
pub(super) const MAX_UNCHECKED_WAKES: usize = 256;

/// Reports to the control loop from its own tasks.
#[derive(Debug)]
pub(super) enum Internal {
    WorkerExited {
        app_id: AppId,
        worker: u64,
        exit: WorkerExit,
    },
    /// A registration of a new epoch ended; `request` is the restore it was started for.
    Registered {
        request: u64,
        result: Result<NodeLease>,
    },
    RetryRegister,
    Read(Read),
    /// A check of the app set's version ended: the set and its version when it changed.
    AppSet(Result<Option<AppSet>>),
    /// A worker read or wrote its app's host (see `App::host`).
    HostSeen(AppPlacement),
    /// A worker adopted its app, which has this weight.
    WeightSeen {
        app_id: AppId,
        weight: u32,
    },
}

/// Results of the control loop's background reads.
#[derive(Debug)]
pub(super) enum Read {
    Active(Result<Vec<AppPlacement>>),
    /// Apps with unfinished tasks: all of them (a poll) or those among checked wakes.
    Unfinished(Result<Vec<AppPlacement>>),
}

/// The control loop's state: membership, the workers, the session.
pub(super) struct Control {
    pub(super) shared: Arc<Shared>,
    pub(super) actions: Arc<dyn AppActions>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) membership: Membership,
    /// The current session; None while it is lost or a new epoch is being registered.
    pub(super) lease: Option<NodeLease>,
    /// Set while the node waits for a new epoch: the live set to restore with once it has one.
    pub(super) restoring: Option<Vec<LiveNode>>,
    /// Counts the requests to restore the session; a registration serves the one it was started
    /// for.
    pub(super) restore_requests: u64,
    /// How many `Dispatcher::session_lost` calls the loop has handled (see `Acting`).
    pub(super) losses_seen: u64,
    /// A registration is running (at most one at a time).
    pub(super) registering: bool,
    pub(super) workers: HashMap<AppId, WorkerHandle>,
    pub(super) next_worker: u64,
    pub(super) internal: mpsc::UnboundedSender<Internal>,
    /// A read of the task index (a poll or a check of woken apps) is in flight: at most one
    /// runs at a time, whatever arrives meanwhile.
    pub(super) reading_index: bool,
    /// A check (and maybe read) of the app set is in flight: at most one at a time.
    pub(super) reading_app_set: bool,
    /// Another check of the app set is due when the one in flight ends.
    pub(super) app_set_due: bool,
    /// A full poll is due (the timer, a membership change, or more unchecked wakes than
    /// [`MAX_UNCHECKED_WAKES`]); it runs next, before any check of single apps.
    pub(super) poll_due: bool,
    /// Woken apps this node does not own in its view (unknown ids, or apps it believes
    /// another node owns): checked together against the task index by the next read, never one
    /// by one, and tracked only if they have unfinished tasks.
    pub(super) unchecked_wakes: BTreeSet<AppId>,
    /// Shutting down; these callers wait for the last worker to release.
    pub(super) stopping: bool,
    pub(super) shutdown: Vec<oneshot::Sender<()>>,
}

pub(super) struct WorkerHandle {
    id: u64,
    wake: Arc<Notify>,
    release: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Control {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut poll = tokio::time::interval(self.shared.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        // Every handle is gone: stop at once, like a crash.
                        self.abort_all();
                        return;
                    }
                },
                Some(report) = internal.recv() => self.on_internal(report),
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

    fn on_command(&mut self, command: Command) {
        if self.stopping {
            if let Command::Shutdown(done) = command {
                // Already stopping: this caller waits for the same end.
                self.shutdown.push(done);
            }
            return;
        }
        match command {
            Command::NodesChanged(live) => {
                if let Some(pending) = self.restoring.as_mut() {
                    // Waiting for a new epoch: restore with the newest view.
                    pending.clone_from(&live);
                }
                match self.membership.nodes_changed(live) {
                    Ok(change) => self.apply(change),
                    Err(e) => warn!(error = %e, "membership change ignored"),
                }
                self.refresh_known_apps();
            }
            Command::SessionLost => {
                self.losses_seen += 1;
                warn!(node = %self.shared.config.node_id, "registry session lost: dropping every app");
                self.restoring = None;
                self.lose_session();
            }
            Command::SessionRestored(live) => self.restore_session(live),
            Command::Wake(app_id) => self.wake_app(app_id),
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

    fn on_internal(&mut self, report: Internal) {
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
                    WorkerExit::Fenced => self.on_fenced(),
                    // A session loss is queued or being handled: it drops every worker.
                    WorkerExit::Stopped => {}
                }
            }
            Internal::Registered { request, result } => self.on_registered(request, result),
            Internal::RetryRegister => self.register(),
            Internal::Read(read) => self.on_read(read),
            Internal::AppSet(result) => self.on_app_set(result),
            Internal::HostSeen(app) => {
                let change = self.membership.track([app]);
                self.apply(change);
            }
            Internal::WeightSeen { app_id, weight } => {
                self.membership.weight_seen(app_id, weight);
            }
        }
        self.publish();
    }

    /// Another node declared this node dead (or the node re-registered elsewhere): this
    /// session's writes are refused. Drop everything and come back with a new epoch.
    fn on_fenced(&mut self) {
        if self.lease.is_none() || self.stopping {
            return;
        }
        warn!(node = %self.shared.config.node_id, "session fenced: re-registering");
        let live = self.membership.live().to_vec();
        self.lose_session();
        self.restore_session(live);
    }

    fn lose_session(&mut self) {
        self.shared.stop_acting();
        self.membership.session_lost();
        self.lease = None;
        self.abort_all();
    }

    /// Owns nothing until a new epoch is registered (in the background), then takes its share
    /// of `live`.
    fn restore_session(&mut self, live: Vec<LiveNode>) {
        // Without a current epoch nothing may be written.
        self.lose_session();
        self.restoring = Some(live);
        self.restore_requests += 1;
        self.register();
    }

    /// Starts registering a new epoch, unless one is running or nothing waits for it.
    fn register(&mut self) {
        if self.registering || self.restoring.is_none() || self.stopping {
            return;
        }
        self.registering = true;
        let request = self.restore_requests;
        let (store, internal) = (self.shared.store.clone(), self.internal.clone());
        let node_id = self.shared.config.node_id.clone();
        tokio::spawn(async move {
            let result = store.register_node(&node_id).await;
            let _ = internal.send(Internal::Registered { request, result });
        });
    }

    fn on_registered(&mut self, request: u64, result: Result<NodeLease>) {
        self.registering = false;
        let Some(live) = self.restoring.take() else {
            // The session was lost again meanwhile (or the node is stopping): this epoch is
            // never used, and the next registration moves past it.
            return;
        };
        if request != self.restore_requests {
            // Asked to restore again while it ran (the session was lost and came back): an
            // epoch registered for that request, after it, is the one to use.
            self.restoring = Some(live);
            self.register();
            return;
        }
        match result {
            Ok(lease) if !self.shared.act_with(lease.epoch, self.losses_seen) => {
                // The session was lost again and the loss is still queued: it comes next.
                debug!(node = %lease, "new epoch unused: a session loss is queued");
            }
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
                warn!(error = %e, retry = ?REGISTER_RETRY, "cannot register a new epoch; retrying");
                self.restoring = Some(live);
                let internal = self.internal.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(REGISTER_RETRY).await;
                    let _ = internal.send(Internal::RetryRegister);
                });
            }
        }
    }

    /// Reads, in the background, the apps this node must know about: active ones (they are
    /// monitored by their owner) and those with unfinished tasks (the poll).
    fn refresh_known_apps(&mut self) {
        if self.lease.is_none() {
            return;
        }
        let (store, internal) = (self.shared.store.clone(), self.internal.clone());
        tokio::spawn(async move {
            let _ = internal.send(Internal::Read(Read::Active(store.active_apps().await)));
        });
        self.poll();
    }

    /// The fallback poll: apps with PENDING or RUNNING tasks, and the app set's version.
    fn poll(&mut self) {
        self.poll_due = true;
        self.read_index();
        self.refresh_app_set();
    }

    /// Under `bounded`, checks the app set's version and reads every app's weight if it
    /// changed since the last read, in the background; one check at a time (a request
    /// meanwhile runs after it). Plain rendezvous needs no app set: nothing is read.
    fn refresh_app_set(&mut self) {
        if self.lease.is_none() || self.membership.placement().is_none() {
            return;
        }
        if self.reading_app_set {
            self.app_set_due = true;
            return;
        }
        self.reading_app_set = true;
        let seen = self.membership.app_set_version();
        let (store, internal) = (self.shared.store.clone(), self.internal.clone());
        tokio::spawn(async move {
            let result = async {
                if Some(store.app_set_version().await?) == seen {
                    return Ok(None);
                }
                store.app_set().await.map(Some)
            }
            .await;
            let _ = internal.send(Internal::AppSet(result));
        });
    }

    fn on_app_set(&mut self, result: Result<Option<AppSet>>) {
        self.reading_app_set = false;
        match result {
            Ok(Some(set)) => {
                debug!(
                    version = set.version,
                    apps = set.weights.len(),
                    "app set read"
                );
                let change = self.membership.apps_changed(set.version, set.weights);
                self.apply(change);
            }
            Ok(None) => {}
            // The next poll tries again.
            Err(e) => warn!(error = %e, "cannot read the app set"),
        }
        if std::mem::take(&mut self.app_set_due) {
            self.refresh_app_set();
        }
    }

    /// Under `bounded`, an app missing from the app set has no owner until the set is read
    /// again: read it now rather than at the next poll.
    fn place_missing<'a>(&mut self, mut apps: impl Iterator<Item = &'a AppId>) {
        if apps.any(|&app| self.membership.misses(app)) {
            self.refresh_app_set();
        }
    }

    /// Starts the next read of the task index, unless one is in flight: a due poll first,
    /// then a check of the woken apps this node does not own.
    fn read_index(&mut self) {
        if self.lease.is_none() || self.reading_index {
            return;
        }
        let (store, internal) = (self.shared.store.clone(), self.internal.clone());
        if self.poll_due {
            self.poll_due = false;
            self.unchecked_wakes.clear();
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
        } else if !self.unchecked_wakes.is_empty() {
            let ids: Vec<AppId> = std::mem::take(&mut self.unchecked_wakes)
                .into_iter()
                .collect();
            tokio::spawn(async move {
                let ids = store.apps_with_unfinished_tasks_among(&ids).await;
                let _ = internal.send(Internal::Read(Read::Unfinished(ids)));
            });
        } else {
            return;
        }
        self.reading_index = true;
        self.shared.stats.polls.fetch_add(1, Ordering::Relaxed);
    }

    fn on_read(&mut self, read: Read) {
        match read {
            Read::Active(Ok(ids)) => {
                self.place_missing(ids.iter().map(|app| &app.id));
                let change = self.membership.track(ids);
                self.apply(change);
            }
            Read::Unfinished(Ok(apps)) => {
                self.reading_index = false;
                let ids: Vec<AppId> = apps.iter().map(|app| app.id).collect();
                self.place_missing(ids.iter());
                let change = self.membership.track(apps);
                self.apply(change);
                for app_id in ids {
                    self.signal_worker(app_id);
                }
                self.read_index();
            }
            Read::Active(Err(e)) => warn!(error = %e, "cannot list active apps"),
            Read::Unfinished(Err(e)) => {
                self.reading_index = false;
                warn!(error = %e, "cannot read the apps with unfinished tasks");
                // The poll timer tries again; woken apps wait for it.
            }
        }
    }

    /// A wake-up from a submitter (or any caller of `Dispatcher::wake`). An app this node owns
    /// is handed to its worker at once. Any other id is only a hint: it is checked, with the
    /// others that arrive meanwhile, against the task index, and tracked only if it has
    /// unfinished tasks, so made-up ids cost neither memory nor a query each.
    fn wake_app(&mut self, app_id: AppId) {
        if self.lease.is_none() {
            return;
        }
        if self.membership.owns(app_id) {
            self.signal_worker(app_id);
            return;
        }
        if self.unchecked_wakes.len() < MAX_UNCHECKED_WAKES {
            self.unchecked_wakes.insert(app_id);
        } else {
            debug!(
                limit = MAX_UNCHECKED_WAKES,
                "too many woken apps to check one by one; polling instead"
            );
            self.unchecked_wakes.clear();
            self.poll_due = true;
        }
        self.read_index();
    }

    /// Wakes the worker of an app this node owns (starting it if needed); nothing otherwise.
    fn signal_worker(&mut self, app_id: AppId) {
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
        self.shared
            .stats
            .workers_started
            .fetch_add(1, Ordering::Relaxed);
        let id = self.next_worker;
        let wake = Arc::new(Notify::new());
        let (release, release_rx) = watch::channel(false);
        let worker = AppWorker {
            app_id,
            lease,
            internal: self.internal.clone(),
            host_seen: None,
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
    pub(super) fn abort_all(&mut self) {
        for (_, worker) in self.workers.drain() {
            worker.task.abort();
        }
    }

    fn publish(&self) {
        let placement = self.membership.placement().cloned();
        let owned_weight = match &placement {
            Some(placement) => placement
                .owned_weight(&self.shared.config.node_id)
                .unwrap_or(0),
            None => self.membership.owned_weight(),
        };
        self.shared.publish(View {
            live: self.membership.live_set().clone(),
            placement,
            ready: self.lease.is_some() && self.membership.is_ready(),
            owned: self.membership.owned().len(),
            owned_weight,
            tracked: self.membership.tracked(),
        });
    }
}

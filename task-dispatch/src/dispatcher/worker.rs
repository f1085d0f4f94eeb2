//! One worker per owned app: it holds the app's lease, runs its tasks in order and monitors it.
//!
//! ```text
//! adopt lease ──▶ attach (probe a RUNNING app) ──▶ ┌─ run every unfinished task, oldest first
//!   ▲  (wait while a live node holds it)            └─ idle: wake │ monitor tick │ release
//!   └── a write lost its race (lease moved): read it again            release ──▶ give lease up
//! ```
//!
//! The worker never runs two executor calls at once, so an app's actions and probes are
//! serial by construction; the lease makes that hold across nodes.
//!
//! # Side effects are fenced
//! A task is claimed only once the worker holds one of the node's action permits, so a claimed
//! task never waits. Every executor call with a side effect (a start, a stop, each phase of a
//! restart) directly follows a conditional write that carries the lease and the epoch and must
//! succeed first: the claim for the first phase, the move into the next phase for the others.
//! Nothing awaits between that write and the call except a look at the node's shared "acting"
//! view, which `Dispatcher::session_lost` clears before the control loop gets to drop the
//! workers: a node that has decided to stop acting starts no call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tracing::{debug, info, warn};

use super::Shared;
use super::control::Internal;
use crate::actions::{ActionContext, ActionError, AppActions, Liveness};
use crate::affinity::{AppPlacement, HostId};
use crate::error::{Entity, Error};
use crate::state::{AppState, Phase};
use crate::store::{
    Adoption, App, AppId, Claim, ClaimRequest, FinishRequest, NodeLease, Outcome, Task, TaskStatus,
};

/// Why a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WorkerExit {
    /// It was asked to release the app and did (or never got its lease).
    Released,
    /// The app was deleted.
    Gone,
    /// This node's session epoch is no longer current.
    Fenced,
    /// The node stopped acting (its session was lost): the control loop drops every worker.
    Stopped,
}

/// Why a step stopped short.
#[derive(Debug)]
enum Interrupt {
    /// Leave the worker with this exit.
    Exit(WorkerExit),
    /// Someone else wrote the app or task (the lease moved): read the app again.
    Reread,
    /// The database failed: wait, then go on.
    Retry(Error),
}

impl From<Error> for Interrupt {
    fn from(e: Error) -> Self {
        match e {
            Error::Fenced { .. } => Self::Exit(WorkerExit::Fenced),
            Error::NotFound {
                entity: Entity::App,
                ..
            } => Self::Exit(WorkerExit::Gone),
            Error::Conflict(_) | Error::NotOwner { .. } => Self::Reread,
            other => Self::Retry(other),
        }
    }
}

pub(super) struct AppWorker {
    pub(super) app_id: AppId,
    pub(super) lease: NodeLease,
    /// Where the worker reports its app's host to the control loop.
    pub(super) internal: mpsc::UnboundedSender<Internal>,
    /// The app's host as last reported (`None`: not reported yet).
    pub(super) host_seen: Option<Option<HostId>>,
    pub(super) shared: Arc<Shared>,
    pub(super) actions: Arc<dyn AppActions>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) wake: Arc<Notify>,
    pub(super) release: watch::Receiver<bool>,
}

/// Pauses after database errors: 100 ms doubling to 5 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        now
    }
}

impl AppWorker {
    pub(super) async fn run(mut self) -> WorkerExit {
        let exit = self.serve().await.err().unwrap_or(WorkerExit::Released);
        if exit == WorkerExit::Released {
            // Asked to release: the action in flight is done; hand the lease over (a no-op if
            // this worker never got it).
            if let Err(e) = self
                .shared
                .store
                .release_app(&self.lease, self.app_id)
                .await
            {
                // The next owner takes it anyway once this node is gone or fenced.
                warn!(app_id = self.app_id, error = %e, "cannot release the app's lease");
            }
            debug!(app_id = self.app_id, "released");
        }
        exit
    }

    /// Adopts, then runs tasks and monitors until asked to release (Ok) or forced out (Err).
    async fn serve(&mut self) -> Result<(), WorkerExit> {
        let mut app = self.adopt().await?;
        self.attach(&mut app).await?;
        let period = self.shared.config.monitor_interval;
        let mut monitor = interval_at(Instant::now() + period, period);
        monitor.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut backoff = Backoff::new();
        // Whether the task table may hold work for this app. A monitor tick leaves it false:
        // new tasks arrive with a wake (from the submitter, or from the dispatcher's fallback
        // poll), so probing a thousand apps costs no query at all.
        let mut tasks_may_wait = true;
        loop {
            // Run every unfinished task, oldest first, checking for a release between tasks.
            while tasks_may_wait {
                if self.release_requested() {
                    return Ok(());
                }
                self.shared
                    .stats
                    .task_queue_reads
                    .fetch_add(1, Ordering::Relaxed);
                let step = match self.shared.batches.next_task_and_more(self.app_id).await {
                    Ok((Some(task), more)) => match self.take_permit().await {
                        Some(permit) => {
                            let done = self.execute(&mut app, task, permit).await;
                            // Nothing queued behind it: a task submitted since the read comes
                            // with a wake (stored by `notify_one` if it arrives meanwhile).
                            if done.is_ok() && !more {
                                tasks_may_wait = false;
                            }
                            done
                        }
                        None => return Ok(()),
                    },
                    Ok((None, _)) => {
                        tasks_may_wait = false;
                        Ok(())
                    }
                    Err(e) => Err(Interrupt::from(e)),
                };
                match step {
                    Ok(()) => backoff = Backoff::new(),
                    Err(interrupt) => self.recover(&mut app, interrupt, &mut backoff).await?,
                }
                self.note_host(&app);
            }
            tasks_may_wait = tokio::select! {
                _ = self.wake.notified() => true,
                // Only RUNNING apps are probed; an idle worker of a stopped app sleeps.
                _ = monitor.tick(), if app.state == AppState::Running => {
                    match self.probe(&mut app).await {
                        Ok(()) => {
                            self.note_host(&app);
                            false
                        }
                        Err(interrupt) => {
                            // Re-read or retried: the app may have moved on; look again.
                            self.recover(&mut app, interrupt, &mut backoff).await?;
                            true
                        }
                    }
                }
                _ = self.release.changed() => true,
            };
        }
    }

    async fn recover(
        &mut self,
        app: &mut App,
        interrupt: Interrupt,
        backoff: &mut Backoff,
    ) -> Result<(), WorkerExit> {
        match interrupt {
            Interrupt::Exit(exit) => Err(exit),
            Interrupt::Reread => {
                *app = self.adopt().await?;
                Ok(())
            }
            Interrupt::Retry(e) => {
                let pause = backoff.next();
                warn!(app_id = self.app_id, error = %e, ?pause, "database error; retrying");
                self.pause(pause).await;
                Ok(())
            }
        }
    }

    /// Takes the app's lease, waiting while a live node holds it.
    async fn adopt(&mut self) -> Result<App, WorkerExit> {
        let mut backoff = Backoff::new();
        loop {
            if self.release_requested() {
                return Err(WorkerExit::Released);
            }
            let live = self.shared.view().live;
            let host = self.shared.config.host.as_ref();
            let adoption = self
                .shared
                .batches
                .adopt_app(&self.lease, self.app_id, host, live)
                .await;
            match adoption {
                Ok(Adoption::Adopted(app)) => {
                    self.shared.stats.adoptions.fetch_add(1, Ordering::Relaxed);
                    debug!(app_id = self.app_id, state = %app.state, "adopted");
                    self.note_host(&app);
                    // Fails only once the control loop is gone, and this worker with it.
                    let _ = self.internal.send(Internal::WeightSeen {
                        app_id: self.app_id,
                        weight: app.weight,
                    });
                    return Ok(app);
                }
                Ok(Adoption::Gone) => return Err(WorkerExit::Gone),
                Ok(Adoption::OnOtherHost(pinned)) => {
                    // The control loop learns the host and releases this worker; until then
                    // (or if this node's own host is misconfigured) look again now and then.
                    debug!(app_id = self.app_id, host = %pinned, "the app's copy may run on another host");
                    self.report_host(Some(pinned));
                    self.pause(self.shared.config.lease_retry_interval).await;
                }
                Ok(Adoption::HeldBy(holder)) => {
                    debug!(app_id = self.app_id, %holder, "waiting for the previous owner to release");
                    self.pause(self.shared.config.lease_retry_interval).await;
                }
                Err(Error::Fenced { .. }) => return Err(WorkerExit::Fenced),
                Err(e) => {
                    let pause = backoff.next();
                    warn!(app_id = self.app_id, error = %e, ?pause, "cannot adopt; retrying");
                    self.pause(pause).await;
                }
            }
        }
    }

    /// Adoption attaches, never restarts: a RUNNING app is probed at once, and marked FAILED
    /// if it is dead. A STARTING or STOPPING app has an orphaned task, which runs next.
    async fn attach(&mut self, app: &mut App) -> Result<(), WorkerExit> {
        let mut backoff = Backoff::new();
        loop {
            match self.probe(app).await {
                Ok(()) => return Ok(()),
                Err(interrupt) => self.recover(app, interrupt, &mut backoff).await?,
            }
            if self.release_requested() {
                return Ok(());
            }
        }
    }

    async fn probe(&mut self, app: &mut App) -> Result<(), Interrupt> {
        if app.state != AppState::Running {
            return Ok(());
        }
        match self.actions.probe(app).await {
            Liveness::Alive => Ok(()),
            Liveness::Unknown { reason } => {
                debug!(app_id = app.id, %reason, "probe inconclusive");
                Ok(())
            }
            Liveness::Dead { reason } => {
                let reason = non_empty(reason, "found dead by the monitor");
                *app = self
                    .shared
                    .store
                    .mark_app_dead(&self.lease, app, &reason)
                    .await?;
                self.shared
                    .stats
                    .apps_found_dead
                    .fetch_add(1, Ordering::Relaxed);
                warn!(app_id = app.id, %reason, "app found dead: FAILED");
                Ok(())
            }
        }
    }

    /// Waits for one of the node's action permits, before anything is claimed; `None` when
    /// asked to release meanwhile (nothing was claimed, so nothing waits for this node).
    async fn take_permit(&mut self) -> Option<OwnedSemaphorePermit> {
        loop {
            if self.release_requested() {
                return None;
            }
            tokio::select! {
                // The semaphore is never closed, so acquiring only waits.
                permit = self.permits.clone().acquire_owned() => return permit.ok(),
                _ = self.release.changed() => {}
            }
        }
    }

    /// The host a start of `app` here pins it to: this node's, if the app is tied to its host.
    fn pin(&self, app: &App) -> Option<HostId> {
        self.actions
            .is_host_bound(app)
            .then(|| self.shared.config.host.clone())
            .flatten()
    }

    /// Tells the control loop the app's host if it changed since the last report, so that
    /// ownership follows (a stop that clears it may move the app to a node on another host).
    fn note_host(&mut self, app: &App) {
        if self.host_seen.as_ref() != Some(&app.host) {
            self.report_host(app.host.clone());
        }
    }

    fn report_host(&mut self, host: Option<HostId>) {
        self.host_seen = Some(host.clone());
        let placement = AppPlacement::new(self.app_id, host);
        // Fails only once the control loop is gone, and this worker with it.
        let _ = self.internal.send(Internal::HostSeen(placement));
    }

    /// Whether this worker's session is the one the node acts with now (see the module
    /// comment): checked right before a claim and right before every executor call.
    fn ensure_acting(&self) -> Result<(), Interrupt> {
        if self.shared.is_acting(&self.lease) {
            Ok(())
        } else {
            debug!(
                app_id = self.app_id,
                "the node stopped acting: no executor call"
            );
            Err(Interrupt::Exit(WorkerExit::Stopped))
        }
    }

    /// Claims `task` and runs its phases, recording the outcome, holding `_permit` (one of the
    /// node's `max_parallel_actions`) throughout.
    async fn execute(
        &mut self,
        app: &mut App,
        task: Task,
        _permit: OwnedSemaphorePermit,
    ) -> Result<(), Interrupt> {
        self.ensure_acting()?;
        let pin = self.pin(app);
        // Where a refusal puts the app back (see `Outcome::Refused`).
        let before = app.state;
        let request = ClaimRequest {
            task,
            app: app.clone(),
            pin: pin.clone(),
        };
        let (task, phases) = match self
            .shared
            .batches
            .claim_task_of(&self.lease, request)
            .await?
        {
            Claim::Finished(task) => {
                info!(task_id = task.id, app_id = task.app_id, error = ?task.error, "task refused");
                self.count(task.status);
                *app = self.shared.store.get_app(self.app_id).await?;
                return Ok(());
            }
            Claim::Run {
                task,
                app: claimed,
                phases,
            } => {
                *app = *claimed;
                (task, phases)
            }
        };
        let cx = ActionContext {
            task_id: task.id,
            action: task.action,
            attempt: task.attempts,
            submitted_at: task.created_at,
            params: task.params.clone(),
        };
        debug!(task_id = task.id, app_id = app.id, action = %task.action, attempt = task.attempts, "running");
        for (i, &phase) in phases.iter().enumerate() {
            // The fenced write this call follows: the claim above, or the move into this phase.
            if i > 0 {
                *app = self
                    .persist(|shared, lease| {
                        let (app, pin) = (app.clone(), pin.clone());
                        async move {
                            shared
                                .store
                                .enter_phase(&lease, &app, phase, pin.as_ref())
                                .await
                        }
                    })
                    .await?;
            }
            self.ensure_acting()?;
            let result = self.call(app, phase, &cx).await;
            let last = i + 1 == phases.len();
            let outcome = match result {
                Ok(_) if !last => continue,
                Ok(handle) => Outcome::Succeeded { handle },
                Err(error) if error.is_refusal() && before.is_settled() => Outcome::Refused {
                    error: non_empty(error.message().to_owned(), "the executor refused"),
                    state: before,
                },
                Err(error) => Outcome::Failed {
                    error: non_empty(
                        error.message().to_owned(),
                        "the executor failed without a message",
                    ),
                },
            };
            let (done, written) = self
                .persist(|shared, lease| {
                    let request = FinishRequest {
                        task: task.clone(),
                        app: app.clone(),
                        phase,
                        outcome: outcome.clone(),
                    };
                    async move { shared.batches.finish_task(&lease, request).await }
                })
                .await?;
            *app = written;
            self.count(done.status);
            info!(task_id = done.id, app_id = app.id, status = %done.status, state = %app.state, "task finished");
            break;
        }
        Ok(())
    }

    /// One executor call (the caller holds an action permit).
    async fn call(
        &self,
        app: &App,
        phase: Phase,
        cx: &ActionContext,
    ) -> Result<Option<Value>, ActionError> {
        let _in_flight = InFlight::enter(&self.shared.stats.actions_in_flight);
        match phase {
            Phase::Start => self.actions.start(app, cx).await.map(Some),
            Phase::Stop => self.actions.stop(app, cx).await.map(|()| None),
            Phase::Savepoint => self.actions.savepoint(app, cx).await.map(|()| None),
        }
    }

    /// Writes an outcome after the executor acted: retried through database failures (the
    /// action is done and must not be repeated for want of a write), given up only when the
    /// write can never succeed (the lease moved, the session is fenced).
    async fn persist<T, F, Fut>(&mut self, write: F) -> Result<T, Interrupt>
    where
        F: Fn(Arc<Shared>, NodeLease) -> Fut,
        Fut: std::future::Future<Output = crate::error::Result<T>>,
    {
        let mut backoff = Backoff::new();
        loop {
            match write(self.shared.clone(), self.lease.clone()).await {
                Ok(value) => return Ok(value),
                Err(e) => match Interrupt::from(e) {
                    Interrupt::Retry(e) if e.is_transient() => {
                        let pause = backoff.next();
                        warn!(app_id = self.app_id, error = %e, ?pause, "cannot record an outcome; retrying");
                        tokio::time::sleep(pause).await;
                    }
                    other => return Err(other),
                },
            }
        }
    }

    fn count(&self, status: TaskStatus) {
        let counter = match status {
            TaskStatus::Succeeded => &self.shared.stats.tasks_succeeded,
            TaskStatus::Failed => &self.shared.stats.tasks_failed,
            TaskStatus::Pending | TaskStatus::Running => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits `duration`, or less if woken or asked to release.
    async fn pause(&mut self, duration: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = self.wake.notified() => {}
            _ = self.release.changed() => {}
        }
    }

    /// Asked to release (or the control loop is gone).
    fn release_requested(&self) -> bool {
        *self.release.borrow() || self.release.has_changed().is_err()
    }
}

fn non_empty(message: String, fallback: &str) -> String {
    if message.trim().is_empty() {
        fallback.to_owned()
    } else {
        message
    }
}

/// Counts one executor call in [`DispatchStats::actions_in_flight`] while it lives, also when the
/// call is dropped mid-way (session loss).
///
/// [`DispatchStats::actions_in_flight`]: super::DispatchStats::actions_in_flight
struct InFlight<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicU64) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

//! What the dispatcher asks of the console: executors that act on apps, and a way to nudge the
//! owner of an app.

use async_trait::async_trait;
use serde_json::Value;

use crate::state::Action;
use crate::store::{App, AppId, TaskId};

/// An executor call did not do what it was asked; the message becomes the task's `error` and
/// the app's `last_error`.
///
/// A *failure* ([`ActionError::new`]) makes the app FAILED. A *refusal*
/// ([`ActionError::refused`]) means the executor did nothing and cannot tell what the app is
/// doing (its host is unreachable, Flink does not answer): the task fails, and the app keeps the
/// state it had before the task was claimed, because "could not be observed" is never "failed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    message: String,
    refused: bool,
}

impl ActionError {
    /// A failure with this message: the app becomes FAILED.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            refused: false,
        }
    }

    /// A refusal with this message: nothing was done, the app keeps its state.
    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            refused: true,
        }
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is a refusal (see [`ActionError::refused`]).
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        self.refused
    }
}

/// What a probe found: the answer of [`AppActions::probe`], and of each executor's probe in the
/// console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The app runs.
    Alive,
    /// The app is gone; it becomes FAILED with this reason.
    Dead {
        /// Why, for `last_error` (for example "process 4242 exited").
        reason: String,
    },
    /// The probe could not tell (the executor's backend is unreachable): nothing changes, and
    /// the next probe tries again.
    Unknown {
        /// Why, for the logs.
        reason: String,
    },
}

impl Liveness {
    /// Whether this is [`Liveness::Alive`].
    #[must_use]
    pub fn is_alive(&self) -> bool {
        matches!(self, Self::Alive)
    }
}

/// Which task a call runs for, for the executor's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionContext {
    /// The task.
    pub task_id: TaskId,
    /// The user's action (a restart calls `stop` then `start`).
    pub action: Action,
    /// 1 for the first run, more when a previous owner died while running it.
    pub attempt: i64,
    /// When the task was submitted (milliseconds since the Unix epoch), so the console can
    /// measure how long it waited to start.
    pub submitted_at: i64,
    /// The task's parameters ([`Task::params`](crate::Task::params)), for the executor.
    pub params: Option<serde_json::Value>,
}

/// The console's executors, as the dispatcher uses them. One implementation serves every app;
/// it picks the executor from `app.executor`.
///
/// # Contract
/// - **Starting is safe to repeat.** A start may run again after its owner died mid-way (a
///   re-claimed task, `ActionContext::attempt > 1`) or on a new owner while the app is in fact
///   running. If the app is already alive (`app.handle` records the previous attempt's pid and
///   start time, or job id), `start` adopts it and returns its handle instead of starting a
///   second copy. If a half-started copy is found, it is cleaned up or adopted, never left
///   running beside a new one.
/// - **Stopping is safe to repeat**: stopping an app that is not running succeeds.
/// - The dispatcher never runs two calls for one app at once, and runs calls for different apps
///   in parallel (bounded by `DispatcherConfig::max_parallel_actions`).
/// - `start` and `stop` are called only right after a conditional write that proved the
///   caller's lease on the app and its session epoch current (the task's claim, or the move into
///   the next phase of a restart), and never once the node has stopped acting. That narrows,
///   but cannot close, the window in which a node declared dead still acts: a resource that
///   can deduplicate (a Flink job id, a host-level guard for processes) must, so that a late or
///   repeated start finds the first copy.
///
/// # Cancellation safety
/// A call is dropped mid-way when the node loses its registry session (it must stop acting
/// before others take over). The next owner re-runs the action, so an interrupted call must
/// leave nothing that the repeat rules above cannot handle.
#[async_trait]
pub trait AppActions: Send + Sync + 'static {
    /// Starts the app (or adopts it if it already runs) and returns its handle, which is
    /// stored as `app.handle` (for `process`: pid and start time; for `flink`: the job id).
    async fn start(&self, app: &App, cx: &ActionContext) -> Result<Value, ActionError>;

    /// Stops the app (SIGTERM then SIGKILL, cancel the job, ...). `app.handle` is what `start`
    /// returned, or `None` if it never started.
    async fn stop(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError>;

    /// Takes a savepoint of the running app, which runs on (added, issue 13). Called for a
    /// `savepoint` task, with the app RUNNING; the app stays RUNNING whatever the outcome (a
    /// failure fails the task only). Safe to repeat like `start`: a re-run after the owner died
    /// must find the savepoint the first run triggered rather than take a second one where
    /// the resource can tell (Flink: a trigger id derived from the task).
    ///
    /// Default: a refusal saying that this console's executors take no savepoints.
    async fn savepoint(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError> {
        let _ = cx;
        Err(ActionError::refused(format!(
            "app {} runs on an executor that takes no savepoints",
            app.id
        )))
    }

    /// Whether the app is alive, by its handle. Called every `monitor_interval` for each owned
    /// RUNNING app, and once when a node adopts a RUNNING app.
    async fn probe(&self, app: &App) -> Liveness;

    /// Whether a running copy of `app` is tied to the machine that started it (a `process`
    /// app: only a node on that host can see, probe or signal it). Such an app is pinned to
    /// the host of the node that starts it (`App::host`) until it is known to be gone, and only
    /// nodes on that host own it meanwhile. Default: false (a Flink job, for one, is reached
    /// over the network from any node).
    fn is_host_bound(&self, app: &App) -> bool {
        let _ = app;
        false
    }
}

/// How a submission reaches the owner of an app on another node: the console wires it to a
/// registry key the owner watches, an HTTP nudge, or anything else that ends with the owner
/// calling `Dispatcher::wake(app_id)`.
///
/// # Notable behaviors
/// Best effort: a lost or failed signal only delays the task until the owner's fallback poll
/// (`DispatcherConfig::poll_interval`). A submission on the owner itself does not go through
/// the notifier.
#[async_trait]
pub trait OwnerNotifier: Send + Sync + 'static {
    /// Tells node `owner` that app `app_id` has a new task `task_id`.
    async fn notify(&self, owner: &str, app_id: AppId, task_id: TaskId);
}

/// A notifier that sends nothing: owners find tasks by their fallback poll. For a single
/// standalone node (which never needs it) and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollOnly;

#[async_trait]
impl OwnerNotifier for PollOnly {
    async fn notify(&self, _owner: &str, _app_id: AppId, _task_id: TaskId) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_is_alive_only_for_alive() {
        assert!(Liveness::Alive.is_alive());
        assert!(
            !Liveness::Dead {
                reason: "gone".into()
            }
            .is_alive()
        );
        assert!(
            !Liveness::Unknown {
                reason: "eacces".into()
            }
            .is_alive()
        );
    }
}

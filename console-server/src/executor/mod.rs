//! Executors: how an app really runs. The [`Executor`] trait is the seam between the dispatcher
//! (which decides *that* an app starts, stops or is checked) and the mechanism (an OS process, later
//! a Flink job).
//!
//! - [`ProcessExecutor`] (`process`, the default): an app is a command line started detached in its
//!   own session, so it outlives the console; see [`process`].
//! - A [`Handle`] is what an executor hands back from `start`: JSON that the dispatcher stores in the
//!   app row and passes back to `stop` and `probe`, possibly on another console node (adoption).
//! - [`Liveness`] is the answer of `probe`, with a reason a person can read when the app is dead:
//!   task-dispatch's, which the dispatcher acts on as it is.
//!
//! **Architecture invariant:** executors know nothing about the database, the registry or HTTP.
//! They act on the host they run on and report; the dispatcher records.

mod error;
pub mod flink;
mod noop;
mod proc_stat;
pub mod process;
mod spec;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::ExecutorError;
pub use noop::{NoopExecutor, NoopHandle};
pub use process::{AppLogs, LogPlace, ProcessExecutor, ProcessHandle, read_tail};
pub use spec::{ProcessSpec, validate_spec};
pub use task_dispatch::Liveness;

/// What an executor needs to know about an app: borrowed from the dispatcher's app row.
#[derive(Debug, Clone, Copy)]
pub struct AppRef<'a> {
    /// The app's id (the key of ownership and of the per-app log file).
    pub id: i64,
    /// The app's name, for logs and the app's environment.
    pub name: &'a str,
    /// The executor-specific spec as stored (for `process`, see [`ProcessSpec`]).
    pub spec: &'a serde_json::Value,
}

/// Where to find a started app again: returned by [`Executor::start`], stored by the dispatcher
/// as JSON in the app row, and passed back to [`Executor::stop`] and [`Executor::probe`].
///
/// Serialized with the executor's name as tag, e.g.
/// `{"executor":"process","pid":1234,"start_time_ticks":5678,"boot_id":"…","host":"…","log_path":"…"}`.
///
/// # Notable behaviors
/// A handle comes back from the database, i.e. from outside the process: executors validate it
/// before acting on it (for instance a process handle never names pid 0 or 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Handle {
    /// An OS process started by [`ProcessExecutor`].
    Process(ProcessHandle),
    /// An app of the [`NoopExecutor`] (benchmarks only).
    Noop(NoopHandle),
}

/// Runs apps of one kind. Object-safe: the dispatcher holds `Arc<dyn Executor>` per executor name.
///
/// # The contract with the dispatcher
/// - **Idempotent start.** The dispatcher re-runs a `start` whose outcome it did not record (the
///   owner died mid-action) and passes the last handle it *did* record as `previous`. If `previous`
///   names an app that is still [`Liveness::Alive`], `start` adopts it: it returns that handle and
///   starts nothing. If it is dead, `start` starts a new instance. If its liveness cannot be
///   established (unknown, or a process on another host), `start` fails rather than risk a second
///   running copy.
/// - The dispatcher must record the returned handle before it reports the start as done. A handle
///   that was never recorded (the owner died between `start` returning and the write) cannot be
///   found again by this trait; the dispatcher's task log is what bounds that window.
/// - **Idempotent stop.** Stopping an app that is already dead, or whose handle names a process
///   that no longer exists, is success.
/// - `probe` has no side effects and may be called at any rate (the monitor calls it every
///   `monitor.interval_ms` for every owned active app).
/// - Calls for one app are not made concurrently by the dispatcher (per-app ordering); calls for
///   different apps are.
#[async_trait]
pub trait Executor: Send + Sync + fmt::Debug + 'static {
    /// The executor's name as used in app rows and the HTTP API (`"process"`).
    fn name(&self) -> &'static str;

    /// Checks an app's `spec` for this executor, without side effects. The HTTP layer answers 400
    /// with the error's message when this fails.
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidSpec`], naming the offending field.
    fn validate_spec(&self, spec: &serde_json::Value) -> Result<(), ExecutorError>;

    /// Starts `app`, or adopts the instance that `previous` names if it is still alive (see the
    /// trait's contract).
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidSpec`], [`ExecutorError::Spawn`], [`ExecutorError::LogFile`];
    /// [`ExecutorError::Undetermined`] and [`ExecutorError::ForeignHost`] when `previous` cannot be
    /// shown to be dead.
    ///
    /// # Cancellation safety
    /// Implementations must not leave a started app behind without returning its handle when the
    /// future is dropped (the process executor has no await point after spawning).
    async fn start(
        &self,
        app: &AppRef<'_>,
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError>;

    /// Stops the app that `handle` names, gracefully first and forcibly after the executor's grace
    /// period. Returns once the app is gone. Stopping a dead app is success.
    ///
    /// # Cancellation safety
    /// Dropping the future may leave the app asked to stop but not yet gone; calling `stop` again
    /// is safe and carries on.
    async fn stop(&self, app: &AppRef<'_>, handle: &Handle) -> Result<(), ExecutorError>;

    /// Whether the app that `handle` names is running. Never fails: what cannot be established is
    /// [`Liveness::Unknown`].
    async fn probe(&self, app: &AppRef<'_>, handle: &Handle) -> Liveness;
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static + ?Sized>() {}
    assert_send_sync::<dyn Executor>();
    assert_send_sync::<ExecutorError>();
};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn process_executor_behind_the_trait_object() {
        let dir = tempfile::tempdir().unwrap();
        let executor: Arc<dyn Executor> = Arc::new(ProcessExecutor::new(dir.path()).unwrap());
        assert_eq!(executor.name(), "process");
        assert!(
            executor
                .validate_spec(&json!({"command": ["sh", "-c", "true"]}))
                .is_ok()
        );
        assert!(matches!(
            executor.validate_spec(&json!({"command": "sh"})),
            Err(ExecutorError::InvalidSpec { .. })
        ));
    }
}

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
pub mod flink_job;
#[cfg(test)]
mod kit;
mod noop;
mod proc_stat;
pub mod process;
mod spec;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::ExecutorError;
pub use noop::{NoopExecutor, NoopHandle};
pub use proc_stat::HostIdentity;
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

/// Which task an executor call runs for.
///
/// A task re-run after its owner died mid-way keeps its `id` and has a higher `attempt`: an
/// executor that can deduplicate by task (the `flink` executor derives the job id from the app
/// and the start task) finds the first attempt's result instead of making a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef<'a> {
    /// The task's id.
    pub id: i64,
    /// 1 for the first run, more when a previous owner died while running it.
    pub attempt: i64,
    /// What the request asked beyond the action (a JSON object), if anything: the `flink`
    /// executor reads `savepoint` (stop) and `restore` (start); the others ignore it.
    pub params: Option<&'a serde_json::Value>,
}

#[cfg(test)]
impl TaskRef<'static> {
    /// Task `id`, first attempt, no parameters.
    #[must_use]
    pub const fn first(id: i64) -> Self {
        Self {
            id,
            attempt: 1,
            params: None,
        }
    }
}

/// Where to find a started app again: returned by [`Executor::start`], stored by the dispatcher
/// as JSON in the app row, and passed back to [`Executor::stop`] and [`Executor::probe`].
///
/// Serialized with the executor's name as tag, e.g.
/// `{"executor":"process","pid":1234,"start_time_ticks":5678,"boot_id":"…","host":"…",
/// "app_key":"…","log_path":"…"}`.
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
    /// A job on a Flink session cluster, run by [`flink_job::FlinkExecutor`].
    Flink(flink_job::FlinkHandle),
    /// An app of the [`NoopExecutor`] (benchmarks only).
    Noop(NoopHandle),
    /// An app of the conformance kit's in-memory executors (tests only).
    #[cfg(test)]
    Fake(kit::FakeHandle),
}

/// Runs apps of one kind. Object-safe: the dispatcher holds `Arc<dyn Executor>` per executor name.
///
/// # The contract with the dispatcher
/// The executor conformance kit (`executor/kit/`, one case per rule) is its executable form;
/// every executor runs it.
/// - **Idempotent start.** The dispatcher re-runs a `start` whose outcome it did not record (the
///   owner died mid-action; same [`TaskRef::id`], higher attempt) and passes the last handle it
///   *did* record as `previous`. If `previous` names an app that is still [`Liveness::Alive`],
///   `start` adopts it: it returns a handle of the running app and starts nothing. If it is
///   dead, or there is none, `start` first looks for a copy that no handle recorded, where the
///   resource can tell (the process executor: a host-level guard; Flink: a job id derived from
///   the app and the start task), and adopts it; only then does it start a new instance. If the
///   liveness of `previous` cannot be established (unknown, or on another host), `start`
///   refuses ([`ExecutorError::is_refusal`]) rather than risk a second running copy.
/// - The dispatcher records the returned handle before it reports the start as done; a handle
///   it never recorded is found again by the next start (above).
/// - **Idempotent stop.** Stopping an app that is already dead, or whose handle names a process
///   that no longer exists, is success.
/// - **Refusals.** An error for which [`ExecutorError::is_refusal`] holds means nothing was
///   done and the app may still run: the dispatcher keeps the app's state, never FAILED.
/// - `probe` has no side effects and may be called at any rate (the monitor calls it every
///   `monitor.interval_ms` for every owned active app). What it cannot see is
///   [`Liveness::Unknown`], never [`Liveness::Dead`].
/// - Calls for one app are not made concurrently by the dispatcher (per-app ordering); calls for
///   different apps are. Executors still guard against a second caller where the resource
///   allows (a fenced node may act late): the process executor's start lock.
#[async_trait]
pub trait Executor: Send + Sync + fmt::Debug + 'static {
    /// The executor's name as used in app rows and the HTTP API (`"process"`).
    fn name(&self) -> &'static str;

    /// Whether a running app is tied to the machine that started it, so that only a node on that
    /// machine can see, probe or signal it (`process`: yes; a Flink job: no). The dispatcher then
    /// pins the app to the starting node's host and lets only nodes there own it (host
    /// affinity). Default: false.
    fn is_host_bound(&self) -> bool {
        false
    }

    /// Checks an app's `spec` for this executor, without side effects. The HTTP layer answers 400
    /// with the error's message when this fails.
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidSpec`], naming the offending field.
    fn validate_spec(&self, spec: &serde_json::Value) -> Result<(), ExecutorError>;

    /// Starts `app` for `task`, or adopts the running instance (see the trait's contract).
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidSpec`], [`ExecutorError::Spawn`], [`ExecutorError::LogFile`];
    /// the refusals [`ExecutorError::Undetermined`] and [`ExecutorError::ForeignHost`] when
    /// `previous` cannot be shown to be dead.
    ///
    /// # Cancellation safety
    /// Dropped before the app exists, nothing is left; once it exists, no await point remains
    /// before the handle is returned (the process executor spawns synchronously). An instance
    /// whose handle was lost anyway is found by the next start.
    async fn start(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError>;

    /// Stops the app that `handle` names, gracefully first and forcibly after the executor's grace
    /// period. Returns once the app is gone. Stopping a dead app is success.
    ///
    /// # Cancellation safety
    /// Dropping the future may leave the app asked to stop but not yet gone; calling `stop` again
    /// is safe and carries on.
    async fn stop(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        handle: &Handle,
    ) -> Result<(), ExecutorError>;

    /// Whether this executor takes savepoints of running apps ([`Executor::savepoint`]): the
    /// HTTP layer refuses `POST /api/v1/apps/{id}/savepoint` for apps of an executor that does
    /// not. Default: false.
    fn takes_savepoints(&self) -> bool {
        false
    }

    /// Takes a savepoint of the running app that `handle` names, which runs on, and returns
    /// where it is (added, issue 13: `flink`). Like `start`, safe to repeat for the same task:
    /// a re-run after the owner died finds the savepoint the first run took where the resource
    /// can tell (Flink: the trigger id is derived from the app and the task).
    ///
    /// # Notable errors
    /// Default: [`ExecutorError::Unsupported`], nothing done. The refusal
    /// [`ExecutorError::Undetermined`] for a handle this node cannot act on.
    ///
    /// # Cancellation safety
    /// Dropped mid-way, the savepoint may still complete; the re-run finds it.
    async fn savepoint(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        handle: &Handle,
    ) -> Result<String, ExecutorError> {
        let _ = (app, task, handle);
        Err(ExecutorError::Unsupported {
            executor: self.name(),
            operation: "savepoints",
        })
    }

    /// Whether the app that `handle` names is running. Never fails: what cannot be established is
    /// [`Liveness::Unknown`], never [`Liveness::Dead`]; so is an app this node cannot see (a
    /// process on another host, an unreachable Flink cluster).
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
        let executor: Arc<dyn Executor> =
            Arc::new(ProcessExecutor::new(dir.path(), "test-cluster").unwrap());
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

    #[tokio::test]
    async fn an_executor_without_savepoints_refuses_them_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let executor: Arc<dyn Executor> =
            Arc::new(ProcessExecutor::new(dir.path(), "test-cluster").unwrap());
        assert!(!executor.takes_savepoints());
        let spec = json!({"command": ["sh", "-c", "true"]});
        let app = AppRef {
            id: 1,
            name: "a",
            spec: &spec,
        };
        let handle = Handle::Noop(NoopHandle {
            started_at: 0,
            started_at_us: 0,
        });
        let error = executor
            .savepoint(&app, TaskRef::first(2), &handle)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            ExecutorError::Unsupported {
                executor: "process",
                operation: "savepoints"
            }
        );
        assert_eq!(
            error.to_string(),
            "the process executor does not support savepoints"
        );
        assert!(!error.is_refusal());
    }
}

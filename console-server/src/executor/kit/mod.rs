//! The executor conformance kit: the [`Executor`] contract as executable cases, which every
//! executor runs (`process` now, `flink` when it lands), like the registry backends run
//! `registry_api::testkit`.
//!
//! An executor's tests implement [`Target`] (a fresh executor, an app that runs until stopped,
//! and a way to see the app's copies *without* the executor) and expand one macro in a module
//! named after the executor:
//!
//! ```text
//! mod process_conformance {
//!     crate::executor::kit::executor_conformance_tests!(super::ProcessTarget);
//! }
//! ```
//!
//! which makes one `#[test]` per case in [`cases`], named after the case. A target that needs a
//! service (a Flink session cluster) reads its address from the environment as the integration
//! tests do, and fails (never skips) when the service does not answer.
//!
//! `broken.rs` runs the cases against deliberately broken in-memory executors: each defect makes
//! the case that guards against it fail, so the kit can fail.

mod broken;
pub mod cases;

pub use broken::FakeHandle;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use test_support::wait::poll_until;

use super::{AppRef, Executor, ExecutorError, Handle, Liveness, TaskRef};

/// How the kit reaches an executor.
#[async_trait]
pub trait Target: Sized + Send + Sync + 'static {
    /// A fresh target: an executor of its own, isolated from other cases running at once (the
    /// process target: a cluster id of its own).
    ///
    /// # Notable errors
    /// A message saying what is missing (a service, a tool): the kit never skips.
    async fn create() -> Result<Self, String>;

    /// The executor under test.
    fn executor(&self) -> &dyn Executor;

    /// The spec of an app that runs until it is stopped or killed.
    fn long_running_spec(&self) -> serde_json::Value;

    /// How many copies of `app` run now, seen without the executor (processes carrying the
    /// app's key; jobs that Flink lists for the app).
    async fn copies(&self, app: &AppRef<'_>) -> Result<usize, String>;

    /// Ends every copy of `app` behind the executor's back: a crash, a cancel from Flink's UI.
    async fn kill_behind_the_back(&self, app: &AppRef<'_>) -> Result<(), String>;

    /// `handle` as a node would record it from where this executor cannot see the app: a
    /// process on another host, a job on another Flink cluster.
    fn foreign(&self, handle: &Handle) -> Handle;

    /// A handle of the app whose liveness this executor cannot establish: an unreadable
    /// process, an unreachable Flink cluster.
    fn undeterminable(&self, handle: &Handle) -> Handle;

    /// How long a change may take to show: a death in `probe`, a new job in Flink's list.
    fn settle(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// Removes whatever the target made (kills copies that a failed case left running). Runs
    /// after every case, passed or failed.
    async fn destroy(&self);
}

/// Waits until no copy of `app` runs (as [`Target::copies`] counts them), for at most
/// [`Target::settle`]: what a target's [`Target::kill_behind_the_back`] ends with.
///
/// # Notable errors
/// The last count, or the error counting, when copies remain.
pub async fn until_no_copies<T: Target>(target: &T, app: &AppRef<'_>) -> Result<(), String> {
    poll_until(target.settle(), || async {
        match target.copies(app).await {
            Ok(0) => Ok(()),
            Ok(left) => Err(format!("{left} copies still running")),
            Err(error) => Err(error),
        }
    })
    .await
    .map(drop)
    .map_err(|timed_out| timed_out.last)
}

/// An app of a case: what [`AppRef`] borrows.
#[derive(Debug, Clone)]
pub struct KitApp {
    pub id: i64,
    pub name: String,
    pub spec: serde_json::Value,
}

impl KitApp {
    /// App `id` of `target`, running its long-running spec.
    pub fn new<T: Target>(target: &T, id: i64) -> Self {
        Self {
            id,
            name: format!("kit-app-{id}"),
            spec: target.long_running_spec(),
        }
    }

    pub fn as_ref(&self) -> AppRef<'_> {
        AppRef {
            id: self.id,
            name: &self.name,
            spec: &self.spec,
        }
    }
}

/// Task `id`, first attempt.
pub fn task(id: i64) -> TaskRef<'static> {
    TaskRef::first(id)
}

/// Task `task` run again after its owner died.
pub fn retried(task: TaskRef<'_>) -> TaskRef<'_> {
    TaskRef {
        attempt: task.attempt + 1,
        ..task
    }
}

/// Why a case failed: what was expected and what happened.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The result of one case.
pub type CaseResult = Result<(), Failure>;

/// Fails the case with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> CaseResult {
    if condition {
        Ok(())
    } else {
        Err(Failure(message()))
    }
}

/// Adds what was being done to an error.
pub trait Context<T> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, ExecutorError> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure> {
        self.map_err(|error| Failure(format!("{doing} failed: {error}")))
    }
}

impl<T> Context<T> for Result<T, String> {
    fn context(self, doing: impl fmt::Display) -> Result<T, Failure> {
        self.map_err(|error| Failure(format!("{doing} failed: {error}")))
    }
}

/// Waits up to the target's settle time until `app` has `expected` copies.
pub async fn expect_copies<T: Target>(target: &T, app: &KitApp, expected: usize) -> CaseResult {
    until(
        target,
        &format!("{} has {expected} copies", app.name),
        async || match target.copies(&app.as_ref()).await {
            Ok(copies) if copies == expected => Ok(()),
            Ok(copies) => Err(format!("{copies} copies")),
            Err(error) => Err(error),
        },
    )
    .await
}

/// Waits up to the target's settle time until `probe` of `handle` answers `wanted`.
pub async fn expect_liveness<T: Target>(
    target: &T,
    app: &KitApp,
    handle: &Handle,
    wanted: fn(&Liveness) -> bool,
    what: &str,
) -> CaseResult {
    until(
        target,
        &format!("probe of {} says {what}", app.name),
        async || {
            let liveness = target.executor().probe(&app.as_ref(), handle).await;
            if wanted(&liveness) {
                Ok(())
            } else {
                Err(format!("{liveness:?}"))
            }
        },
    )
    .await
}

async fn until<T: Target, F, Fut>(target: &T, what: &str, probe: F) -> CaseResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    poll_until(target.settle(), probe)
        .await
        .map(drop)
        .map_err(|timed_out| {
            Failure(format!(
                "expected {what} within {:?}; last seen: {}",
                target.settle(),
                timed_out.last
            ))
        })
}

/// Runs one case on a fresh target under a deadline and answers how it went.
pub fn outcome_of<T, F, Fut>(case: F) -> CaseResult
where
    T: Target,
    F: FnOnce(Arc<T>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| Failure(format!("cannot build a Tokio runtime: {error}")))?;
    let outcome = runtime.block_on(async {
        let target = Arc::new(
            T::create()
                .await
                .map_err(|error| Failure(format!("cannot create the target: {error}")))?,
        );
        let deadline = Duration::from_secs(60) + target.settle() * 4;
        let outcome = tokio::time::timeout(deadline, case(Arc::clone(&target)))
            .await
            .unwrap_or_else(|_| {
                Err(Failure(format!(
                    "the case did not finish within {deadline:?}"
                )))
            });
        target.destroy().await;
        outcome
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome
}

/// Runs one case and panics with its failure: what the generated tests call.
pub fn run_case<T, F, Fut>(name: &str, case: F)
where
    T: Target,
    F: FnOnce(Arc<T>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    if let Err(failure) = outcome_of(case) {
        panic!("executor conformance case `{name}` failed: {failure:?}");
    }
}

/// Expands to one `#[test]` per conformance case for a [`Target`].
macro_rules! executor_conformance_tests {
    ($target:ty) => {
        $crate::executor::kit::executor_conformance_tests!($target;
            a_start_runs_one_copy_until_stopped,
            a_repeated_start_adopts_the_recorded_copy,
            a_start_whose_handle_was_lost_adopts_the_copy,
            a_start_after_a_death_starts_one_new_copy,
            stopping_a_dead_app_succeeds,
            probing_changes_nothing,
            a_foreign_handle_is_never_dead_and_never_acted_on,
            an_undeterminable_handle_is_never_dead_and_never_acted_on,
            a_savepoint_leaves_the_app_running,
        );
    };
    ($target:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::executor::kit::run_case::<$target, _, _>(
                    stringify!($case),
                    |target| $crate::executor::kit::cases::$case(target),
                );
            }
        )*
    };
}

pub(crate) use executor_conformance_tests;

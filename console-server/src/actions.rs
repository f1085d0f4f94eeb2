//! The console's executors as task-dispatch sees them: one [`AppActions`] that picks the
//! executor named in each app row.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use task_dispatch::{Action, ActionContext, ActionError, App, AppActions, Liveness, unix_millis};

use crate::executor::{AppRef, Executor, ExecutorError, Handle, TaskRef};

/// Every executor this node can run, by name.
#[derive(Clone, Default)]
pub struct Executors {
    by_name: BTreeMap<&'static str, Arc<dyn Executor>>,
}

impl Executors {
    /// Adds an executor under its own name.
    #[must_use]
    pub fn with(mut self, executor: Arc<dyn Executor>) -> Self {
        self.by_name.insert(executor.name(), executor);
        self
    }

    /// The executor called `name`.
    ///
    /// # Notable errors
    /// An error listing the known names.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Executor>, String> {
        self.by_name.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.by_name.keys().copied().collect();
            format!(
                "unknown executor {name:?}; known executors: {}",
                known.join(", ")
            )
        })
    }

    /// Whether the executor called `name` exists and takes savepoints.
    pub fn takes_savepoints(&self, name: &str) -> bool {
        self.get(name)
            .is_ok_and(|executor| executor.takes_savepoints())
    }

    /// Checks that `executor` exists and accepts `spec`; the message names what is wrong.
    pub fn validate(&self, executor: &str, spec: &Value) -> Result<(), String> {
        self.get(executor)?
            .validate_spec(spec)
            .map_err(|error| error.to_string())
    }
}

impl fmt::Debug for Executors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

fn task_ref(cx: &ActionContext) -> TaskRef<'_> {
    TaskRef {
        id: cx.task_id,
        attempt: cx.attempt,
        params: cx.params.as_ref(),
    }
}

fn app_ref(app: &App) -> AppRef<'_> {
    AppRef {
        id: app.id,
        name: &app.name,
        spec: &app.spec,
    }
}

/// The handle recorded in the app row, if any. A row's handle comes from the database, so a
/// malformed one is an error, not a panic.
fn recorded_handle(app: &App) -> Result<Option<Handle>, ActionError> {
    app.handle
        .as_ref()
        .filter(|value| !value.is_null())
        .map(|value| {
            serde_json::from_value::<Handle>(value.clone()).map_err(|error| {
                ActionError::new(format!(
                    "app {} has an unreadable handle {value}: {error}",
                    app.id
                ))
            })
        })
        .transpose()
}

/// A refusal (nothing done, the app's fate unknown) keeps the app's state; anything else fails it.
fn failed(error: ExecutorError) -> ActionError {
    if error.is_refusal() {
        ActionError::refused(error.to_string())
    } else {
        ActionError::new(error.to_string())
    }
}

/// What the dispatcher calls: the [`Executors`], measured.
#[derive(Debug, Clone)]
pub struct ConsoleActions {
    executors: Executors,
    /// `console_dispatch_latency_seconds` (a clone shares the metric).
    dispatch_latency: Histogram,
}

impl ConsoleActions {
    pub fn new(executors: Executors, dispatch_latency: Histogram) -> Self {
        Self {
            executors,
            dispatch_latency,
        }
    }

    /// Records how long the task waited between its submission and this call. A restart's
    /// second call (its start after the stop) is not a new wait and is not recorded.
    fn observe_wait(&self, cx: &ActionContext, first_call: bool) {
        if !first_call || cx.attempt > 1 {
            return;
        }
        let waited_ms = unix_millis().saturating_sub(cx.submitted_at).max(0);
        // Milliseconds to seconds; precision far beyond the histogram's buckets.
        #[allow(clippy::cast_precision_loss)]
        self.dispatch_latency.observe(waited_ms as f64 / 1000.0);
    }
}

#[async_trait]
impl AppActions for ConsoleActions {
    async fn start(&self, app: &App, cx: &ActionContext) -> Result<Value, ActionError> {
        self.observe_wait(cx, cx.action == Action::Start);
        self.executors.start(app, cx).await
    }

    async fn stop(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError> {
        self.observe_wait(cx, true);
        self.executors.stop(app, cx).await
    }

    async fn savepoint(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError> {
        self.observe_wait(cx, true);
        self.executors.savepoint(app, cx).await
    }

    async fn probe(&self, app: &App) -> Liveness {
        self.executors.probe(app).await
    }

    /// The app's executor says; an unknown executor is taken as host-bound (the safe side).
    fn is_host_bound(&self, app: &App) -> bool {
        self.executors
            .get(&app.executor)
            .ok()
            .is_none_or(|executor| executor.is_host_bound())
    }
}

impl Executors {
    async fn start(&self, app: &App, cx: &ActionContext) -> Result<Value, ActionError> {
        let executor = self.get(&app.executor).map_err(ActionError::new)?;
        let previous = recorded_handle(app)?;
        tracing::info!(
            app = app.id,
            task = cx.task_id,
            attempt = cx.attempt,
            adopting = previous.is_some(),
            "starting app"
        );
        let handle = executor
            .start(&app_ref(app), task_ref(cx), previous.as_ref())
            .await
            .map_err(failed)?;
        serde_json::to_value(&handle)
            .map_err(|error| ActionError::new(format!("cannot record the handle: {error}")))
    }

    async fn stop(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError> {
        let Some(handle) = recorded_handle(app)? else {
            return Ok(()); // Never started: nothing to stop.
        };
        let executor = self.get(&app.executor).map_err(ActionError::new)?;
        tracing::info!(
            app = app.id,
            task = cx.task_id,
            attempt = cx.attempt,
            "stopping app"
        );
        executor
            .stop(&app_ref(app), task_ref(cx), &handle)
            .await
            .map_err(failed)
    }

    async fn savepoint(&self, app: &App, cx: &ActionContext) -> Result<(), ActionError> {
        let executor = self.get(&app.executor).map_err(ActionError::new)?;
        let Some(handle) = recorded_handle(app)? else {
            return Err(ActionError::new(format!(
                "app {} has no running instance recorded: no savepoint taken",
                app.id
            )));
        };
        tracing::info!(
            app = app.id,
            task = cx.task_id,
            attempt = cx.attempt,
            "taking a savepoint"
        );
        let location = executor
            .savepoint(&app_ref(app), task_ref(cx), &handle)
            .await
            .map_err(failed)?;
        tracing::info!(app = app.id, task = cx.task_id, %location, "savepoint taken");
        Ok(())
    }

    async fn probe(&self, app: &App) -> Liveness {
        let handle = match recorded_handle(app) {
            Ok(Some(handle)) => handle,
            Ok(None) => {
                return Liveness::Dead {
                    reason: "no running instance was recorded for this app".to_owned(),
                };
            }
            Err(error) => {
                return Liveness::Unknown {
                    reason: error.to_string(),
                };
            }
        };
        let executor = match self.get(&app.executor) {
            Ok(executor) => executor,
            Err(reason) => return Liveness::Unknown { reason },
        };
        executor.probe(&app_ref(app), &handle).await
    }
}

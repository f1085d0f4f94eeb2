//! Outcomes: what the owner records after acting on an app. A phase of a restart done
//! ([`Store::enter_phase`]), a task finished ([`Store::finish_task`]), a RUNNING app found dead
//! ([`Store::mark_app_dead`]). Each write requires the caller's lease on the app, its claim on
//! the task, the versions it last saw, and a current epoch (`fencing.rs`).

use serde_json::Value;
use sqlx::query::Query;

use super::fencing::fence;
use super::model::{App, NodeLease, Task, TaskStatus};
use super::named::{BindParam, Named};
use super::{Pool, Store, in_write_tx, on_pool};
use crate::affinity::HostId;
use crate::clock::unix_millis;
use crate::error::{Error, Result};
use crate::state::{AppState, Phase};

/// How the last phase of a claimed task ended, for [`Store::finish_task`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The executor call succeeded; `handle` is its record of the app (for a start).
    Succeeded {
        /// The executor's handle (pid, start time, job id); ignored after a stop.
        handle: Option<Value>,
    },
    /// The executor call failed: task and app become FAILED with this error (after a
    /// savepoint, only the task: the app stays RUNNING, with the error as `last_error`).
    Failed {
        /// Why.
        error: String,
    },
    /// The executor did nothing and cannot tell what the app is doing (a refusal): the task
    /// becomes FAILED with this error, the app goes back to `state` (what it was before the
    /// claim) with its handle and host unchanged and the error as `last_error`.
    Refused {
        /// Why.
        error: String,
        /// The app's state before the task was claimed.
        state: AppState,
    },
}

/// A write of an app held by the caller's lease, conditional on its version.
static UPDATE_OWNED_APP: Named = Named::new(concat!(
    "UPDATE apps SET state = :state, handle = :handle, last_error = :last_error, \
     host = :host, version = version + 1, updated_at = :now \
     WHERE id = :app AND version = :app_version \
     AND owner_node = :node AND owner_epoch = :epoch AND ",
    fence!()
));

/// The outcome of a task claimed by the caller, conditional on its version.
static FINISH_TASK: Named = Named::new(concat!(
    "UPDATE tasks SET status = :status, error = :error, version = version + 1, \
     updated_at = :now, finished_at = :now \
     WHERE id = :task AND version = :task_version AND status = 'RUNNING' \
     AND claimed_by = :node AND claim_epoch = :epoch AND ",
    fence!()
));

/// MySQL only: [`FINISH_TASK`] and [`UPDATE_OWNED_APP`] in one statement (a multi-table
/// `UPDATE` is atomic on its own). Changes 2 rows or none.
static FINISH_TASK_AND_APP: Named = Named::new(concat!(
    "UPDATE tasks t JOIN apps a ON a.id = t.app_id \
     SET t.status = :status, t.error = :error, t.version = t.version + 1, \
     t.updated_at = :now, t.finished_at = :now, \
     a.state = :state, a.handle = :handle, a.last_error = :last_error, a.host = :host, \
     a.version = a.version + 1, a.updated_at = :now \
     WHERE t.id = :task AND t.version = :task_version AND t.status = 'RUNNING' \
     AND t.claimed_by = :node AND t.claim_epoch = :epoch \
     AND a.id = :app AND a.version = :app_version \
     AND a.owner_node = :node AND a.owner_epoch = :epoch AND ",
    fence!()
));

/// What an owner writes into an app row: its new state, handle, last error and host.
#[derive(Debug, Clone, Copy)]
pub(super) struct AppWrite<'a> {
    pub(super) state: AppState,
    pub(super) handle: Option<&'a str>,
    pub(super) last_error: Option<&'a str>,
    pub(super) host: Option<&'a HostId>,
    pub(super) now: i64,
}

/// [`UPDATE_OWNED_APP`] of `app` (as last seen) by `lease`; run it on a pool or connection.
pub(super) fn update_owned_app<DB: BindParam>(
    lease: &NodeLease,
    app: &App,
    write: AppWrite<'_>,
) -> Query<'static, DB, DB::Arguments> {
    UPDATE_OWNED_APP.bind(&[
        ("state", write.state.as_str().into()),
        ("handle", write.handle.into()),
        ("last_error", write.last_error.into()),
        ("host", write.host.map(HostId::as_str).into()),
        ("now", write.now.into()),
        ("app", app.id.into()),
        ("app_version", app.version.into()),
        ("node", lease.node_id.as_str().into()),
        ("epoch", lease.epoch.into()),
    ])
}

/// [`FINISH_TASK`] of `task` (as last seen) claimed by `lease`.
pub(super) fn finish_task_row<DB: BindParam>(
    lease: &NodeLease,
    task: &Task,
    status: TaskStatus,
    error: Option<&str>,
    now: i64,
) -> Query<'static, DB, DB::Arguments> {
    FINISH_TASK.bind(&[
        ("status", status.as_str().into()),
        ("error", error.into()),
        ("now", now.into()),
        ("task", task.id.into()),
        ("task_version", task.version.into()),
        ("node", lease.node_id.as_str().into()),
        ("epoch", lease.epoch.into()),
    ])
}

/// What [`Store::finish_task`] writes for an outcome: the task's status and error, the app's
/// state, handle, last error and host.
#[derive(Debug, Clone)]
pub(super) struct Finish {
    pub(super) status: TaskStatus,
    pub(super) error: Option<String>,
    pub(super) state: AppState,
    pub(super) handle: Option<Value>,
    pub(super) last_error: Option<String>,
    pub(super) host: Option<HostId>,
}

impl Finish {
    /// What `outcome` of the last phase `phase` writes for `app` (see [`Store::finish_task`]).
    pub(super) fn of(app: &App, phase: Phase, outcome: &Outcome) -> Self {
        let (status, error, state, handle, last_error) = match outcome {
            Outcome::Succeeded { handle } => {
                let handle = match phase {
                    Phase::Start => handle.clone(),
                    Phase::Stop => None,
                    // The job runs on: its handle stays.
                    Phase::Savepoint => app.handle.clone(),
                };
                (
                    TaskStatus::Succeeded,
                    None,
                    phase.on_success(),
                    handle,
                    None,
                )
            }
            Outcome::Failed { error } => (
                TaskStatus::Failed,
                Some(error.clone()),
                if phase.fails_app_on_error() {
                    AppState::Failed
                } else {
                    phase.during()
                },
                app.handle.clone(),
                Some(error.clone()),
            ),
            Outcome::Refused { error, state } => (
                TaskStatus::Failed,
                Some(error.clone()),
                *state,
                app.handle.clone(),
                Some(error.clone()),
            ),
        };
        let host = match (outcome, phase) {
            (Outcome::Succeeded { .. }, Phase::Start | Phase::Savepoint) => app.host.clone(),
            (Outcome::Succeeded { .. }, Phase::Stop) => None,
            (Outcome::Failed { .. }, _) => app.host.clone().filter(|_| handle.is_some()),
            // Nothing was done: the host a copy may run on is what it was.
            (Outcome::Refused { .. }, _) => app.host.clone(),
        };
        Self {
            status,
            error,
            state,
            handle,
            last_error,
            host,
        }
    }

    /// `task` and `app` (as last seen) once this was written at `now`.
    pub(super) fn applied(self, task: &Task, app: &App, now: i64) -> (Task, App) {
        let task = Task {
            status: self.status,
            error: self.error,
            version: task.version + 1,
            updated_at: now,
            finished_at: Some(now),
            ..task.clone()
        };
        let app = App {
            state: self.state,
            handle: self.handle,
            last_error: self.last_error,
            host: self.host,
            version: app.version + 1,
            updated_at: now,
            ..app.clone()
        };
        (task, app)
    }
}

impl Store {
    /// Records that a phase of a multi-phase action (the stop of a restart) succeeded and moves
    /// the app into the next phase's state. The task stays RUNNING. Entering a start pins the
    /// app to `pin` (see [`Store::claim_task`]); the stopped copy is gone, so nothing else does.
    ///
    /// # Notable errors
    /// [`Error::Conflict`] / [`Error::Fenced`] if the app changed or the session is stale.
    pub async fn enter_phase(
        &self,
        lease: &NodeLease,
        app: &App,
        next: Phase,
        pin: Option<&HostId>,
    ) -> Result<App> {
        let now = unix_millis();
        let state = next.during();
        let host = match next {
            Phase::Start => pin,
            Phase::Stop | Phase::Savepoint => app.host.as_ref(),
        };
        // The handle of a stopped app is stale: dropped.
        let write = AppWrite {
            state,
            handle: None,
            last_error: app.last_error.as_deref(),
            host,
            now,
        };
        let host = host.cloned();
        let result: Result<App> = on_pool!(self, db => {
            let changed = update_owned_app(lease, app, write).execute(db).await?.rows_affected();
            if changed == 0 {
                Err(Error::Conflict(format!("app {} changed", app.id)))
            } else {
                Ok(App { state, handle: None, host, version: app.version + 1, updated_at: now, ..app.clone() })
            }
        });
        self.explain(lease, result).await
    }

    /// Records the outcome of the last phase run for a claimed task, in one transaction: the task
    /// becomes SUCCEEDED or FAILED (with the error), the app the phase's success state (with
    /// the executor's handle after a start, none after a stop), FAILED (with `last_error`), or,
    /// after a refusal, the state it had before the claim.
    /// On MySQL this is one statement.
    ///
    /// The app's host ([`App::host`]) stays after a start, and after a failure that keeps a
    /// handle (a copy may still run); it is cleared after a stop, and after a failure that
    /// leaves no handle (nothing was started).
    ///
    /// # Notable errors
    /// [`Error::Conflict`] if the task or app changed (another session took over);
    /// [`Error::Fenced`] if the caller's session is no longer current. Nothing is written then.
    pub async fn finish_task(
        &self,
        lease: &NodeLease,
        task: &Task,
        app: &App,
        phase: Phase,
        outcome: Outcome,
    ) -> Result<(Task, App)> {
        let now = unix_millis();
        let Finish {
            status,
            error,
            state,
            handle,
            last_error,
            host,
        } = Finish::of(app, phase, &outcome);
        let handle_text = handle.as_ref().map(Value::to_string);
        let write = AppWrite {
            state,
            handle: handle_text.as_deref(),
            last_error: last_error.as_deref(),
            host: host.as_ref(),
            now,
        };
        let result: Result<()> = if let Pool::MySql(db) = &self.pool {
            let changed = FINISH_TASK_AND_APP
                .bind(&[
                    ("status", status.as_str().into()),
                    ("error", error.as_deref().into()),
                    ("now", now.into()),
                    ("state", state.as_str().into()),
                    ("handle", write.handle.into()),
                    ("last_error", write.last_error.into()),
                    ("host", write.host.map(HostId::as_str).into()),
                    ("task", task.id.into()),
                    ("task_version", task.version.into()),
                    ("app", app.id.into()),
                    ("app_version", app.version.into()),
                    ("node", lease.node_id.as_str().into()),
                    ("epoch", lease.epoch.into()),
                ])
                .execute(db)
                .await?
                .rows_affected();
            if changed == 0 {
                Err(Error::Conflict(format!(
                    "task {} is no longer claimed by {lease} or app {} changed",
                    task.id, app.id
                )))
            } else {
                Ok(())
            }
        } else {
            in_write_tx!(self, conn => {
                let task_changed = finish_task_row(lease, task, status, error.as_deref(), now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if task_changed == 0 {
                    return Err(Error::Conflict(format!("task {} is no longer claimed by {lease}", task.id)));
                }
                let app_changed =
                    update_owned_app(lease, app, write).execute(&mut *conn).await?.rows_affected();
                if app_changed == 0 {
                    return Err(Error::Conflict(format!("app {} changed or its lease moved", app.id)));
                }
                Ok(())
            })
        };
        self.explain(lease, result).await?;
        let finish = Finish {
            status,
            error,
            state,
            handle,
            last_error,
            host,
        };
        Ok(finish.applied(task, app, now))
    }

    /// Monitoring found a RUNNING app dead: it becomes FAILED with `reason`. Its host is
    /// cleared (the probe ran there and saw no copy), so any node may start it again.
    ///
    /// # Notable errors
    /// [`Error::IllegalTransition`]-like refusal as [`Error::Conflict`] if the app is not
    /// RUNNING; [`Error::Conflict`] / [`Error::Fenced`] as for every owner write.
    pub async fn mark_app_dead(&self, lease: &NodeLease, app: &App, reason: &str) -> Result<App> {
        if !app.state.fails_when_found_dead() {
            return Err(Error::Conflict(format!(
                "app {} is {}, not RUNNING: a dead probe does not apply",
                app.id, app.state
            )));
        }
        let now = unix_millis();
        let handle = app.handle.as_ref().map(Value::to_string);
        let write = AppWrite {
            state: AppState::Failed,
            handle: handle.as_deref(),
            last_error: Some(reason),
            host: None,
            now,
        };
        let result: Result<App> = on_pool!(self, db => {
            let changed = update_owned_app(lease, app, write).execute(db).await?.rows_affected();
            if changed == 0 {
                Err(Error::Conflict(format!("app {} changed", app.id)))
            } else {
                Ok(App {
                    state: AppState::Failed,
                    last_error: Some(reason.to_owned()),
                    host: None,
                    version: app.version + 1,
                    updated_at: now,
                    ..app.clone()
                })
            }
        });
        self.explain(lease, result).await
    }
}

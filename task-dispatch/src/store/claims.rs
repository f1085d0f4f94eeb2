//! Claims: the owner takes a task and moves its app into the first phase's state, in one
//! transaction ([`Store::claim_task`]), or in one statement on MySQL when the caller already
//! holds the app as it is ([`Store::claim_task_of`]). A task that cannot run is recorded FAILED
//! here, with the reason.

use serde_json::Value;

use super::fencing::fence;
use super::model::{App, AppRow, NodeLease, Task, TaskStatus};
use super::named::Named;
use super::outcomes::{AppWrite, finish_task_row, update_owned_app};
use super::{Pool, Store, app_columns, in_write_tx};
use crate::affinity::HostId;
use crate::clock::unix_millis;
use crate::error::{Error, Result};
use crate::state::{self, AppState, Phase};

/// What [`Store::claim_task`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The task is the caller's: run `phases` in order (the app is already in the first
    /// phase's state), then record the outcome with [`Store::finish_task`].
    Run {
        /// The claimed task (RUNNING, attempts incremented).
        task: Task,
        /// The app as written by the claim.
        app: Box<App>,
        /// What is left to do: one phase, or stop then start for a restart.
        phases: &'static [Phase],
    },
    /// The task was recorded FAILED without running: the action is illegal in the app's
    /// state, the app was deleted, or it was re-claimed too many times.
    Finished(Task),
}

/// A claim of a PENDING task, or a re-claim of a RUNNING one, conditional on its version.
static CLAIM_TASK: Named = Named::new(concat!(
    "UPDATE tasks SET status = 'RUNNING', claimed_by = :node, claim_epoch = :epoch, \
     attempts = attempts + 1, version = version + 1, updated_at = :now, \
     started_at = COALESCE(started_at, :now) \
     WHERE id = :task AND version = :task_version AND status IN ('PENDING', 'RUNNING') AND ",
    fence!()
));

/// MySQL only: [`CLAIM_TASK`] and the app's move into the first phase in one statement (a
/// multi-table `UPDATE` is atomic on its own), for an app whose state the caller knows.
/// Changes 2 rows or none.
static CLAIM_TASK_OF_KNOWN_APP: Named = Named::new(concat!(
    "UPDATE tasks t JOIN apps a ON a.id = t.app_id \
     SET t.status = 'RUNNING', t.claimed_by = :node, t.claim_epoch = :epoch, \
     t.attempts = t.attempts + 1, t.version = t.version + 1, t.updated_at = :now, \
     t.started_at = COALESCE(t.started_at, :now), \
     a.state = :state, a.host = :host, a.version = a.version + 1, a.updated_at = :now \
     WHERE t.id = :task AND t.version = :task_version \
     AND t.status IN ('PENDING', 'RUNNING') \
     AND a.id = :app AND a.version = :app_version \
     AND a.owner_node = :node AND a.owner_epoch = :epoch AND ",
    fence!()
));

impl Store {
    /// Like [`Store::claim_task`], for a caller that holds `app` as it last wrote or read it
    /// (the worker of the app's lease). On MySQL the common case (the task can run, the app
    /// is unchanged) is one statement instead of a five-statement transaction; anything else
    /// (an unexpected version, a task to refuse or abandon) goes through [`Store::claim_task`],
    /// which reads both rows again. The outcome is the same either way.
    ///
    /// # Notable errors
    /// As [`Store::claim_task`].
    pub async fn claim_task_of(
        &self,
        lease: &NodeLease,
        task: &Task,
        app: &App,
        max_attempts: i64,
        pin: Option<&HostId>,
    ) -> Result<Claim> {
        let Pool::MySql(db) = &self.pool else {
            return self.claim_task(lease, task, max_attempts, pin).await;
        };
        let reclaim = task.status == TaskStatus::Running;
        let runnable = task.app_id == app.id
            && app.lease.as_ref() == Some(lease)
            && !(reclaim && task.attempts + 1 > max_attempts);
        let (true, Ok(phases)) = (runnable, phases_to_run(app.state, task)) else {
            return self.claim_task(lease, task, max_attempts, pin).await;
        };
        let first = phases.first().map_or(app.state, |phase| phase.during());
        let host = host_after_claim(app, phases, pin).cloned();
        let now = unix_millis();
        let changed = CLAIM_TASK_OF_KNOWN_APP
            .bind(&[
                ("node", lease.node_id.as_str().into()),
                ("epoch", lease.epoch.into()),
                ("now", now.into()),
                ("state", first.as_str().into()),
                ("host", host.as_ref().map(HostId::as_str).into()),
                ("task", task.id.into()),
                ("task_version", task.version.into()),
                ("app", app.id.into()),
                ("app_version", app.version.into()),
            ])
            .execute(db)
            .await?
            .rows_affected();
        if changed == 0 {
            // Something moved since the caller looked: decide from fresh rows.
            return self.claim_task(lease, task, max_attempts, pin).await;
        }
        let task = claimed(task, lease, now);
        let app = App {
            state: first,
            host,
            version: app.version + 1,
            updated_at: now,
            ..app.clone()
        };
        Ok(Claim::Run {
            task,
            app: Box::new(app),
            phases,
        })
    }

    /// Claims `task` (as last read) for `lease`'s session and moves the app into the first
    /// phase's state, in one transaction.
    ///
    /// A PENDING task is planned from the app's state; a RUNNING task claimed by a session
    /// that is gone (the caller checked) resumes at the phase the app's state shows. A task
    /// that cannot run is recorded FAILED here with the reason ([`Claim::Finished`]): an illegal
    /// action, a deleted app, or more than `max_attempts` claims (its app becomes FAILED too).
    ///
    /// `pin` is the caller's host for an app tied to the machine that starts it (a `process`
    /// app), `None` otherwise: a claim whose first phase is a start records it as the app's
    /// host ([`App::host`]) before anything runs, so that a retry after the caller died
    /// between starting the app and recording it runs on the same host, where the first copy
    /// can be found.
    ///
    /// # Notable errors
    /// [`Error::Conflict`] if the task changed since it was read; [`Error::NotOwner`] if the
    /// caller does not hold the app's lease; [`Error::Fenced`].
    pub async fn claim_task(
        &self,
        lease: &NodeLease,
        task: &Task,
        max_attempts: i64,
        pin: Option<&HostId>,
    ) -> Result<Claim> {
        let now = unix_millis();
        let reclaim = task.status == TaskStatus::Running;
        let claimed = claimed(task, lease, now);
        let result: Result<Claim> = in_write_tx!(self, conn => {
            let won = CLAIM_TASK
                .bind(&[
                    ("node", lease.node_id.as_str().into()),
                    ("epoch", lease.epoch.into()),
                    ("now", now.into()),
                    ("task", task.id.into()),
                    ("task_version", task.version.into()),
                ])
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if won == 0 {
                return Err(Error::Conflict(format!("task {} changed since it was read", task.id)));
            }
            const APP: &str = concat!("SELECT ", app_columns!(), " FROM apps WHERE id = ?");
            let row: Option<AppRow> =
                sqlx::query_as(APP).bind(task.app_id).fetch_optional(&mut *conn).await?;
            let Some(app) = row.map(App::try_from).transpose()? else {
                let error = format!("app {} was deleted", task.app_id);
                finish_task_row(lease, &claimed, TaskStatus::Failed, Some(&error), now)
                    .execute(&mut *conn)
                    .await?;
                return Ok(Claim::Finished(failed(claimed.clone(), error, now)));
            };
            if app.lease.as_ref() != Some(lease) {
                return Err(Error::NotOwner {
                    app_id: app.id,
                    holder: app.lease.map(|l| l.to_string()),
                });
            }
            let handle = app.handle.as_ref().map(Value::to_string);
            if reclaim && claimed.attempts > max_attempts {
                let error = format!(
                    "abandoned after {} attempts: the nodes running it died each time",
                    claimed.attempts - 1
                );
                finish_task_row(lease, &claimed, TaskStatus::Failed, Some(&error), now)
                    .execute(&mut *conn)
                    .await?;
                // Only an app left mid-action: a savepoint abandoned this way never stopped
                // the RUNNING app it ran on.
                if !app.state.is_settled() {
                    let write = AppWrite {
                        state: AppState::Failed,
                        handle: handle.as_deref(),
                        last_error: Some(&error),
                        host: app.host.as_ref(),
                        now,
                    };
                    let changed =
                        update_owned_app(lease, &app, write).execute(&mut *conn).await?.rows_affected();
                    if changed == 0 {
                        return Err(Error::Conflict(format!("app {} changed", app.id)));
                    }
                }
                return Ok(Claim::Finished(failed(claimed.clone(), error, now)));
            }
            let phases = match phases_to_run(app.state, task) {
                Ok(phases) => phases,
                Err(refused) => {
                    let error = refused.to_string();
                    finish_task_row(lease, &claimed, TaskStatus::Failed, Some(&error), now)
                        .execute(&mut *conn)
                        .await?;
                    return Ok(Claim::Finished(failed(claimed.clone(), error, now)));
                }
            };
            let first = phases.first().map_or(app.state, |phase| phase.during());
            let host = host_after_claim(&app, phases, pin).cloned();
            let mut app = app;
            if app.state != first || app.host != host {
                let write = AppWrite {
                    state: first,
                    handle: handle.as_deref(),
                    last_error: app.last_error.as_deref(),
                    host: host.as_ref(),
                    now,
                };
                let changed =
                    update_owned_app(lease, &app, write).execute(&mut *conn).await?.rows_affected();
                if changed == 0 {
                    return Err(Error::Conflict(format!("app {} changed", app.id)));
                }
                app = App { state: first, host, version: app.version + 1, updated_at: now, ..app };
            }
            Ok(Claim::Run { task: claimed.clone(), app: Box::new(app), phases })
        });
        self.explain(lease, result).await
    }
}

/// The phases a claim of `task` runs with the app in `state`: a RUNNING task (its previous
/// claimer is gone) resumes at the phase the state shows; otherwise the action is planned
/// from the state, and refused if the state does not allow it.
pub(super) fn phases_to_run(
    state: AppState,
    task: &Task,
) -> std::result::Result<&'static [Phase], state::IllegalTransition> {
    let reclaim = task.status == TaskStatus::Running;
    match reclaim.then(|| state::resume(state, task.action)).flatten() {
        Some(phases) => Ok(phases),
        None => state::plan(state, task.action),
    }
}

/// The app's host once a claim of `phases` by a caller on `pin` (if the app is tied to its
/// host) is written: the caller's host when the claim starts the app, unchanged otherwise.
pub(super) fn host_after_claim<'a>(
    app: &'a App,
    phases: &[Phase],
    pin: Option<&'a HostId>,
) -> Option<&'a HostId> {
    match (phases.first(), pin) {
        (Some(Phase::Start), Some(pin)) => Some(pin),
        _ => app.host.as_ref(),
    }
}

/// `task` as a successful claim by `lease` at `now` writes it ([`CLAIM_TASK`]).
pub(super) fn claimed(task: &Task, lease: &NodeLease, now: i64) -> Task {
    Task {
        status: TaskStatus::Running,
        claimed_by: Some(lease.node_id.clone()),
        claim_epoch: Some(lease.epoch),
        attempts: task.attempts + 1,
        version: task.version + 1,
        updated_at: now,
        started_at: task.started_at.or(Some(now)),
        ..task.clone()
    }
}

/// `task` as a refusal at `now` records it: FAILED with `error`.
fn failed(task: Task, error: String, now: i64) -> Task {
    Task {
        status: TaskStatus::Failed,
        error: Some(error),
        version: task.version + 1,
        updated_at: now,
        finished_at: Some(now),
        ..task
    }
}

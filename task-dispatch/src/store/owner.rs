//! Owner writes: node sessions and fencing, app leases, claims, outcomes, monitoring.
//!
//! # The fencing protocol
//! - `node_epochs` holds one row per node id. [`Store::register_node`] increments its epoch
//!   atomically each time the node (re)registers; the returned [`NodeLease`] (node id + epoch)
//!   identifies that session.
//! - Every write below is a conditional update that also requires the caller's epoch to be the
//!   current one (`EXISTS (SELECT 1 FROM node_epochs WHERE node_id = ? AND epoch = ?)`). A node
//!   that registered again, or that another node fenced, has its late writes refused with
//!   [`Error::Fenced`].
//! - An app's lease (`apps.owner_node`, `apps.owner_epoch`) names the session allowed to act
//!   on it. [`Store::adopt_app`] takes it over from nobody, from a session that is no longer
//!   current, or from a node the caller's membership says is gone, and in that last case first
//!   fences the gone node's epoch (conditional on the epoch recorded in the lease, so a node
//!   that has meanwhile registered again is left alone). A live holder keeps it until it
//!   releases it ([`Store::release_app`]).
//! - Task claims record the claiming session; finishing a task requires that claim and the
//!   app's lease, and bumps both rows' versions in one transaction.

use serde_json::Value;

use super::model::{App, AppId, AppRow, NodeLease, Task, TaskStatus};
use super::{Pool, Store, app_columns, in_write_tx, is_unique_violation, now_ms, on_pool};
use crate::error::{Error, Result};
use crate::state::{self, AppState, Phase};

/// The fence every owner write carries: the session's epoch is still the current one.
macro_rules! fence {
    () => {
        "EXISTS (SELECT 1 FROM node_epochs \
         WHERE node_epochs.node_id = ? AND node_epochs.epoch = ?)"
    };
}

/// A write of an app held by the caller's lease, conditional on its version.
const UPDATE_OWNED_APP: &str = concat!(
    "UPDATE apps SET state = ?, handle = ?, last_error = ?, version = version + 1, \
     updated_at = ? WHERE id = ? AND version = ? AND owner_node = ? AND owner_epoch = ? AND ",
    fence!()
);

/// A claim of a PENDING task, or a re-claim of a RUNNING one, conditional on its version.
const CLAIM_TASK: &str = concat!(
    "UPDATE tasks SET status = 'RUNNING', claimed_by = ?, claim_epoch = ?, \
     attempts = attempts + 1, version = version + 1, updated_at = ?, \
     started_at = COALESCE(started_at, ?) \
     WHERE id = ? AND version = ? AND status IN ('PENDING', 'RUNNING') AND ",
    fence!()
);

/// The outcome of a task claimed by the caller.
const FINISH_TASK: &str = concat!(
    "UPDATE tasks SET status = ?, error = ?, version = version + 1, updated_at = ?, \
     finished_at = ? WHERE id = ? AND version = ? AND status = 'RUNNING' \
     AND claimed_by = ? AND claim_epoch = ? AND ",
    fence!()
);

/// MySQL only: [`CLAIM_TASK`] and the app's move into the first phase in one statement (a
/// multi-table `UPDATE` is atomic on its own), for an app whose state the caller knows.
/// Changes 2 rows or none.
const CLAIM_TASK_OF_KNOWN_APP: &str = concat!(
    "UPDATE tasks t JOIN apps a ON a.id = t.app_id \
     SET t.status = 'RUNNING', t.claimed_by = ?, t.claim_epoch = ?, \
     t.attempts = t.attempts + 1, t.version = t.version + 1, t.updated_at = ?, \
     t.started_at = COALESCE(t.started_at, ?), \
     a.state = ?, a.version = a.version + 1, a.updated_at = ? \
     WHERE t.id = ? AND t.version = ? AND t.status IN ('PENDING', 'RUNNING') \
     AND a.id = ? AND a.version = ? AND a.owner_node = ? AND a.owner_epoch = ? AND ",
    fence!()
);

/// MySQL only: [`FINISH_TASK`] and [`UPDATE_OWNED_APP`] in one statement. Changes 2 rows or
/// none.
const FINISH_TASK_AND_APP: &str = concat!(
    "UPDATE tasks t JOIN apps a ON a.id = t.app_id \
     SET t.status = ?, t.error = ?, t.version = t.version + 1, t.updated_at = ?, \
     t.finished_at = ?, \
     a.state = ?, a.handle = ?, a.last_error = ?, a.version = a.version + 1, a.updated_at = ? \
     WHERE t.id = ? AND t.version = ? AND t.status = 'RUNNING' \
     AND t.claimed_by = ? AND t.claim_epoch = ? \
     AND a.id = ? AND a.version = ? AND a.owner_node = ? AND a.owner_epoch = ? AND ",
    fence!()
);

/// Binds the tail that [`CLAIM_TASK_OF_KNOWN_APP`] and [`FINISH_TASK_AND_APP`] share: the app's
/// id and version, the caller's lease on it, and the fence on the caller's epoch.
fn bind_owned_app_and_fence<'q>(
    query: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    app: &App,
    lease: &'q NodeLease,
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    query
        .bind(app.id)
        .bind(app.version)
        .bind(&lease.node_id)
        .bind(lease.epoch)
        .bind(&lease.node_id)
        .bind(lease.epoch)
}

/// Binds and runs [`UPDATE_OWNED_APP`]; yields the number of rows changed.
macro_rules! update_owned_app {
    ($conn:expr, $lease:expr, $app:expr, $state:expr, $handle:expr, $last_error:expr, $now:expr) => {
        sqlx::query(UPDATE_OWNED_APP)
            .bind($state.as_str())
            .bind($handle)
            .bind($last_error)
            .bind($now)
            .bind($app.id)
            .bind($app.version)
            .bind(&$lease.node_id)
            .bind($lease.epoch)
            .bind(&$lease.node_id)
            .bind($lease.epoch)
            .execute($conn)
            .await?
            .rows_affected()
    };
}

/// Binds and runs [`FINISH_TASK`]; yields the number of rows changed.
macro_rules! finish_task {
    ($conn:expr, $lease:expr, $task:expr, $status:expr, $error:expr, $now:expr) => {
        sqlx::query(FINISH_TASK)
            .bind($status.as_str())
            .bind($error)
            .bind($now)
            .bind($now)
            .bind($task.id)
            .bind($task.version)
            .bind(&$lease.node_id)
            .bind($lease.epoch)
            .bind(&$lease.node_id)
            .bind($lease.epoch)
            .execute($conn)
            .await?
            .rows_affected()
    };
}

/// What [`Store::adopt_app`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Adoption {
    /// The caller's session holds the lease (now or already): it may act on the app.
    Adopted(App),
    /// A live node's current session holds it; it releases it once it sees the same
    /// membership, or loses it when it dies.
    HeldBy(NodeLease),
    /// The app no longer exists.
    Gone,
}

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

/// How the last phase of a claimed task ended, for [`Store::finish_task`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The executor call succeeded; `handle` is its record of the app (for a start).
    Succeeded {
        /// The executor's handle (pid, start time, job id); ignored after a stop.
        handle: Option<Value>,
    },
    /// The executor call failed: task and app become FAILED with this error.
    Failed {
        /// Why.
        error: String,
    },
}

impl Store {
    /// Starts a new session for `node_id`: increments its epoch atomically (creating the row at
    /// epoch 1) and returns it. Writes carrying any older epoch of this node are refused from
    /// now on.
    ///
    /// # Notable errors
    /// [`Error::InvalidInput`] for an empty or over-long (255) node id.
    pub async fn register_node(&self, node_id: &str) -> Result<NodeLease> {
        if node_id.is_empty() || node_id.chars().count() > 255 {
            return Err(Error::InvalidInput(
                "a node id has 1 to 255 characters".into(),
            ));
        }
        // Two first registrations of one id can race on the insert: the loser retries once,
        // and then finds the row.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = now_ms();
            let result: Result<i64> = in_write_tx!(self, conn => {
                let bumped = sqlx::query(
                    "UPDATE node_epochs SET epoch = epoch + 1, registered_at = ? \
                     WHERE node_id = ?",
                )
                .bind(now)
                .bind(node_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if bumped == 0 {
                    sqlx::query(
                        "INSERT INTO node_epochs (node_id, epoch, registered_at) VALUES (?, 1, ?)",
                    )
                    .bind(node_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                }
                let epoch: i64 =
                    sqlx::query_scalar("SELECT epoch FROM node_epochs WHERE node_id = ?")
                        .bind(node_id)
                        .fetch_one(&mut *conn)
                        .await?;
                Ok(epoch)
            });
            match result {
                Ok(epoch) => {
                    return Ok(NodeLease {
                        node_id: node_id.to_owned(),
                        epoch,
                    });
                }
                Err(Error::Database(e)) if attempt == 1 && is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The current epoch of `node_id`, if it ever registered.
    pub async fn node_epoch(&self, node_id: &str) -> Result<Option<i64>> {
        const SQL: &str = "SELECT epoch FROM node_epochs WHERE node_id = ?";
        Ok(on_pool!(self, db => {
            sqlx::query_scalar(SQL).bind(node_id).fetch_optional(db).await?
        }))
    }

    /// Fences one session of a node: its epoch moves on if it is still `lease.epoch`, so every
    /// later write of that session is refused. Returns whether it did (false when the node has
    /// registered again since, which fences the old session anyway).
    pub async fn fence_node(&self, lease: &NodeLease) -> Result<bool> {
        const SQL: &str =
            "UPDATE node_epochs SET epoch = epoch + 1 WHERE node_id = ? AND epoch = ?";
        let fenced = on_pool!(self, db => {
            sqlx::query(SQL)
                .bind(&lease.node_id)
                .bind(lease.epoch)
                .execute(db)
                .await?
                .rows_affected()
        });
        Ok(fenced == 1)
    }

    /// Takes the app's lease for `lease`'s session, so that it may act on and monitor the app.
    ///
    /// The lease is taken when it is free, already ours (any epoch of our node id), held by a
    /// session that is no longer current, or held by a node for which `is_live` says false —
    /// that node's session is fenced first ([`Store::fence_node`]).
    ///
    /// # Notable behaviors
    /// Idempotent. Nothing about the app's state changes: adoption attaches, it never restarts.
    ///
    /// # Notable errors
    /// [`Error::Fenced`] if the caller's own session is no longer current.
    pub async fn adopt_app(
        &self,
        lease: &NodeLease,
        app_id: AppId,
        is_live: impl Fn(&str) -> bool,
    ) -> Result<Adoption> {
        // A few rounds: each lost race means someone else wrote the app meanwhile.
        for _ in 0..5 {
            let Some(app) = self.find_app(app_id).await? else {
                return Ok(Adoption::Gone);
            };
            match &app.lease {
                Some(held) if held == lease => return Ok(Adoption::Adopted(app)),
                Some(held) if held.node_id != lease.node_id => {
                    let current = self.node_epoch(&held.node_id).await? == Some(held.epoch);
                    if current && is_live(&held.node_id) {
                        return Ok(Adoption::HeldBy(held.clone()));
                    }
                    if current {
                        self.fence_node(held).await?;
                    }
                }
                _ => {}
            }
            const SQL: &str = concat!(
                "UPDATE apps SET owner_node = ?, owner_epoch = ?, version = version + 1, \
                 updated_at = ? WHERE id = ? AND version = ? AND ",
                fence!()
            );
            let now = now_ms();
            let taken = on_pool!(self, db => {
                sqlx::query(SQL)
                    .bind(&lease.node_id)
                    .bind(lease.epoch)
                    .bind(now)
                    .bind(app_id)
                    .bind(app.version)
                    .bind(&lease.node_id)
                    .bind(lease.epoch)
                    .execute(db)
                    .await?
                    .rows_affected()
            });
            if taken == 1 {
                return Ok(Adoption::Adopted(App {
                    version: app.version + 1,
                    lease: Some(lease.clone()),
                    updated_at: now,
                    ..app
                }));
            }
            self.check_epoch(lease).await?;
        }
        Err(Error::Conflict(format!(
            "app {app_id} kept changing while adopting it"
        )))
    }

    /// Gives the app's lease up, if `lease` holds it; returns whether it did. Called when
    /// ownership moves to a live node, after the last action has finished.
    pub async fn release_app(&self, lease: &NodeLease, app_id: AppId) -> Result<bool> {
        const SQL: &str = "UPDATE apps SET owner_node = NULL, owner_epoch = NULL, \
             version = version + 1, updated_at = ? \
             WHERE id = ? AND owner_node = ? AND owner_epoch = ?";
        let released = on_pool!(self, db => {
            sqlx::query(SQL)
                .bind(now_ms())
                .bind(app_id)
                .bind(&lease.node_id)
                .bind(lease.epoch)
                .execute(db)
                .await?
                .rows_affected()
        });
        Ok(released == 1)
    }

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
    ) -> Result<Claim> {
        let Pool::MySql(db) = &self.pool else {
            return self.claim_task(lease, task, max_attempts).await;
        };
        let reclaim = task.status == TaskStatus::Running;
        let runnable = task.app_id == app.id
            && app.lease.as_ref() == Some(lease)
            && !(reclaim && task.attempts + 1 > max_attempts);
        let (true, Ok(phases)) = (runnable, phases_to_run(app.state, task)) else {
            return self.claim_task(lease, task, max_attempts).await;
        };
        let first = phases.first().map_or(app.state, |phase| phase.during());
        let now = now_ms();
        let query = sqlx::query(CLAIM_TASK_OF_KNOWN_APP)
            .bind(&lease.node_id)
            .bind(lease.epoch)
            .bind(now)
            .bind(now)
            .bind(first.as_str())
            .bind(now)
            .bind(task.id)
            .bind(task.version);
        let changed = bind_owned_app_and_fence(query, app, lease)
            .execute(db)
            .await?
            .rows_affected();
        if changed == 0 {
            // Something moved since the caller looked: decide from fresh rows.
            return self.claim_task(lease, task, max_attempts).await;
        }
        let task = claimed(task, lease, now);
        let app = App {
            state: first,
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
    /// # Notable errors
    /// [`Error::Conflict`] if the task changed since it was read; [`Error::NotOwner`] if the
    /// caller does not hold the app's lease; [`Error::Fenced`].
    pub async fn claim_task(
        &self,
        lease: &NodeLease,
        task: &Task,
        max_attempts: i64,
    ) -> Result<Claim> {
        let now = now_ms();
        let reclaim = task.status == TaskStatus::Running;
        let claimed = claimed(task, lease, now);
        let result: Result<Claim> = in_write_tx!(self, conn => {
            let won = sqlx::query(CLAIM_TASK)
                .bind(&lease.node_id)
                .bind(lease.epoch)
                .bind(now)
                .bind(now)
                .bind(task.id)
                .bind(task.version)
                .bind(&lease.node_id)
                .bind(lease.epoch)
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
                finish_task!(&mut *conn, lease, claimed, TaskStatus::Failed, &error, now);
                return Ok(Claim::Finished(failed(claimed.clone(), error, now)));
            };
            if app.lease.as_ref() != Some(lease) {
                return Err(Error::NotOwner {
                    app_id: app.id,
                    holder: app.lease.map(|l| l.to_string()),
                });
            }
            if reclaim && claimed.attempts > max_attempts {
                let error = format!(
                    "abandoned after {} attempts: the nodes running it died each time",
                    claimed.attempts - 1
                );
                finish_task!(&mut *conn, lease, claimed, TaskStatus::Failed, &error, now);
                if app.state.is_active() {
                    let handle = app.handle.as_ref().map(Value::to_string);
                    let changed =
                        update_owned_app!(&mut *conn, lease, app, AppState::Failed, handle, &error, now);
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
                    finish_task!(&mut *conn, lease, claimed, TaskStatus::Failed, &error, now);
                    return Ok(Claim::Finished(failed(claimed.clone(), error, now)));
                }
            };
            let first = phases.first().map_or(app.state, |phase| phase.during());
            let mut app = app;
            if app.state != first {
                let handle = app.handle.as_ref().map(Value::to_string);
                let changed =
                    update_owned_app!(&mut *conn, lease, app, first, handle, app.last_error.as_deref(), now);
                if changed == 0 {
                    return Err(Error::Conflict(format!("app {} changed", app.id)));
                }
                app = App { state: first, version: app.version + 1, updated_at: now, ..app };
            }
            Ok(Claim::Run { task: claimed.clone(), app: Box::new(app), phases })
        });
        self.explain(lease, result).await
    }

    /// Records that a phase of a multi-phase action (the stop of a restart) succeeded and moves
    /// the app into the next phase's state. The task stays RUNNING.
    ///
    /// # Notable errors
    /// [`Error::Conflict`] / [`Error::Fenced`] if the app changed or the session is stale.
    pub async fn enter_phase(&self, lease: &NodeLease, app: &App, next: Phase) -> Result<App> {
        let now = now_ms();
        let state = next.during();
        let result: Result<App> = on_pool!(self, db => {
            // The handle of a stopped app is stale: dropped.
            let changed = update_owned_app!(db, lease, app, state, None::<String>, app.last_error.as_deref(), now);
            if changed == 0 {
                Err(Error::Conflict(format!("app {} changed", app.id)))
            } else {
                Ok(App { state, handle: None, version: app.version + 1, updated_at: now, ..app.clone() })
            }
        });
        self.explain(lease, result).await
    }

    /// Records the outcome of the last phase run for a claimed task, in one transaction: the task
    /// becomes SUCCEEDED or FAILED (with the error), the app the phase's success state (with
    /// the executor's handle after a start, none after a stop) or FAILED (with `last_error`).
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
        let now = now_ms();
        let (status, error, state, handle, last_error) = match &outcome {
            Outcome::Succeeded { handle } => {
                let handle = match phase {
                    Phase::Start => handle.clone(),
                    Phase::Stop => None,
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
                AppState::Failed,
                app.handle.clone(),
                Some(error.clone()),
            ),
        };
        let handle_text = handle.as_ref().map(Value::to_string);
        let result: Result<()> = if let Pool::MySql(db) = &self.pool {
            let query = sqlx::query(FINISH_TASK_AND_APP)
                .bind(status.as_str())
                .bind(error.as_deref())
                .bind(now)
                .bind(now)
                .bind(state.as_str())
                .bind(handle_text.as_deref())
                .bind(last_error.as_deref())
                .bind(now)
                .bind(task.id)
                .bind(task.version)
                .bind(&lease.node_id)
                .bind(lease.epoch);
            let changed = bind_owned_app_and_fence(query, app, lease)
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
                let task_changed = finish_task!(&mut *conn, lease, task, status, error.as_deref(), now);
                if task_changed == 0 {
                    return Err(Error::Conflict(format!("task {} is no longer claimed by {lease}", task.id)));
                }
                let app_changed = update_owned_app!(
                    &mut *conn, lease, app, state, handle_text.as_deref(), last_error.as_deref(), now
                );
                if app_changed == 0 {
                    return Err(Error::Conflict(format!("app {} changed or its lease moved", app.id)));
                }
                Ok(())
            })
        };
        self.explain(lease, result).await?;
        let task = Task {
            status,
            error,
            version: task.version + 1,
            updated_at: now,
            finished_at: Some(now),
            ..task.clone()
        };
        let app = App {
            state,
            handle,
            last_error,
            version: app.version + 1,
            updated_at: now,
            ..app.clone()
        };
        Ok((task, app))
    }

    /// Monitoring found a RUNNING app dead: it becomes FAILED with `reason`.
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
        let now = now_ms();
        let handle = app.handle.as_ref().map(Value::to_string);
        let result: Result<App> = on_pool!(self, db => {
            let changed = update_owned_app!(db, lease, app, AppState::Failed, handle, reason, now);
            if changed == 0 {
                Err(Error::Conflict(format!("app {} changed", app.id)))
            } else {
                Ok(App {
                    state: AppState::Failed,
                    last_error: Some(reason.to_owned()),
                    version: app.version + 1,
                    updated_at: now,
                    ..app.clone()
                })
            }
        });
        self.explain(lease, result).await
    }

    /// Turns a lost conditional update into [`Error::Fenced`] when the reason is that the
    /// caller's session is no longer current.
    async fn explain<T>(&self, lease: &NodeLease, result: Result<T>) -> Result<T> {
        match result {
            Err(Error::Conflict(message)) => {
                self.check_epoch(lease).await?;
                Err(Error::Conflict(message))
            }
            other => other,
        }
    }

    /// Ok while `lease` is the node's current session, [`Error::Fenced`] otherwise.
    pub async fn check_epoch(&self, lease: &NodeLease) -> Result<()> {
        if self.node_epoch(&lease.node_id).await? == Some(lease.epoch) {
            Ok(())
        } else {
            Err(Error::Fenced {
                node: lease.node_id.clone(),
                epoch: lease.epoch,
            })
        }
    }
}

/// The phases a claim of `task` runs with the app in `state`: a RUNNING task (its previous
/// claimer is gone) resumes at the phase the state shows; otherwise the action is planned
/// from the state, and refused if the state does not allow it.
fn phases_to_run(
    state: AppState,
    task: &Task,
) -> std::result::Result<&'static [Phase], state::IllegalTransition> {
    let reclaim = task.status == TaskStatus::Running;
    match reclaim.then(|| state::resume(state, task.action)).flatten() {
        Some(phases) => Ok(phases),
        None => state::plan(state, task.action),
    }
}

/// `task` as a successful claim by `lease` at `now` writes it ([`CLAIM_TASK`]).
fn claimed(task: &Task, lease: &NodeLease, now: i64) -> Task {
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

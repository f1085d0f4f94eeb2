//! Tasks: submit, check early, get. Any node may call these; only the owner claims them
//! (`claims.rs`).

use super::model::{App, AppId, Submitted, Task, TaskId, TaskRow, TaskStatus};
use super::{
    Backend, InsertedId, Pool, Store, in_write_tx, is_unique_violation, on_pool, task_columns,
};
use crate::clock::unix_millis;
use crate::error::{Entity, Error, Result};
use crate::state::{self, Action, AppState};

impl Store {
    /// Queues `action` for the app and returns the PENDING task at once; the owner runs it.
    ///
    /// With an `idempotency_key`, a repeat of the same request returns the first task (and
    /// `created: false`) whatever its status, without checking the app's state again; once the
    /// app is deleted, a repeat fails with [`Error::NotFound`] like any request for it.
    ///
    /// The action is checked against the state the app will be in once its queued tasks have
    /// run (see [`state::projected`]); it is checked again when it runs, and fails its task
    /// then if the app took another path (a start that failed, for example).
    ///
    /// # Notable errors
    /// [`Error::NotFound`] (no such app); [`Error::IllegalTransition`] (409);
    /// [`Error::Conflict`] when the key was used for a different app or action;
    /// [`Error::InvalidInput`] for an empty or over-long (255) key.
    ///
    /// Most callers go through `Dispatcher::submit`, which also wakes the owner.
    pub async fn submit_task(
        &self,
        app_id: AppId,
        action: Action,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted> {
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.chars().count() > 255 {
                return Err(Error::InvalidInput(
                    "an idempotency key has 1 to 255 characters".into(),
                ));
            }
            if let Some(first) = self.task_by_key(key).await? {
                return self.repeat_of(first, app_id, action).await;
            }
        }
        let now = unix_millis();
        // Check and insert in one transaction that holds the app's row (MySQL `FOR UPDATE`;
        // SQLite's `BEGIN IMMEDIATE` serializes writers): concurrent submissions for one app,
        // through any nodes, are checked one after the other against each other's tasks.
        let lock_app = match self.backend() {
            Backend::MySql => "SELECT state FROM apps WHERE id = ? FOR UPDATE",
            Backend::Sqlite => "SELECT state FROM apps WHERE id = ?",
        };
        const QUEUED: &str = "SELECT action FROM tasks \
             WHERE app_id = ? AND status IN ('PENDING', 'RUNNING') ORDER BY id";
        const INSERT: &str = "INSERT INTO tasks (app_id, action, status, claimed_by, \
             claim_epoch, attempts, error, idempotency_key, version, created_at, updated_at) \
             VALUES (?, ?, 'PENDING', NULL, NULL, 0, NULL, ?, 1, ?, ?)";
        let inserted: Result<i64> = in_write_tx!(self, conn => {
            let state: Option<String> = sqlx::query_scalar(lock_app)
                .bind(app_id)
                .fetch_optional(&mut *conn)
                .await?;
            let state: AppState = state
                .ok_or(Error::NotFound { entity: Entity::App, id: app_id })?
                .parse()
                .map_err(|e| Error::Corrupt(format!("app {app_id}: {e}")))?;
            let queued: Vec<String> = sqlx::query_scalar(QUEUED)
                .bind(app_id)
                .fetch_all(&mut *conn)
                .await?;
            let queued = queued
                .iter()
                .map(|name| name.parse().map_err(|e| Error::Corrupt(format!("task of app {app_id}: {e}"))))
                .collect::<Result<Vec<Action>>>()?;
            state::plan(state::projected(state, queued)?, action)?;
            let done = sqlx::query(INSERT)
                .bind(app_id)
                .bind(action.as_str())
                .bind(idempotency_key)
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(done.inserted_id())
        });
        let id = match (inserted, idempotency_key) {
            (Ok(id), _) => id,
            // A concurrent repeat with the same key won: answer with its task. (It may also be
            // why the state no longer allows this action.)
            (Err(refused), Some(key))
                if matches!(&refused, Error::Database(e) if is_unique_violation(e))
                    || matches!(refused, Error::IllegalTransition { .. }) =>
            {
                match self.task_by_key(key).await? {
                    Some(first) => return self.repeat_of(first, app_id, action).await,
                    None => return Err(refused),
                }
            }
            (Err(refused), _) => return Err(refused),
        };
        Ok(Submitted {
            task: Task {
                id,
                app_id,
                action,
                status: TaskStatus::Pending,
                claimed_by: None,
                claim_epoch: None,
                attempts: 0,
                error: None,
                idempotency_key: idempotency_key.map(str::to_owned),
                version: 1,
                created_at: now,
                updated_at: now,
                started_at: None,
                finished_at: None,
            },
            created: true,
        })
    }

    /// Checks, without queuing anything, whether `action` would be accepted now: the HTTP layer
    /// calls it (or relies on `submit_task`, which calls it) to answer 409 early.
    ///
    /// # Notable errors
    /// [`Error::NotFound`]; [`Error::IllegalTransition`] naming the state checked against.
    pub async fn check_action(&self, app_id: AppId, action: Action) -> Result<App> {
        let app = self.get_app(app_id).await?;
        let queued = self.unfinished_actions(app_id).await?;
        let projected = state::projected(app.state, queued)?;
        state::plan(projected, action)?;
        Ok(app)
    }

    /// The task with this id.
    ///
    /// # Notable errors
    /// [`Error::NotFound`].
    pub async fn get_task(&self, id: TaskId) -> Result<Task> {
        const SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?");
        let row: Option<TaskRow> = on_pool!(self, db => {
            sqlx::query_as(SQL).bind(id).fetch_optional(db).await?
        });
        row.map(Task::try_from).transpose()?.ok_or(Error::NotFound {
            entity: Entity::Task,
            id,
        })
    }

    async fn task_by_key(&self, key: &str) -> Result<Option<Task>> {
        const SQL: &str = concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE idempotency_key = ?"
        );
        let row: Option<TaskRow> = on_pool!(self, db => {
            sqlx::query_as(SQL).bind(key).fetch_optional(db).await?
        });
        row.map(Task::try_from).transpose()
    }

    /// The answer to a repeated idempotency key: the first task, if the request is the same and
    /// its app still exists (finished tasks outlive a deleted app, their key too).
    async fn repeat_of(&self, first: Task, app_id: AppId, action: Action) -> Result<Submitted> {
        if first.app_id != app_id || first.action != action {
            return Err(Error::Conflict(format!(
                "idempotency key already used for task {} ({} app {})",
                first.id, first.action, first.app_id
            )));
        }
        self.get_app(app_id).await?;
        Ok(Submitted {
            task: first,
            created: false,
        })
    }

    /// The actions of the app's PENDING and RUNNING tasks, in submission order.
    pub(crate) async fn unfinished_actions(&self, app_id: AppId) -> Result<Vec<Action>> {
        const SQL: &str = "SELECT action FROM tasks \
             WHERE app_id = ? AND status IN ('PENDING', 'RUNNING') ORDER BY id";
        let names: Vec<String> = on_pool!(self, db => {
            sqlx::query_scalar(SQL).bind(app_id).fetch_all(db).await?
        });
        names
            .iter()
            .map(|name| {
                name.parse()
                    .map_err(|e| Error::Corrupt(format!("task of app {app_id}: {e}")))
            })
            .collect()
    }

    /// The app's oldest PENDING or RUNNING task: the next one to run (index
    /// `tasks_app_status_id`).
    pub async fn next_task(&self, app_id: AppId) -> Result<Option<Task>> {
        const SQL: &str = concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE app_id = ? AND status IN ('PENDING', 'RUNNING') \
             ORDER BY id LIMIT 1"
        );
        let row: Option<TaskRow> = on_pool!(self, db => {
            sqlx::query_as(SQL).bind(app_id).fetch_optional(db).await?
        });
        row.map(Task::try_from).transpose()
    }

    /// The ids of apps that have PENDING or RUNNING tasks. Reads only those rows (index
    /// `tasks_status_app`): this is the dispatcher's fallback poll, once a second per node.
    pub async fn apps_with_unfinished_tasks(&self) -> Result<Vec<AppId>> {
        const SQL: &str = "SELECT DISTINCT app_id FROM tasks \
             WHERE status IN ('PENDING', 'RUNNING') ORDER BY app_id";
        Ok(on_pool!(self, db => sqlx::query_scalar(SQL).fetch_all(db).await?))
    }

    /// The same answer as [`Store::apps_with_unfinished_tasks`], found the way the StreamPark
    /// design did: read every row and column of the task table and filter in memory. For the
    /// benchmark baseline ([`crate::PollStrategy::FullTableScan`]) only.
    pub async fn apps_with_unfinished_tasks_by_full_scan(&self) -> Result<Vec<AppId>> {
        const SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks");
        let rows: Vec<TaskRow> = on_pool!(self, db => sqlx::query_as(SQL).fetch_all(db).await?);
        let mut ids = Vec::new();
        for row in rows {
            let task = Task::try_from(row)?;
            if !task.status.is_finished() {
                ids.push(task.app_id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// How many tasks are PENDING and RUNNING, cluster-wide (both statuses always listed).
    /// Reads only those rows (index `tasks_status_app`); for metrics.
    pub async fn count_unfinished_tasks(&self) -> Result<Vec<(TaskStatus, i64)>> {
        const SQL: &str = "SELECT status, COUNT(*) FROM tasks \
             WHERE status IN ('PENDING', 'RUNNING') GROUP BY status";
        let rows: Vec<(String, i64)> =
            on_pool!(self, db => sqlx::query_as(SQL).fetch_all(db).await?);
        let count = |status: TaskStatus| {
            rows.iter()
                .find(|(name, _)| name == status.as_str())
                .map_or(0, |(_, n)| *n)
        };
        Ok(vec![
            (TaskStatus::Pending, count(TaskStatus::Pending)),
            (TaskStatus::Running, count(TaskStatus::Running)),
        ])
    }

    /// Deletes up to `batch` tasks that finished (SUCCEEDED or FAILED) before `cutoff_ms`
    /// (milliseconds since the Unix epoch), oldest first, and returns how many it deleted.
    /// PENDING and RUNNING tasks are never touched. The cluster leader calls it in a loop
    /// until it returns less than `batch` (index `tasks_finished_at`).
    pub async fn purge_finished_tasks(&self, cutoff_ms: i64, batch: u32) -> Result<u64> {
        // MySQL takes ORDER BY/LIMIT on DELETE; SQLite only through a subquery.
        const MYSQL: &str = "DELETE FROM tasks WHERE finished_at < ? ORDER BY finished_at LIMIT ?";
        const SQLITE: &str = "DELETE FROM tasks WHERE id IN \
             (SELECT id FROM tasks WHERE finished_at < ? ORDER BY finished_at LIMIT ?)";
        let done = match &self.pool {
            Pool::MySql(db) => sqlx::query(MYSQL)
                .bind(cutoff_ms)
                .bind(batch)
                .execute(db)
                .await?
                .rows_affected(),
            Pool::Sqlite(db) => sqlx::query(SQLITE)
                .bind(cutoff_ms)
                .bind(batch)
                .execute(db)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }
}

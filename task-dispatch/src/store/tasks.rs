//! Tasks: submit, check early, get. Any node may call these; only the owner claims them
//! (`claims.rs`).

use super::apps::placements;
use super::model::{App, AppId, Submitted, Task, TaskId, TaskRow, TaskStatus};
use super::submissions::Submission;
use super::{
    Backend, InsertedId, Pool, Store, in_write_tx, is_unique_violation, on_pool, task_columns,
};
use crate::affinity::{AppPlacement, HostId};
use crate::clock::unix_millis;
use crate::error::{Entity, Error, Result};
use crate::state::{self, Action, AppState, Phase};

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
    /// Most callers go through `Dispatcher::submit`, which also wakes the owner and refuses
    /// starts that nobody could run safely ([`Store::submit_task_if_reachable`]).
    pub async fn submit_task(
        &self,
        app_id: AppId,
        action: Action,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted> {
        self.submit_task_if_reachable(app_id, action, idempotency_key, |_| true)
            .await
    }

    /// [`Store::submit_task`], refusing an action that starts the app (start, restart) while a
    /// copy of it may run on a host ([`App::host`]) for which `reachable` says false (no live
    /// node there: nobody could find that copy first). Checked in the transaction that holds
    /// the app's row, so the host cannot change between the check and the insert.
    ///
    /// # Notable errors
    /// Those of [`Store::submit_task`]; [`Error::HostUnreachable`].
    pub async fn submit_task_if_reachable(
        &self,
        app_id: AppId,
        action: Action,
        idempotency_key: Option<&str>,
        reachable: impl Fn(&HostId) -> bool,
    ) -> Result<Submitted> {
        let submission = Submission {
            app_id,
            action,
            idempotency_key: idempotency_key.map(str::to_owned),
            params: None,
        };
        self.submit_one(&submission, &reachable).await
    }

    /// [`Store::submit_task_if_reachable`] of a [`Submission`] (with its parameters).
    pub(crate) async fn submit_one(
        &self,
        submission: &Submission,
        reachable: &impl Fn(&HostId) -> bool,
    ) -> Result<Submitted> {
        let (app_id, action) = (submission.app_id, submission.action);
        let idempotency_key = submission.idempotency_key.as_deref();
        if let Some(key) = idempotency_key {
            super::submissions::check_key(key)?;
            if let Some(first) = self.task_by_key(key).await? {
                return self.repeat_of(first, app_id, action).await;
            }
        }
        let now = unix_millis();
        // Check and insert in one transaction that holds the app's row (MySQL `FOR UPDATE`;
        // SQLite's `BEGIN IMMEDIATE` serializes writers): concurrent submissions for one app,
        // through any nodes, are checked one after the other against each other's tasks.
        let lock_app = match self.backend() {
            Backend::MySql => "SELECT state, host FROM apps WHERE id = ? FOR UPDATE",
            Backend::Sqlite => "SELECT state, host FROM apps WHERE id = ?",
        };
        const QUEUED: &str = "SELECT action FROM tasks \
             WHERE app_id = ? AND status IN ('PENDING', 'RUNNING') ORDER BY id";
        let params = super::submissions::params_text(submission)?;
        let inserted: Result<(i64, Option<HostId>)> = in_write_tx!(self, conn => {
            let row: Option<(String, Option<String>)> = sqlx::query_as(lock_app)
                .bind(app_id)
                .fetch_optional(&mut *conn)
                .await?;
            let (state, host) = row.ok_or(Error::NotFound { entity: Entity::App, id: app_id })?;
            let state: AppState = state
                .parse()
                .map_err(|e| Error::Corrupt(format!("app {app_id}: {e}")))?;
            let host = host.map(HostId::new);
            let queued: Vec<String> = sqlx::query_scalar(QUEUED)
                .bind(app_id)
                .fetch_all(&mut *conn)
                .await?;
            let queued = queued
                .iter()
                .map(|name| name.parse().map_err(|e| Error::Corrupt(format!("task of app {app_id}: {e}"))))
                .collect::<Result<Vec<Action>>>()?;
            let phases = state::plan(state::projected(state, queued)?, action)?;
            if let Some(host) = host.as_ref().filter(|host| !reachable(host))
                && phases.contains(&Phase::Start)
            {
                return Err(Error::HostUnreachable { id: app_id, host: host.clone() });
            }
            let done = sqlx::query(super::submissions::INSERT_TASK)
                .bind(app_id)
                .bind(action.as_str())
                .bind(idempotency_key)
                .bind(now)
                .bind(now)
                .bind(params.as_deref())
                .execute(&mut *conn)
                .await?;
            Ok((done.inserted_id(), host))
        });
        let (id, host) = match (inserted, idempotency_key) {
            (Ok(inserted), _) => inserted,
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
            task: super::submissions::pending_task(id, submission, now),
            created: true,
            host,
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
            host: None,
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
        Ok(self.next_task_and_more(app_id).await?.0)
    }

    /// [`Store::next_task`], and whether another unfinished task queues behind it: one read
    /// (`LIMIT 2`) that spares the worker a second one to find its queue empty.
    pub async fn next_task_and_more(&self, app_id: AppId) -> Result<(Option<Task>, bool)> {
        const SQL: &str = concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE app_id = ? AND status IN ('PENDING', 'RUNNING') \
             ORDER BY id LIMIT 2"
        );
        let rows: Vec<TaskRow> = on_pool!(self, db => {
            sqlx::query_as(SQL).bind(app_id).fetch_all(db).await?
        });
        let more = rows.len() > 1;
        let next = rows.into_iter().next().map(Task::try_from).transpose()?;
        Ok((next, more))
    }

    /// The apps that have PENDING or RUNNING tasks, with their hosts, by id. Reads only those
    /// task rows (index `tasks_status_app`) and their apps by key: this is the dispatcher's
    /// fallback poll, once a second per node.
    pub async fn apps_with_unfinished_tasks(&self) -> Result<Vec<AppPlacement>> {
        const SQL: &str = "SELECT DISTINCT t.app_id, a.host FROM tasks t \
             JOIN apps a ON a.id = t.app_id \
             WHERE t.status IN ('PENDING', 'RUNNING') ORDER BY t.app_id";
        let rows: Vec<(AppId, Option<String>)> =
            on_pool!(self, db => sqlx::query_as(SQL).fetch_all(db).await?);
        Ok(placements(rows))
    }

    /// Those of `ids` that name apps with PENDING or RUNNING tasks, sorted: how the dispatcher
    /// checks a batch of wake-ups before it tracks anything. One statement through
    /// `tasks_status_app`, whatever the batch holds (ids that do not exist are simply absent).
    ///
    /// # Notable behaviors
    /// The list is padded to one of a few fixed lengths (repeating its last id), so that a
    /// connection prepares at most three statements for any batch; batches longer than the
    /// longest shape are read in several statements.
    pub async fn apps_with_unfinished_tasks_among(
        &self,
        ids: &[AppId],
    ) -> Result<Vec<AppPlacement>> {
        const SQL: &str = "SELECT DISTINCT t.app_id, a.host FROM tasks t \
             JOIN apps a ON a.id = t.app_id \
             WHERE t.status IN ('PENDING', 'RUNNING') AND t.app_id IN ({ids})";
        self.placements_among(SQL, ids).await
    }

    /// Runs `sql`, whose `{ids}` stands for a list of placeholders, over `ids` in chunks padded
    /// to [`ID_LIST_SHAPES`]; answers the `(id, host)` rows found, by id, once each.
    async fn placements_among(&self, sql: &str, ids: &[AppId]) -> Result<Vec<AppPlacement>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(ID_LIST_SHAPES[ID_LIST_SHAPES.len() - 1]) {
            let Some(&last) = chunk.last() else { break };
            let shape = ID_LIST_SHAPES
                .iter()
                .copied()
                .find(|&len| len >= chunk.len())
                .unwrap_or(chunk.len());
            let sql = sql.replace("{ids}", &vec!["?"; shape].join(", "));
            let padded = chunk.iter().copied().chain(std::iter::repeat(last));
            let rows: Vec<(AppId, Option<String>)> = on_pool!(self, db => {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
                for id in padded.take(shape) {
                    query = query.bind(id);
                }
                query.fetch_all(db).await?
            });
            found.extend(placements(rows));
        }
        found.sort_unstable_by_key(|placement| placement.id);
        found.dedup_by_key(|placement| placement.id);
        Ok(found)
    }

    /// The same answer as [`Store::apps_with_unfinished_tasks`], found the way the StreamPark
    /// design did: read every row and column of the task table and filter in memory. For the
    /// benchmark baseline ([`crate::PollStrategy::FullTableScan`]) only.
    ///
    /// The hosts of the apps found are read afterwards by key, 256 apps a statement (the scan
    /// is the baseline's cost; the hosts are this design's).
    pub async fn apps_with_unfinished_tasks_by_full_scan(&self) -> Result<Vec<AppPlacement>> {
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
        const HOSTS: &str = "SELECT id, host FROM apps WHERE id IN ({ids})";
        self.placements_among(HOSTS, &ids).await
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

    /// The transaction isolation level of the store's connections, as the server names it:
    /// `REPEATABLE-READ` on MySQL/MariaDB whatever the server's default (the fenced writes count
    /// on it; every connection sets it), `None` on SQLite (serializable by construction). For
    /// operators checking a server, and the tests.
    pub async fn isolation_level(&self) -> Result<Option<String>> {
        match &self.pool {
            Pool::MySql(db) => {
                let level: String = sqlx::query_scalar("SELECT @@tx_isolation")
                    .fetch_one(db)
                    .await?;
                Ok(Some(level))
            }
            Pool::Sqlite(_) => Ok(None),
        }
    }

    /// The database server's clock, in milliseconds since the Unix epoch: a second opinion for
    /// callers that compare their own clock with timestamps other nodes wrote (SQLite: this
    /// host's clock, read by SQLite).
    pub async fn database_now_ms(&self) -> Result<i64> {
        const MYSQL: &str = "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";
        const SQLITE: &str = "SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
        let now: i64 = match &self.pool {
            Pool::MySql(db) => sqlx::query_scalar(MYSQL).fetch_one(db).await?,
            Pool::Sqlite(db) => sqlx::query_scalar(SQLITE).fetch_one(db).await?,
        };
        Ok(now)
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

/// The lengths of the id lists that [`Store::apps_with_unfinished_tasks_among`] binds.
const ID_LIST_SHAPES: [usize; 3] = [1, 16, 256];

//! Many submissions in one transaction (group commit, issue 15): what `Dispatcher::submit`
//! uses under load. Each submission is answered exactly as [`Store::submit_task_if_reachable`]
//! would answer it alone, in the order given: a later submission for the same app is checked
//! against the state the earlier ones project.
//!
//! One transaction for the batch: the apps' rows locked in id order (MySQL `FOR UPDATE`;
//! SQLite's `BEGIN IMMEDIATE` serializes writers), their queued tasks read once, the accepted
//! submissions in one multi-row `INSERT ... RETURNING id`, one commit. Submissions with an idempotency key seen before (in the
//! table, or earlier in the batch) are answered after the commit as repeats. If the batch
//! transaction fails (a deadlock, a key inserted meanwhile by another node), every submission
//! of the batch is retried alone, so a batch never answers differently from single calls.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{AppId, Submitted, Task, TaskStatus};
use super::owner_batches::{marks, padded};
use super::{Backend, Store, in_write_tx};
use crate::affinity::HostId;
use crate::clock::unix_millis;
use crate::error::{Entity, Error, Result};
use crate::state::{self, Action, AppState, Phase};

/// One submission of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub app_id: AppId,
    pub action: Action,
    pub idempotency_key: Option<String>,
    /// What the request asked beyond the action, for the executor: a JSON object, stored with
    /// the task ([`Task::params`]). Added, issue 13.
    pub params: Option<serde_json::Value>,
}

/// The most rows one `INSERT` of a batch carries (5 values each).
const MAX_INSERT_ROWS: usize = 256;

/// What the transaction decided for one submission: its answer, or `None` for a repeated
/// idempotency key, answered after the commit.
type Decision = Option<Result<Submitted>>;

impl Store {
    /// Submits `batch` in one transaction; answers in the same order (see the module
    /// documentation). `reachable` as for [`Store::submit_task_if_reachable`].
    pub async fn submit_tasks(
        &self,
        batch: &[Submission],
        reachable: impl Fn(&HostId) -> bool,
    ) -> Vec<Result<Submitted>> {
        if batch.len() == 1 {
            let one = &batch[0];
            return vec![self.submit_one(one, &reachable).await];
        }
        match self.submit_together(batch, &reachable).await {
            Ok(decisions) => {
                let mut answers = Vec::with_capacity(batch.len());
                for (submission, decision) in batch.iter().zip(decisions) {
                    answers.push(match decision {
                        Some(answer) => answer,
                        None => self.submit_alone(submission, &reachable).await,
                    });
                }
                answers
            }
            Err(error) => {
                tracing::debug!(%error, size = batch.len(), "batched submission failed; submitting one by one");
                let mut answers = Vec::with_capacity(batch.len());
                for submission in batch {
                    answers.push(self.submit_alone(submission, &reachable).await);
                }
                answers
            }
        }
    }

    async fn submit_alone(
        &self,
        submission: &Submission,
        reachable: &impl Fn(&HostId) -> bool,
    ) -> Result<Submitted> {
        self.submit_one(submission, reachable).await
    }

    /// The batch's transaction. `Err` only for a failure of the transaction itself; the
    /// answers of single submissions are in the decisions.
    async fn submit_together(
        &self,
        batch: &[Submission],
        reachable: &impl Fn(&HostId) -> bool,
    ) -> Result<Vec<Decision>> {
        // Keys: a bad one is refused alone; a known one (in the table or earlier in the batch)
        // is a repeat, answered after the commit.
        let keys: Vec<&str> = batch
            .iter()
            .filter_map(|s| s.idempotency_key.as_deref())
            .collect();
        let mut known_keys = self.existing_keys(&keys).await?;
        let ids: BTreeSet<AppId> = batch.iter().map(|s| s.app_id).collect();
        // Padded to a power of two by repeating the last id (a repeat reads nothing more), so
        // that a connection prepares few shapes of these statements.
        let ids = padded(&ids.into_iter().collect::<Vec<AppId>>());
        let marks = marks(ids.len());
        let lock_apps = match self.backend() {
            Backend::MySql => {
                format!(
                    "SELECT id, state, host FROM apps WHERE id IN ({marks}) ORDER BY id FOR UPDATE"
                )
            }
            Backend::Sqlite => format!("SELECT id, state, host FROM apps WHERE id IN ({marks})"),
        };
        let queued_sql = format!(
            "SELECT app_id, action FROM tasks WHERE app_id IN ({marks}) \
             AND status IN ('PENDING', 'RUNNING') ORDER BY id"
        );
        const INSERT: &str = "INSERT INTO tasks (app_id, action, status, claimed_by, \
             claim_epoch, attempts, error, idempotency_key, version, created_at, updated_at, \
             params)";
        const ROW: &str = "(?, ?, 'PENDING', NULL, NULL, 0, NULL, ?, 1, ?, ?, ?)";
        let now = unix_millis();
        in_write_tx!(self, conn => {
            // Safe: the SQL is fixed text and placeholders; every value is bound.
            let mut apps_query = sqlx::query_as(sqlx::AssertSqlSafe(lock_apps.as_str()));
            let mut queued_query = sqlx::query_as(sqlx::AssertSqlSafe(queued_sql.as_str()));
            for id in &ids {
                apps_query = apps_query.bind(*id);
                queued_query = queued_query.bind(*id);
            }
            let rows: Vec<(AppId, String, Option<String>)> = apps_query.fetch_all(&mut *conn).await?;
            let queued_rows: Vec<(AppId, String)> = queued_query.fetch_all(&mut *conn).await?;
            let mut apps: BTreeMap<AppId, (AppState, Option<HostId>)> = BTreeMap::new();
            for (id, state, host) in rows {
                let state = state.parse().map_err(|e| Error::Corrupt(format!("app {id}: {e}")))?;
                apps.insert(id, (state, host.map(HostId::new)));
            }
            let mut queued: BTreeMap<AppId, Vec<Action>> = BTreeMap::new();
            for (app_id, action) in queued_rows {
                let action = action
                    .parse()
                    .map_err(|e| Error::Corrupt(format!("task of app {app_id}: {e}")))?;
                queued.entry(app_id).or_default().push(action);
            }
            let mut decisions = Vec::with_capacity(batch.len());
            // Where in `decisions` the submissions to insert are.
            let mut accepted: Vec<(usize, Option<String>)> = Vec::new();
            for submission in batch {
                let key = submission.idempotency_key.as_deref();
                if let Some(key) = key {
                    if let Err(invalid) = check_key(key) {
                        decisions.push(Some(Err(invalid)));
                        continue;
                    }
                    if !known_keys.insert(key.to_owned()) {
                        decisions.push(None);
                        continue;
                    }
                }
                let app_id = submission.app_id;
                let Some((app_state, host)) = apps.get(&app_id) else {
                    decisions.push(Some(Err(Error::NotFound { entity: Entity::App, id: app_id })));
                    continue;
                };
                let before = queued.get(&app_id).cloned().unwrap_or_default();
                let planned = state::projected(*app_state, before)
                    .map_err(Error::from)
                    .and_then(|projected| Ok(state::plan(projected, submission.action)?));
                let phases = match planned {
                    Ok(phases) => phases,
                    Err(refused) => {
                        decisions.push(Some(Err(refused)));
                        continue;
                    }
                };
                if let Some(host) = host.as_ref().filter(|host| !reachable(host))
                    && phases.contains(&Phase::Start)
                {
                    decisions.push(Some(Err(Error::HostUnreachable { id: app_id, host: host.clone() })));
                    continue;
                }
                let params = match params_text(submission) {
                    Ok(params) => params,
                    Err(invalid) => {
                        decisions.push(Some(Err(invalid)));
                        continue;
                    }
                };
                queued.entry(app_id).or_default().push(submission.action);
                accepted.push((decisions.len(), params));
                // The task's id is known once the rows are inserted, below.
                decisions.push(Some(Ok(Submitted {
                    task: pending_task(0, submission, now),
                    created: true,
                    host: host.clone(),
                })));
            }
            // The accepted submissions, in order, in one multi-row INSERT: one round trip
            // (the batch writer keeps its own connections, so each length is prepared once
            // per connection). Ids ascend in the order of the rows.
            for chunk in accepted.chunks(MAX_INSERT_ROWS) {
                let sql = format!("{INSERT} VALUES {} RETURNING id", vec![ROW; chunk.len()].join(", "));
                // Safe: fixed text and placeholders; every value is bound.
                let mut insert = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
                for (i, params) in chunk {
                    let submission = &batch[*i];
                    insert = insert
                        .bind(submission.app_id)
                        .bind(submission.action.as_str())
                        .bind(submission.idempotency_key.as_deref())
                        .bind(now)
                        .bind(now)
                        .bind(params.as_deref());
                }
                let mut ids: Vec<i64> = insert.fetch_all(&mut *conn).await?;
                if ids.len() != chunk.len() {
                    return Err(Error::Corrupt(format!(
                        "{} rows inserted, {} ids returned",
                        chunk.len(),
                        ids.len()
                    )));
                }
                ids.sort_unstable();
                for ((i, _), id) in chunk.iter().zip(ids) {
                    if let Some(Some(Ok(submitted))) = decisions.get_mut(*i) {
                        submitted.task.id = id;
                    }
                }
            }
            Ok(decisions)
        })
    }

    /// Which of `keys` some task already carries.
    async fn existing_keys(&self, keys: &[&str]) -> Result<BTreeSet<String>> {
        if keys.is_empty() {
            return Ok(BTreeSet::new());
        }
        // Padded like the app ids of the batch (a repeated key finds nothing more).
        let keys = padded(keys);
        let marks = marks(keys.len());
        let sql = format!("SELECT idempotency_key FROM tasks WHERE idempotency_key IN ({marks})");
        super::on_pool!(self, db => {
            // Safe: fixed text and placeholders.
            let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()));
            for key in &keys {
                query = query.bind(*key);
            }
            let found: Vec<String> = query.fetch_all(db).await?;
            Ok(found.into_iter().collect())
        })
    }
}

/// The insert of a PENDING task: app, action, key, created_at, updated_at, params.
pub(super) const INSERT_TASK: &str = "INSERT INTO tasks (app_id, action, status, claimed_by, \
     claim_epoch, attempts, error, idempotency_key, version, created_at, updated_at, params) \
     VALUES (?, ?, 'PENDING', NULL, NULL, 0, NULL, ?, 1, ?, ?, ?)";

/// The parameters as stored: a JSON object's text, or `None`.
///
/// # Notable errors
/// [`Error::InvalidInput`] for parameters that are not a JSON object or longer than 4 KiB.
pub(super) fn params_text(submission: &Submission) -> Result<Option<String>> {
    let Some(params) = &submission.params else {
        return Ok(None);
    };
    if !params.is_object() {
        return Err(Error::InvalidInput(
            "task parameters must be a JSON object".into(),
        ));
    }
    let text = params.to_string();
    if text.len() > 4096 {
        return Err(Error::InvalidInput(
            "task parameters take at most 4096 bytes".into(),
        ));
    }
    Ok(Some(text))
}

/// The key rule of [`Store::submit_task`]: 1 to 255 characters.
pub(super) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.chars().count() > 255 {
        return Err(Error::InvalidInput(
            "an idempotency key has 1 to 255 characters".into(),
        ));
    }
    Ok(())
}

/// The row [`Store::submit_tasks`] inserted for `submission`.
pub(super) fn pending_task(id: i64, submission: &Submission, now: i64) -> Task {
    Task {
        id,
        app_id: submission.app_id,
        action: submission.action,
        status: TaskStatus::Pending,
        claimed_by: None,
        claim_epoch: None,
        attempts: 0,
        error: None,
        idempotency_key: submission.idempotency_key.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
        started_at: None,
        finished_at: None,
        params: submission.params.clone(),
    }
}

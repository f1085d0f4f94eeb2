//! The owner's statements for many apps at once (issue 15): what the dispatcher's group commit
//! (`dispatcher/batcher.rs`) sends when many app workers of one node read their queues, take
//! leases, claim tasks or record outcomes at the same moment.
//!
//! # Guarantees
//! - Each request is answered as the single call would answer it ([`Store::next_task_and_more`],
//!   [`Store::adopt_app`], [`Store::claim_task_of`], [`Store::finish_task`]); a batch of one
//!   *is* the single call.
//! - Every write keeps its conditions: each row's own version, the caller's lease on the app
//!   and claim on the task, and the fence on the caller's epoch. On MySQL a batch of writes is
//!   one multi-table `UPDATE` whose `WHERE` carries them all, per row; rows whose conditions
//!   failed are simply not written. If fewer rows changed than asked, the rows are read again
//!   to tell which were written, and the others go through the single call, which decides
//!   from fresh rows and names the reason (conflict, fenced). A batch statement that fails as a
//!   whole wrote nothing: each request then goes through the single call.
//! - On SQLite (one writer at a time, a standalone node) batches are the single calls in turn.
//!
//! # Statement shapes
//! Lists are padded to a power of two (repeating the last entry; a repeat changes nothing), so
//! that a connection prepares at most a few shapes of each statement.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::claims::{Claim, claimed, host_after_claim, phases_to_run};
use super::leases::Adoption;
use super::model::{App, AppId, AppRow, NodeLease, Task, TaskId, TaskRow, TaskStatus};
use super::outcomes::{Finish, Outcome};
use super::{Pool, Store, app_columns, on_pool, task_columns};
use crate::affinity::HostId;
use crate::clock::unix_millis;
use crate::error::Result;
use crate::state::{AppState, Phase};

/// The most requests one statement carries; longer batches take several.
pub const MAX_OWNER_BATCH: usize = 128;

/// A claim for [`Store::claim_tasks_of`]: the arguments of one [`Store::claim_task_of`].
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub task: Task,
    pub app: App,
    pub pin: Option<HostId>,
}

/// An outcome for [`Store::finish_tasks`]: the arguments of one [`Store::finish_task`].
#[derive(Debug, Clone)]
pub struct FinishRequest {
    pub task: Task,
    pub app: App,
    pub phase: Phase,
    pub outcome: Outcome,
}

/// `n` placeholders.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `CASE {key} WHEN ? THEN ? ... END` with `n` branches.
fn case(key: &str, n: usize) -> String {
    format!("CASE {key} {} END", vec!["WHEN ? THEN ?"; n].join(" "))
}

/// The padded length of a list of `len` (at most [`MAX_OWNER_BATCH`]).
fn shape(len: usize) -> usize {
    len.next_power_of_two()
}

/// `items` padded to [`shape`] by repeating the last one.
fn padded<T: Clone>(items: &[T]) -> Vec<T> {
    let mut out = items.to_vec();
    if let Some(last) = items.last() {
        out.resize(shape(items.len()), last.clone());
    }
    out
}

/// A value bound into a batch statement.
#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Text(Option<String>),
}

impl From<i64> for Bind {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<Option<String>> for Bind {
    fn from(value: Option<String>) -> Self {
        Self::Text(value)
    }
}

impl From<&str> for Bind {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

/// The lease and fence conditions every batched owner write ends with, and their values.
const LEASE_AND_FENCE: &str = "a.owner_node = ? AND a.owner_epoch = ? AND EXISTS (SELECT 1 \
     FROM node_epochs WHERE node_epochs.node_id = ? AND node_epochs.epoch = ?)";

fn lease_and_fence(lease: &NodeLease, binds: &mut Vec<Bind>) {
    for _ in 0..2 {
        binds.push(lease.node_id.as_str().into());
        binds.push(lease.epoch.into());
    }
}

impl Store {
    /// [`Store::next_task_and_more`] of each of `apps`, in one read per
    /// [`MAX_OWNER_BATCH`] apps (through `tasks_app_status_id`; only those apps' unfinished
    /// tasks are read).
    pub async fn next_tasks_and_more(&self, apps: &[AppId]) -> Vec<Result<(Option<Task>, bool)>> {
        if apps.len() == 1 {
            return vec![self.next_task_and_more(apps[0]).await];
        }
        match self.unfinished_tasks_of(apps).await {
            Ok(mut queues) => apps
                .iter()
                .map(|id| {
                    let queue = queues.remove(id).unwrap_or_default();
                    let more = queue.len() > 1;
                    Ok((queue.into_iter().next(), more))
                })
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "batched queue read failed; reading one by one");
                let mut answers = Vec::with_capacity(apps.len());
                for &id in apps {
                    answers.push(self.next_task_and_more(id).await);
                }
                answers
            }
        }
    }

    /// The first two unfinished tasks of each of `apps` that has any, in id order.
    async fn unfinished_tasks_of(&self, apps: &[AppId]) -> Result<BTreeMap<AppId, Vec<Task>>> {
        let mut queues: BTreeMap<AppId, Vec<Task>> = BTreeMap::new();
        for chunk in apps.chunks(MAX_OWNER_BATCH) {
            let ids = padded(chunk);
            let sql = format!(
                "SELECT {} FROM tasks WHERE app_id IN ({}) \
                 AND status IN ('PENDING', 'RUNNING') ORDER BY app_id, id",
                task_columns!(),
                marks(ids.len())
            );
            let rows: Vec<TaskRow> = on_pool!(self, db => {
                // Safe: fixed text and placeholders; every value is bound.
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in &ids {
                    query = query.bind(*id);
                }
                query.fetch_all(db).await?
            });
            for row in rows {
                let task = Task::try_from(row)?;
                let queue = queues.entry(task.app_id).or_default();
                if queue.len() < 2 {
                    queue.push(task);
                }
            }
        }
        Ok(queues)
    }

    /// [`Store::adopt_app`] of each of `ids` by `lease`'s session on `host`. The apps are read
    /// together and the free ones (or ours from an older epoch) taken together; an app held by
    /// another node goes through [`Store::adopt_app`], which decides whether to fence it.
    pub async fn adopt_apps(
        &self,
        lease: &NodeLease,
        ids: &[AppId],
        host: Option<&HostId>,
        is_live: impl Fn(&str) -> bool,
    ) -> Vec<Result<Adoption>> {
        let mut answers: Vec<Option<Result<Adoption>>> = ids.iter().map(|_| None).collect();
        if ids.len() > 1 && matches!(self.pool, Pool::MySql(_)) {
            if let Err(error) = self.adopt_together(lease, ids, host, &mut answers).await {
                tracing::debug!(%error, "batched adoption failed; adopting one by one");
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for (&id, answer) in ids.iter().zip(answers) {
            out.push(match answer {
                Some(answer) => answer,
                None => self.adopt_app(lease, id, host, &is_live).await,
            });
        }
        out
    }

    /// Answers in `answers` the adoptions decided by one read and one take; leaves the others.
    async fn adopt_together(
        &self,
        lease: &NodeLease,
        ids: &[AppId],
        host: Option<&HostId>,
        answers: &mut [Option<Result<Adoption>>],
    ) -> Result<()> {
        let apps = self.apps_by_id(ids).await?;
        let mut to_take: Vec<(usize, App)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, id) in ids.iter().enumerate() {
            if !seen.insert(*id) {
                continue;
            }
            let Some(app) = apps.get(id) else {
                answers[i] = Some(Ok(Adoption::Gone));
                continue;
            };
            if let Some(pinned) = app.host.as_ref().filter(|pinned| Some(*pinned) != host) {
                answers[i] = Some(Ok(Adoption::OnOtherHost(pinned.clone())));
                continue;
            }
            match &app.lease {
                Some(held) if held == lease => {
                    answers[i] = Some(Ok(Adoption::Adopted(app.clone())))
                }
                // Another node's: whether it is alive decides (the single call).
                Some(held) if held.node_id != lease.node_id => {}
                _ => to_take.push((i, app.clone())),
            }
        }
        if to_take.len() < 2 {
            return Ok(());
        }
        let now = unix_millis();
        for chunk in to_take.chunks(MAX_OWNER_BATCH) {
            let rows = padded(chunk);
            let sql = format!(
                "UPDATE apps a SET a.owner_node = ?, a.owner_epoch = ?, a.version = a.version + 1, \
                 a.updated_at = ? WHERE a.id IN ({}) AND a.version = {} AND EXISTS (SELECT 1 \
                 FROM node_epochs WHERE node_epochs.node_id = ? AND node_epochs.epoch = ?)",
                marks(rows.len()),
                case("a.id", rows.len())
            );
            let mut binds: Vec<Bind> = vec![
                lease.node_id.as_str().into(),
                lease.epoch.into(),
                now.into(),
            ];
            binds.extend(rows.iter().map(|(_, app)| Bind::Int(app.id)));
            for (_, app) in &rows {
                binds.extend([Bind::Int(app.id), Bind::Int(app.version)]);
            }
            binds.extend([lease.node_id.as_str().into(), Bind::Int(lease.epoch)]);
            let changed = self.execute(&sql, binds).await?;
            let taken: BTreeSet<AppId> = if changed == chunk.len() as u64 {
                chunk.iter().map(|(_, app)| app.id).collect()
            } else {
                let now_apps = self
                    .apps_by_id(&chunk.iter().map(|(_, app)| app.id).collect::<Vec<_>>())
                    .await?;
                chunk
                    .iter()
                    .filter(|(_, app)| {
                        now_apps.get(&app.id).is_some_and(|now_app| {
                            now_app.version == app.version + 1
                                && now_app.lease.as_ref() == Some(lease)
                        })
                    })
                    .map(|(_, app)| app.id)
                    .collect()
            };
            for (i, app) in chunk {
                if taken.contains(&app.id) {
                    answers[*i] = Some(Ok(Adoption::Adopted(App {
                        version: app.version + 1,
                        lease: Some(lease.clone()),
                        updated_at: now,
                        ..app.clone()
                    })));
                }
            }
        }
        Ok(())
    }

    /// The apps among `ids` that exist, by id.
    async fn apps_by_id(&self, ids: &[AppId]) -> Result<BTreeMap<AppId, App>> {
        let mut apps = BTreeMap::new();
        for chunk in ids.chunks(MAX_OWNER_BATCH) {
            let ids = padded(chunk);
            let sql = format!(
                "SELECT {} FROM apps WHERE id IN ({})",
                app_columns!(),
                marks(ids.len())
            );
            let rows: Vec<AppRow> = on_pool!(self, db => {
                // Safe: fixed text and placeholders; every value is bound.
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in &ids {
                    query = query.bind(*id);
                }
                query.fetch_all(db).await?
            });
            for row in rows {
                let app = App::try_from(row)?;
                apps.insert(app.id, app);
            }
        }
        Ok(apps)
    }

    /// [`Store::claim_task_of`] of each request by `lease`. On MySQL the claims that can run
    /// on the apps as the caller holds them are one statement (the task and the app of each,
    /// each conditional on its versions, the lease and the fence).
    pub async fn claim_tasks_of(
        &self,
        lease: &NodeLease,
        requests: &[ClaimRequest],
        max_attempts: i64,
    ) -> Vec<Result<Claim>> {
        let mut answers: Vec<Option<Result<Claim>>> = requests.iter().map(|_| None).collect();
        // The requests that went into a statement and were not written: decided afresh.
        let mut lost = BTreeSet::new();
        if requests.len() > 1 && matches!(self.pool, Pool::MySql(_)) {
            let runnable = runnable_claims(lease, requests, max_attempts);
            if runnable.len() > 1 {
                for chunk in runnable.chunks(MAX_OWNER_BATCH) {
                    match self.claim_together(lease, requests, chunk).await {
                        Ok(claimed) => {
                            for (i, claim) in chunk.iter().zip(claimed) {
                                match claim {
                                    Some(claim) => answers[i.index] = Some(Ok(claim)),
                                    None => {
                                        lost.insert(i.index);
                                    }
                                }
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, "batched claim failed; claiming one by one");
                        }
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(requests.len());
        for (i, (request, answer)) in requests.iter().zip(answers).enumerate() {
            let pin = request.pin.as_ref();
            out.push(match answer {
                Some(answer) => answer,
                None if lost.contains(&i) => {
                    self.claim_task(lease, &request.task, max_attempts, pin)
                        .await
                }
                None => {
                    self.claim_task_of(lease, &request.task, &request.app, max_attempts, pin)
                        .await
                }
            });
        }
        out
    }

    /// One statement for `chunk` of `requests`; answers, per entry, the claim if it was
    /// written.
    async fn claim_together(
        &self,
        lease: &NodeLease,
        requests: &[ClaimRequest],
        chunk: &[PlannedClaim],
    ) -> Result<Vec<Option<Claim>>> {
        let now = unix_millis();
        let rows = padded(chunk);
        let n = rows.len();
        let sql = format!(
            "UPDATE tasks t JOIN apps a ON a.id = t.app_id \
             SET t.status = 'RUNNING', t.claimed_by = ?, t.claim_epoch = ?, \
             t.attempts = t.attempts + 1, t.version = t.version + 1, t.updated_at = ?, \
             t.started_at = COALESCE(t.started_at, ?), \
             a.state = {state}, a.host = {host}, a.version = a.version + 1, a.updated_at = ? \
             WHERE t.id IN ({ids}) AND t.version = {task_version} \
             AND t.status IN ('PENDING', 'RUNNING') \
             AND a.id = {app} AND a.version = {app_version} AND {LEASE_AND_FENCE}",
            state = case("a.id", n),
            host = case("a.id", n),
            ids = marks(n),
            task_version = case("t.id", n),
            app = case("t.id", n),
            app_version = case("a.id", n),
        );
        let request = |planned: &PlannedClaim| &requests[planned.index];
        let mut binds: Vec<Bind> = vec![
            lease.node_id.as_str().into(),
            lease.epoch.into(),
            now.into(),
            now.into(),
        ];
        for planned in &rows {
            binds.extend([
                Bind::Int(request(planned).app.id),
                planned.first.as_str().into(),
            ]);
        }
        for planned in &rows {
            let host = planned.host.as_ref().map(|h| h.as_str().to_owned());
            binds.extend([Bind::Int(request(planned).app.id), host.into()]);
        }
        binds.push(now.into());
        binds.extend(
            rows.iter()
                .map(|planned| Bind::Int(request(planned).task.id)),
        );
        for planned in &rows {
            let task = &request(planned).task;
            binds.extend([Bind::Int(task.id), Bind::Int(task.version)]);
        }
        for planned in &rows {
            let r = request(planned);
            binds.extend([Bind::Int(r.task.id), Bind::Int(r.app.id)]);
        }
        for planned in &rows {
            let app = &request(planned).app;
            binds.extend([Bind::Int(app.id), Bind::Int(app.version)]);
        }
        lease_and_fence(lease, &mut binds);
        let changed = self.execute(&sql, binds).await?;
        let written = if changed == 2 * chunk.len() as u64 {
            chunk.iter().map(|_| true).collect()
        } else {
            let ids: Vec<TaskId> = chunk.iter().map(|p| request(p).task.id).collect();
            let now_tasks = self.tasks_by_id(&ids).await?;
            chunk
                .iter()
                .map(|planned| {
                    let task = &request(planned).task;
                    now_tasks.get(&task.id).is_some_and(|t| {
                        t.version == task.version + 1
                            && t.status == TaskStatus::Running
                            && t.claimed_by.as_deref() == Some(lease.node_id.as_str())
                            && t.claim_epoch == Some(lease.epoch)
                    })
                })
                .collect::<Vec<bool>>()
        };
        Ok(chunk
            .iter()
            .zip(written)
            .map(|(planned, written)| {
                written.then(|| {
                    let r = request(planned);
                    Claim::Run {
                        task: claimed(&r.task, lease, now),
                        app: Box::new(App {
                            state: planned.first,
                            host: planned.host.clone(),
                            version: r.app.version + 1,
                            updated_at: now,
                            ..r.app.clone()
                        }),
                        phases: planned.phases,
                    }
                })
            })
            .collect())
    }

    /// [`Store::finish_task`] of each request by `lease`. On MySQL one statement writes them
    /// (each task and app conditional on its versions, the claim, the lease and the fence).
    pub async fn finish_tasks(
        &self,
        lease: &NodeLease,
        requests: &[FinishRequest],
    ) -> Vec<Result<(Task, App)>> {
        let mut answers: Vec<Option<Result<(Task, App)>>> = requests.iter().map(|_| None).collect();
        if requests.len() > 1 && matches!(self.pool, Pool::MySql(_)) {
            let mut seen = BTreeSet::new();
            let distinct: Vec<usize> = (0..requests.len())
                .filter(|&i| {
                    seen.insert(requests[i].app.id) && requests[i].task.app_id == requests[i].app.id
                })
                .collect();
            for chunk in distinct.chunks(MAX_OWNER_BATCH) {
                match self.finish_together(lease, requests, chunk).await {
                    Ok(written) => {
                        for (&i, done) in chunk.iter().zip(written) {
                            answers[i] = done.map(Ok);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "batched outcomes failed; writing one by one");
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(requests.len());
        for (request, answer) in requests.iter().zip(answers) {
            out.push(match answer {
                Some(answer) => answer,
                None => {
                    let FinishRequest {
                        task,
                        app,
                        phase,
                        outcome,
                    } = request;
                    self.finish_task(lease, task, app, *phase, outcome.clone())
                        .await
                }
            });
        }
        out
    }

    /// One statement for the requests at `chunk`; answers, per entry, the rows as written if
    /// they were.
    async fn finish_together(
        &self,
        lease: &NodeLease,
        requests: &[FinishRequest],
        chunk: &[usize],
    ) -> Result<Vec<Option<(Task, App)>>> {
        let now = unix_millis();
        let rows = padded(chunk);
        let n = rows.len();
        let finishes: Vec<Finish> = rows
            .iter()
            .map(|&i| Finish::of(&requests[i].app, requests[i].phase, &requests[i].outcome))
            .collect();
        let sql = format!(
            "UPDATE tasks t JOIN apps a ON a.id = t.app_id \
             SET t.status = {status}, t.error = {error}, t.version = t.version + 1, \
             t.updated_at = ?, t.finished_at = ?, \
             a.state = {state}, a.handle = {handle}, a.last_error = {last_error}, \
             a.host = {host}, a.version = a.version + 1, a.updated_at = ? \
             WHERE t.id IN ({ids}) AND t.version = {task_version} AND t.status = 'RUNNING' \
             AND t.claimed_by = ? AND t.claim_epoch = ? \
             AND a.id = {app} AND a.version = {app_version} AND {LEASE_AND_FENCE}",
            status = case("t.id", n),
            error = case("t.id", n),
            state = case("a.id", n),
            handle = case("a.id", n),
            last_error = case("a.id", n),
            host = case("a.id", n),
            ids = marks(n),
            task_version = case("t.id", n),
            app = case("t.id", n),
            app_version = case("a.id", n),
        );
        let task = |i: usize| &requests[i].task;
        let app = |i: usize| &requests[i].app;
        let mut binds: Vec<Bind> = Vec::new();
        for (&i, finish) in rows.iter().zip(&finishes) {
            binds.extend([Bind::Int(task(i).id), finish.status.as_str().into()]);
        }
        for (&i, finish) in rows.iter().zip(&finishes) {
            binds.extend([Bind::Int(task(i).id), finish.error.clone().into()]);
        }
        binds.extend([Bind::Int(now), Bind::Int(now)]);
        for (&i, finish) in rows.iter().zip(&finishes) {
            binds.extend([Bind::Int(app(i).id), finish.state.as_str().into()]);
        }
        for (&i, finish) in rows.iter().zip(&finishes) {
            let handle = finish.handle.as_ref().map(Value::to_string);
            binds.extend([Bind::Int(app(i).id), handle.into()]);
        }
        for (&i, finish) in rows.iter().zip(&finishes) {
            binds.extend([Bind::Int(app(i).id), finish.last_error.clone().into()]);
        }
        for (&i, finish) in rows.iter().zip(&finishes) {
            let host = finish.host.as_ref().map(|h| h.as_str().to_owned());
            binds.extend([Bind::Int(app(i).id), host.into()]);
        }
        binds.push(now.into());
        binds.extend(rows.iter().map(|&i| Bind::Int(task(i).id)));
        for &i in &rows {
            binds.extend([Bind::Int(task(i).id), Bind::Int(task(i).version)]);
        }
        binds.extend([lease.node_id.as_str().into(), Bind::Int(lease.epoch)]);
        for &i in &rows {
            binds.extend([Bind::Int(task(i).id), Bind::Int(app(i).id)]);
        }
        for &i in &rows {
            binds.extend([Bind::Int(app(i).id), Bind::Int(app(i).version)]);
        }
        lease_and_fence(lease, &mut binds);
        let changed = self.execute(&sql, binds).await?;
        let written: Vec<bool> = if changed == 2 * chunk.len() as u64 {
            chunk.iter().map(|_| true).collect()
        } else {
            let ids: Vec<TaskId> = chunk.iter().map(|&i| task(i).id).collect();
            let now_tasks = self.tasks_by_id(&ids).await?;
            chunk
                .iter()
                .zip(&finishes)
                .map(|(&i, finish)| {
                    now_tasks.get(&task(i).id).is_some_and(|t| {
                        t.version == task(i).version + 1
                            && t.status == finish.status
                            && t.claimed_by.as_deref() == Some(lease.node_id.as_str())
                            && t.claim_epoch == Some(lease.epoch)
                    })
                })
                .collect()
        };
        Ok(chunk
            .iter()
            .zip(finishes)
            .zip(written)
            .map(|((&i, finish), written)| written.then(|| finish.applied(task(i), app(i), now)))
            .collect())
    }

    /// The tasks among `ids` that exist, by id.
    async fn tasks_by_id(&self, ids: &[TaskId]) -> Result<BTreeMap<TaskId, Task>> {
        let mut tasks = BTreeMap::new();
        for chunk in ids.chunks(MAX_OWNER_BATCH) {
            let ids = padded(chunk);
            let sql = format!(
                "SELECT {} FROM tasks WHERE id IN ({})",
                task_columns!(),
                marks(ids.len())
            );
            let rows: Vec<TaskRow> = on_pool!(self, db => {
                // Safe: fixed text and placeholders; every value is bound.
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in &ids {
                    query = query.bind(*id);
                }
                query.fetch_all(db).await?
            });
            for row in rows {
                let task = Task::try_from(row)?;
                tasks.insert(task.id, task);
            }
        }
        Ok(tasks)
    }

    /// Runs a batch statement; answers the rows it changed.
    async fn execute(&self, sql: &str, binds: Vec<Bind>) -> Result<u64> {
        Ok(on_pool!(self, db => {
            // Safe: fixed text and placeholders; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
            for bind in binds {
                query = match bind {
                    Bind::Int(value) => query.bind(value),
                    Bind::Text(value) => query.bind(value),
                };
            }
            query.execute(db).await?.rows_affected()
        }))
    }
}

/// A claim that can go into the batch statement: the request's index, its phases, the app's
/// state and host once claimed.
#[derive(Debug, Clone)]
struct PlannedClaim {
    index: usize,
    phases: &'static [Phase],
    first: AppState,
    host: Option<HostId>,
}

/// The requests [`Store::claim_task_of`] would claim in one statement (the app as the caller
/// holds it, a task that can run on it), each app once.
fn runnable_claims(
    lease: &NodeLease,
    requests: &[ClaimRequest],
    max_attempts: i64,
) -> Vec<PlannedClaim> {
    let mut seen = BTreeSet::new();
    let mut planned = Vec::new();
    for (index, ClaimRequest { task, app, pin }) in requests.iter().enumerate() {
        let reclaim = task.status == TaskStatus::Running;
        let runnable = task.app_id == app.id
            && app.lease.as_ref() == Some(lease)
            && !(reclaim && task.attempts + 1 > max_attempts);
        let Ok(phases) = phases_to_run(app.state, task) else {
            continue;
        };
        if !runnable || !seen.insert(app.id) {
            continue;
        }
        planned.push(PlannedClaim {
            index,
            phases,
            first: phases.first().map_or(app.state, |phase| phase.during()),
            host: host_after_claim(app, phases, pin.as_ref()).cloned(),
        });
    }
    planned
}

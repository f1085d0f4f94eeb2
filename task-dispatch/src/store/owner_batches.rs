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

use super::leases::Adoption;
use super::model::{App, AppId, AppRow, NodeLease, Task, TaskId, TaskRow};
use super::outcomes::Outcome;
use super::{Pool, Store, app_columns, on_pool, task_columns};
use crate::affinity::HostId;
use crate::clock::unix_millis;
use crate::error::Result;
use crate::state::Phase;

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
pub(super) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `CASE {key} WHEN ? THEN ? ... END` with `n` branches.
pub(super) fn case(key: &str, n: usize) -> String {
    format!("CASE {key} {} END", vec!["WHEN ? THEN ?"; n].join(" "))
}

/// The padded length of a list of `len` (at most [`MAX_OWNER_BATCH`]).
pub(super) fn shape(len: usize) -> usize {
    len.next_power_of_two()
}

/// `items` padded to [`shape`] by repeating the last one.
pub(super) fn padded<T: Clone>(items: &[T]) -> Vec<T> {
    let mut out = items.to_vec();
    if let Some(last) = items.last() {
        out.resize(shape(items.len()), last.clone());
    }
    out
}

/// A value bound into a batch statement.
#[derive(Debug, Clone)]
pub(super) enum Bind {
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
pub(super) const LEASE_AND_FENCE: &str = "a.owner_node = ? AND a.owner_epoch = ? AND EXISTS (SELECT 1 \
     FROM node_epochs WHERE node_epochs.node_id = ? AND node_epochs.epoch = ?)";

pub(super) fn lease_and_fence(lease: &NodeLease, binds: &mut Vec<Bind>) {
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
        if ids.len() > 1
            && matches!(self.pool, Pool::MySql(_))
            && let Err(error) = self.adopt_together(lease, ids, host, &mut answers).await
        {
            tracing::debug!(%error, "batched adoption failed; adopting one by one");
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

    /// The tasks among `ids` that exist, by id.
    pub(super) async fn tasks_by_id(&self, ids: &[TaskId]) -> Result<BTreeMap<TaskId, Task>> {
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
    pub(super) async fn execute(&self, sql: &str, binds: Vec<Bind>) -> Result<u64> {
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

//! Claims and outcomes of many apps in one statement (issue 15; see `owner_batches.rs` for the
//! guarantees): on MySQL one multi-table `UPDATE` per batch whose `WHERE` keeps, row by row, the
//! task's and the app's versions, the claim, the lease and the fence.

use std::collections::BTreeSet;

use serde_json::Value;

use super::claims::{Claim, claimed, host_after_claim, phases_to_run};
use super::model::{App, NodeLease, Task, TaskId, TaskStatus};
use super::outcomes::Finish;
use super::owner_batches::{
    Bind, ClaimRequest, FinishRequest, LEASE_AND_FENCE, MAX_OWNER_BATCH, case, lease_and_fence,
    marks, padded,
};
use super::{Pool, Store};
use crate::affinity::HostId;
use crate::clock::unix_millis;
use crate::error::Result;
use crate::state::{AppState, Phase};

impl Store {
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

//! Savepoint operations of the `flink` executor: a stop with a savepoint, and a savepoint of a
//! running job (`POST /api/v1/apps/{id}/savepoint`, kind `manual`).
//!
//! Each trigger carries an id derived from the app, the task and the number of earlier tries in
//! this run ([`FlinkExecutor::trigger_id_for`]), never from the task's attempt: a task re-run
//! after its owner died asks Flink for the same operation again, and Flink answers with the
//! first run's result instead of taking a second savepoint (Flink keeps an operation's result for
//! `rest.async.store-duration`, 5 minutes by default, and forgets it when its JobManager restarts:
//! a re-run after that takes a new savepoint). A try that failed because the job's
//! tasks were not all running yet is retried with the next id (Flink replays a failed id's
//! failure). A completed savepoint gets its `console.json` note, then the app's savepoints are
//! pruned to the newest `retention`.

use std::time::Duration;

use tokio::time::Instant;

use super::savepoints::{self, SavepointNote};
use super::{FlinkExecutor, flink_error, unix_millis};
use crate::executor::flink::{
    FlinkError, FlinkRestClient, InvalidValue, JobId, SavepointFailureKind, SavepointLocation,
    TriggerId,
};
use crate::executor::{AppRef, ExecutorError, TaskRef};

/// How long a savepoint operation may take, its retries included.
pub(super) const SAVEPOINT_WITHIN: Duration = Duration::from_secs(60);
/// Pause between tries of a savepoint the job's tasks were not all running for yet.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Which savepoint operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    /// Take a savepoint, then end the job (`POST /jobs/{id}/stop`).
    Stop,
    /// Take a savepoint; the job runs on (`POST /jobs/{id}/savepoints`).
    Manual,
}

impl Operation {
    /// The `kind` of the savepoint's note, and the trigger id's derivation label.
    pub(super) const fn kind(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Manual => "manual",
        }
    }
}

impl FlinkExecutor {
    /// The trigger id of try `try_number` (from 0) of `operation` for `app_id`'s task
    /// `task_id`: the same on every node and in every attempt of the task.
    pub(super) fn trigger_id_for(
        &self,
        operation: Operation,
        app_id: i64,
        task_id: i64,
        try_number: u32,
    ) -> TriggerId {
        let parts = format!("{}\n{app_id}\n{task_id}\n{try_number}", operation.kind());
        TriggerId::from_bytes(self.derive(&parts))
    }

    /// Runs `operation` on job `job_id` for `task` and returns the savepoint's location, or
    /// `None` when Flink does not run the job (unknown or already ended).
    ///
    /// # Notable errors
    /// [`ExecutorError::Flink`] when the savepoint failed for another reason than tasks not
    /// running yet, or did not complete within [`SAVEPOINT_WITHIN`].
    pub(super) async fn take_savepoint(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        client: &FlinkRestClient,
        job_id: JobId,
        operation: Operation,
    ) -> Result<Option<SavepointLocation>, ExecutorError> {
        let started = Instant::now();
        let target = self.target_dir(app.id)?;
        for try_number in 0.. {
            let trigger = self.trigger_id_for(operation, app.id, task.id, try_number);
            let remaining = SAVEPOINT_WITHIN.saturating_sub(started.elapsed());
            let triggered = match operation {
                Operation::Stop => {
                    client
                        .stop_with_savepoint(job_id, trigger, target.as_ref(), false)
                        .await
                }
                Operation::Manual => {
                    client
                        .trigger_savepoint(job_id, trigger, target.as_ref())
                        .await
                }
            };
            let done = match triggered {
                Ok(()) => client.await_savepoint(job_id, trigger, remaining).await,
                Err(error) => Err(error),
            };
            match done {
                Ok(location) => {
                    tracing::info!(app_id = app.id, %job_id, %location, kind = operation.kind(), "savepoint taken");
                    self.note_and_prune(app.id, job_id, &location, operation);
                    return Ok(Some(location));
                }
                Err(FlinkError::JobNotFound { .. }) => return Ok(None),
                Err(FlinkError::SavepointFailed { failure, .. })
                    if failure.kind == SavepointFailureKind::TasksNotRunning
                        && started.elapsed() < SAVEPOINT_WITHIN =>
                {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => {
                    return Err(flink_error(format!(
                        "{} savepoint of job {job_id}: {error}",
                        operation.kind()
                    )));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// `<savepoint_dir>/app-<id>` as Flink's target directory, or none (Flink's default).
    fn target_dir(&self, app_id: i64) -> Result<Option<SavepointLocation>, ExecutorError> {
        let Some(dir) = &self.savepoint_dir else {
            return Ok(None);
        };
        savepoints::app_dir(dir, app_id)
            .display()
            .to_string()
            .parse()
            .map(Some)
            .map_err(|error: InvalidValue| flink_error(error.to_string()))
    }

    /// Writes the savepoint's note and keeps the app's newest `retention` savepoints. Best
    /// effort: the savepoint exists whatever happens here.
    fn note_and_prune(
        &self,
        app_id: i64,
        job_id: JobId,
        location: &SavepointLocation,
        operation: Operation,
    ) {
        let Some(dir) = &self.savepoint_dir else {
            return;
        };
        let note = SavepointNote {
            job_id: job_id.to_string(),
            kind: operation.kind().to_owned(),
            created_at: unix_millis(),
        };
        if let Err(error) = savepoints::record(location.as_str(), &note) {
            tracing::warn!(%location, %error, "cannot write the savepoint's note");
        }
        savepoints::prune(dir, app_id, self.retention);
    }
}

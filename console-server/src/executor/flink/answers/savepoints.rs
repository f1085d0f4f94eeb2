//! Decoders of the savepoint calls: trigger, stop, operation status, `/checkpoints`.

use serde::Deserialize;

use super::{Answer, CHECKPOINTS, SAVEPOINT_STATUS, malformed};
use crate::executor::flink::error::{FlinkError, summarize_flink_error};
use crate::executor::flink::ids::{JobId, SavepointLocation, TriggerId};
use crate::executor::flink::model::{
    JobCheckpoints, RestoredCheckpoint, SavepointFailure, SavepointFailureKind, SavepointStatus,
    cut,
};

/// `POST /jobs/{jobid}/stop` and `POST /jobs/{jobid}/savepoints`: 202 `{"request-id": "..."}`
/// naming the trigger id sent. Flink accepts them even for an unknown or finished job; the
/// operation's status then reports [`SavepointFailureKind::JobNotFound`].
pub(in crate::executor::flink) fn savepoint_triggered(
    answer: &Answer,
    call: &'static str,
    job_id: JobId,
    trigger_id: TriggerId,
) -> Result<(), FlinkError> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(rename = "request-id")]
        request_id: TriggerId,
    }
    let wire: Wire = answer.expect(call, 202, |answer| {
        answer
            .job_not_found()
            .then_some(FlinkError::JobNotFound { job_id })
    })?;
    if wire.request_id != trigger_id {
        return Err(malformed(
            call,
            format!("triggered {} instead of {trigger_id}", wire.request_id),
        ));
    }
    Ok(())
}

/// `GET /jobs/{jobid}/savepoints/{triggerid}`: `{"status": {"id": "IN_PROGRESS"}, "operation":
/// null}`, then `COMPLETED` with `{"location": ...}` or `{"failure-cause": {"class", "stack-trace"}}`;
/// 404 for a trigger id Flink does not know.
pub(in crate::executor::flink) fn savepoint_status(
    answer: &Answer,
    job_id: JobId,
    trigger_id: TriggerId,
) -> Result<SavepointStatus, FlinkError> {
    #[derive(Deserialize)]
    struct Wire {
        status: StatusWire,
        operation: Option<OperationWire>,
    }
    #[derive(Deserialize)]
    struct StatusWire {
        id: String,
    }
    #[derive(Deserialize)]
    struct OperationWire {
        location: Option<SavepointLocation>,
        #[serde(rename = "failure-cause")]
        failure_cause: Option<FailureWire>,
    }
    #[derive(Deserialize)]
    struct FailureWire {
        #[serde(rename = "stack-trace")]
        stack_trace: Option<String>,
        class: Option<String>,
    }
    let wire: Wire = answer.expect(SAVEPOINT_STATUS, 200, |answer| {
        if answer.status != 404 {
            None
        } else if answer.errors_mention(&["There is no savepoint operation"]) {
            Some(FlinkError::TriggerNotFound { job_id, trigger_id })
        } else {
            answer
                .job_not_found()
                .then_some(FlinkError::JobNotFound { job_id })
        }
    })?;
    let operation = wire.operation.map(|op| (op.location, op.failure_cause));
    match (wire.status.id.as_str(), operation) {
        ("IN_PROGRESS", _) => Ok(SavepointStatus::InProgress),
        ("COMPLETED", Some((Some(location), None))) => Ok(SavepointStatus::Completed(location)),
        ("COMPLETED", Some((None, Some(failure)))) => {
            let trace = failure.stack_trace.or(failure.class).unwrap_or_default();
            let kind = if trace.contains("FlinkJobNotFoundException") {
                SavepointFailureKind::JobNotFound
            } else if trace.contains("Not all required tasks are currently running") {
                SavepointFailureKind::TasksNotRunning
            } else {
                SavepointFailureKind::Other
            };
            Ok(SavepointStatus::Failed(SavepointFailure {
                kind,
                message: summarize_flink_error(&trace),
            }))
        }
        ("COMPLETED", _) => Err(malformed(
            SAVEPOINT_STATUS,
            "a completed operation needs exactly one of location and failure-cause",
        )),
        (other, _) => Err(malformed(
            SAVEPOINT_STATUS,
            format!("unknown operation status {:?}", cut(other)),
        )),
    }
}

/// `GET /jobs/{jobid}/checkpoints`.
pub(in crate::executor::flink) fn checkpoints(
    answer: &Answer,
    job_id: JobId,
) -> Result<JobCheckpoints, FlinkError> {
    #[derive(Deserialize)]
    struct Wire {
        counts: CountsWire,
        latest: LatestWire,
    }
    #[derive(Deserialize)]
    struct CountsWire {
        completed: u64,
        in_progress: u64,
        failed: u64,
    }
    #[derive(Deserialize)]
    struct LatestWire {
        savepoint: Option<SavepointWire>,
        restored: Option<RestoredWire>,
    }
    #[derive(Deserialize)]
    struct SavepointWire {
        external_path: Option<SavepointLocation>,
    }
    #[derive(Deserialize)]
    struct RestoredWire {
        id: u64,
        is_savepoint: bool,
        external_path: Option<SavepointLocation>,
        restore_timestamp: i64,
    }
    let wire: Wire = answer.expect(CHECKPOINTS, 200, |answer| {
        answer
            .job_not_found()
            .then_some(FlinkError::JobNotFound { job_id })
    })?;
    Ok(JobCheckpoints {
        completed: wire.counts.completed,
        in_progress: wire.counts.in_progress,
        failed: wire.counts.failed,
        restored: wire.latest.restored.map(|restored| RestoredCheckpoint {
            checkpoint_id: restored.id,
            is_savepoint: restored.is_savepoint,
            location: restored.external_path,
            restored_at_ms: restored.restore_timestamp,
        }),
        latest_savepoint: wire
            .latest
            .savepoint
            .and_then(|savepoint| savepoint.external_path),
    })
}

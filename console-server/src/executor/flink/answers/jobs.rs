//! Decoders of the job calls: `/jobs/overview`, `/jobs/{jobid}`, cancel, `/exceptions`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Answer, CANCEL, EXCEPTIONS, JOB, JOBS_OVERVIEW, checked_name, malformed, parsed};
use crate::executor::flink::error::{FlinkError, summarize_flink_error};
use crate::executor::flink::ids::JobId;
use crate::executor::flink::model::{
    CancelOutcome, JobException, JobExceptions, JobInfo, JobState, TaskCounts,
};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct JobWire {
    jid: JobId,
    name: String,
    #[serde(deserialize_with = "parsed")]
    state: JobState,
    start_time: i64,
    end_time: i64,
    /// `/jobs/overview`: lower-case task states and `total`.
    tasks: Option<BTreeMap<String, u32>>,
    /// `/jobs/{id}`: upper-case task states, no total.
    status_counts: Option<BTreeMap<String, u32>>,
}

impl JobWire {
    fn into_info(self, call: &'static str) -> Result<JobInfo, FlinkError> {
        let tasks = match (self.tasks, self.status_counts) {
            (Some(tasks), _) => TaskCounts {
                total: tasks.get("total").copied().unwrap_or_default(),
                running: tasks.get("running").copied().unwrap_or_default(),
                finished: tasks.get("finished").copied().unwrap_or_default(),
                canceled: tasks.get("canceled").copied().unwrap_or_default(),
                failed: tasks.get("failed").copied().unwrap_or_default(),
            },
            (None, Some(counts)) => TaskCounts {
                total: counts.values().sum(),
                running: counts.get("RUNNING").copied().unwrap_or_default(),
                finished: counts.get("FINISHED").copied().unwrap_or_default(),
                canceled: counts.get("CANCELED").copied().unwrap_or_default(),
                failed: counts.get("FAILED").copied().unwrap_or_default(),
            },
            (None, None) => {
                return Err(malformed(
                    call,
                    format!("job {} has no task counts", self.jid),
                ));
            }
        };
        let counted = tasks.running + tasks.finished + tasks.canceled + tasks.failed;
        if counted > tasks.total {
            return Err(malformed(
                call,
                format!("job {} counts more tasks than it has", self.jid),
            ));
        }
        Ok(JobInfo {
            id: self.jid,
            name: checked_name(call, "job name", self.name)?,
            state: self.state,
            started_at_ms: self.start_time,
            ended_at_ms: (self.end_time >= 0).then_some(self.end_time),
            tasks,
        })
    }
}

/// `GET /jobs/overview`: every job the JobManager knows (since it started), in any state.
pub(in crate::executor::flink) fn jobs_overview(
    answer: &Answer,
) -> Result<Vec<JobInfo>, FlinkError> {
    #[derive(Deserialize)]
    struct Wire {
        jobs: Vec<JobWire>,
    }
    let wire: Wire = answer.expect(JOBS_OVERVIEW, 200, |_| None)?;
    let jobs = wire
        .jobs
        .into_iter()
        .map(|job| job.into_info(JOBS_OVERVIEW))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids: Vec<_> = jobs.iter().map(|job| job.id).collect();
    ids.sort_unstable();
    if let Some(twice) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(malformed(
            JOBS_OVERVIEW,
            format!("job {} is listed twice", twice[0]),
        ));
    }
    Ok(jobs)
}

/// `GET /jobs/{jobid}`.
pub(in crate::executor::flink) fn job(
    answer: &Answer,
    job_id: JobId,
) -> Result<JobInfo, FlinkError> {
    let wire: JobWire = answer.expect(JOB, 200, |answer| {
        answer
            .job_not_found()
            .then_some(FlinkError::JobNotFound { job_id })
    })?;
    if wire.jid != job_id {
        return Err(malformed(
            JOB,
            format!("asked for job {job_id}, got {}", wire.jid),
        ));
    }
    wire.into_info(JOB)
}

/// `PATCH /jobs/{jobid}?mode=cancel`: 202 `{}` (also for a job already `CANCELED`), 409 for a job
/// that ended otherwise, 404 for an unknown job.
pub(in crate::executor::flink) fn cancel(
    answer: &Answer,
    job_id: JobId,
) -> Result<CancelOutcome, FlinkError> {
    match answer.status {
        202 => Ok(CancelOutcome::Requested),
        409 if answer.errors_mention(&["already reached another terminal state"]) => {
            Ok(CancelOutcome::AlreadyTerminated)
        }
        _ if answer.job_not_found() => Err(FlinkError::JobNotFound { job_id }),
        _ => Err(answer.http_error(CANCEL)),
    }
}

/// `GET /jobs/{jobid}/exceptions`.
pub(in crate::executor::flink) fn exceptions(
    answer: &Answer,
    job_id: JobId,
) -> Result<JobExceptions, FlinkError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        exception_history: HistoryWire,
    }
    #[derive(Deserialize)]
    struct HistoryWire {
        entries: Vec<EntryWire>,
        truncated: bool,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct EntryWire {
        exception_name: String,
        stacktrace: String,
        timestamp: i64,
        task_name: Option<String>,
    }
    let wire: Wire = answer.expect(EXCEPTIONS, 200, |answer| {
        answer
            .job_not_found()
            .then_some(FlinkError::JobNotFound { job_id })
    })?;
    let entries = wire
        .exception_history
        .entries
        .into_iter()
        .map(|entry| {
            Ok(JobException {
                class: checked_name(EXCEPTIONS, "exceptionName", entry.exception_name)?,
                root_cause: summarize_flink_error(&entry.stacktrace),
                at_ms: entry.timestamp,
                task: entry.task_name,
            })
        })
        .collect::<Result<_, FlinkError>>()?;
    Ok(JobExceptions {
        entries,
        truncated: wire.exception_history.truncated,
    })
}

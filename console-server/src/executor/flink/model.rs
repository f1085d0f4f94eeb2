//! What the client sends to Flink and what it makes of Flink's answers: checked values only (the
//! decoding and checking is in `answers.rs`).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use super::ids::{JarId, JobId, SavepointLocation};

/// The status of a Flink job (Flink's `JobStatus`), as `/jobs/overview` and `/jobs/{id}` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Initializing,
    Created,
    Running,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
    Restarting,
    Suspended,
    Reconciling,
}

impl JobState {
    const ALL: [Self; 11] = [
        Self::Initializing,
        Self::Created,
        Self::Running,
        Self::Failing,
        Self::Failed,
        Self::Cancelling,
        Self::Canceled,
        Self::Finished,
        Self::Restarting,
        Self::Suspended,
        Self::Reconciling,
    ];

    /// Flink's name of the state: `"RUNNING"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "INITIALIZING",
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Failing => "FAILING",
            Self::Failed => "FAILED",
            Self::Cancelling => "CANCELLING",
            Self::Canceled => "CANCELED",
            Self::Finished => "FINISHED",
            Self::Restarting => "RESTARTING",
            Self::Suspended => "SUSPENDED",
            Self::Reconciling => "RECONCILING",
        }
    }

    /// Whether the job has ended for good: `FAILED`, `CANCELED` or `FINISHED` (a stop with
    /// savepoint ends in `FINISHED`). `SUSPENDED` is not: an HA JobManager resumes such a job.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Canceled | Self::Finished)
    }
}

impl FromStr for JobState {
    type Err = String;

    /// Flink's upper-case names only; anything else is refused (an unknown state is never
    /// guessed to be alive or dead).
    fn from_str(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
            .ok_or_else(|| format!("unknown job state {:?}", cut(value)))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many of a job's tasks (subtasks of all its vertices) are in which state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskCounts {
    pub total: u32,
    pub running: u32,
    pub finished: u32,
    pub canceled: u32,
    pub failed: u32,
}

impl TaskCounts {
    /// Whether every task runs. A job is `RUNNING` as soon as it is scheduled, before its tasks
    /// are; Flink refuses a savepoint until they all run ("Not all required tasks are currently
    /// running"), so wait for this first.
    pub fn all_running(&self) -> bool {
        self.total > 0 && self.running == self.total
    }
}

/// One job as `/jobs/overview` (one entry) or `/jobs/{id}` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    /// When Flink accepted the job, in ms since the epoch.
    pub started_at_ms: i64,
    /// When the job reached a terminal state, if it did.
    pub ended_at_ms: Option<i64>,
    pub tasks: TaskCounts,
}

/// The cluster as `/overview` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOverview {
    pub task_managers: u32,
    pub slots_total: u32,
    pub slots_available: u32,
    pub jobs_running: u32,
    pub flink_version: String,
}

/// A jar as `/jars` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedJar {
    pub id: JarId,
    /// The file name it was uploaded with.
    pub name: String,
    pub uploaded_at_ms: i64,
    /// The entry classes Flink found (the manifest's `Main-Class`, if any).
    pub entry_classes: Vec<String>,
}

/// What to run from an uploaded jar (`POST /jars/{id}/run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSubmission {
    /// The job's id, chosen by the caller: Flink refuses a second run with the same id, which is
    /// what makes a retried submission safe.
    pub job_id: JobId,
    /// The class with `main`; `None` uses the jar's `Main-Class`.
    pub entry_class: Option<String>,
    /// The program's arguments (`programArgsList`; Flink 2 has no `programArgs` string any more
    /// and silently ignores it).
    pub args: Vec<String>,
    /// `None` uses the cluster's `parallelism.default`.
    pub parallelism: Option<NonZeroU32>,
    /// A savepoint (or retained checkpoint) to restore the job's state from.
    pub restore_from: Option<SavepointLocation>,
    /// Whether state in the savepoint that maps to no operator of the job is skipped (`true`) or
    /// makes the run fail (`false`, Flink's default).
    pub allow_non_restored_state: bool,
}

impl JobSubmission {
    /// A run of the jar's `Main-Class` with no arguments, the default parallelism and no restore.
    pub fn new(job_id: JobId) -> Self {
        Self {
            job_id,
            entry_class: None,
            args: Vec::new(),
            parallelism: None,
            restore_from: None,
            allow_non_restored_state: false,
        }
    }
}

/// What `PATCH /jobs/{id}?mode=cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Flink accepted the cancellation (HTTP 202); the job becomes `CANCELED` shortly. Also the
    /// answer for a job that is already `CANCELED`.
    Requested,
    /// The job had already ended otherwise (`FINISHED` or `FAILED`; Flink answers HTTP 409).
    AlreadyTerminated,
}

/// The state of a savepoint operation (`GET /jobs/{id}/savepoints/{triggerId}`), for a savepoint
/// triggered while running and for a stop with savepoint alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointStatus {
    InProgress,
    /// The savepoint is written (a stop's job then ends `FINISHED`).
    Completed(SavepointLocation),
    /// The operation ended without a savepoint; the job runs on unless the failure says it is gone.
    Failed(SavepointFailure),
}

/// Why a savepoint operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavepointFailure {
    pub kind: SavepointFailureKind,
    /// The deepest cause Flink names, e.g. `org.apache.flink.runtime.checkpoint.CheckpointException:
    /// Checkpoint triggering task Source: ticks (1/1) of job … is not being executed at the moment. …`.
    pub message: String,
}

impl fmt::Display for SavepointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The failures a caller acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavepointFailureKind {
    /// The job is not (or no longer) running on this cluster: `FlinkJobNotFoundException`, also
    /// for a stop or savepoint of a job that has already `FINISHED`.
    JobNotFound,
    /// Not all of the job's tasks run yet (just submitted, or restarting). Worth another try with
    /// a new trigger id.
    TasksNotRunning,
    /// Anything else (a full disk, an unwritable target directory, a declined checkpoint, ...).
    Other,
}

/// A job's checkpoint statistics (`GET /jobs/{id}/checkpoints`): what it was restored from and
/// its latest savepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCheckpoints {
    pub completed: u64,
    pub in_progress: u64,
    pub failed: u64,
    /// The checkpoint or savepoint the job's state was restored from (`latest.restored`), if any.
    pub restored: Option<RestoredCheckpoint>,
    /// Where the job's latest completed savepoint is (`latest.savepoint.external_path`).
    pub latest_savepoint: Option<SavepointLocation>,
}

/// `latest.restored` of a job's checkpoint statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredCheckpoint {
    pub checkpoint_id: u64,
    pub is_savepoint: bool,
    /// Where the restored state was (`external_path`); `None` for state that has no location.
    pub location: Option<SavepointLocation>,
    pub restored_at_ms: i64,
}

/// A job's exception history (`GET /jobs/{id}/exceptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobExceptions {
    /// As Flink lists them; Flink keeps a bounded number (`truncated` says some were dropped).
    pub entries: Vec<JobException>,
    pub truncated: bool,
}

impl JobExceptions {
    /// The most recent failure, the one that ended (or last restarted) the job.
    pub fn latest(&self) -> Option<&JobException> {
        self.entries.iter().max_by_key(|entry| entry.at_ms)
    }
}

/// One failure of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobException {
    /// The exception's class, e.g. `org.apache.flink.runtime.JobException`.
    pub class: String,
    /// The deepest cause in the stack trace, the line a person wants:
    /// `java.nio.file.NoSuchFileException: /nonexistent/dir/out.txt`.
    pub root_cause: String,
    pub at_ms: i64,
    /// The task that failed, when the failure came from one.
    pub task: Option<String>,
}

/// A value from an answer, cut for an error message.
pub(super) fn cut(value: &str) -> String {
    value.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_are_flinks_names_and_nothing_else() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("running".parse::<JobState>().is_err());
        assert!("LOST".parse::<JobState>().is_err());
        let terminal: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|state| state.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [JobState::Failed, JobState::Canceled, JobState::Finished]
        );
    }

    #[test]
    fn all_running_needs_at_least_one_task() {
        assert!(!TaskCounts::default().all_running());
        let counts = TaskCounts {
            total: 2,
            running: 1,
            ..TaskCounts::default()
        };
        assert!(!counts.all_running());
        assert!(
            TaskCounts {
                running: 2,
                ..counts
            }
            .all_running()
        );
    }
}

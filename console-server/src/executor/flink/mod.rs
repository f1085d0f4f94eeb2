//! A typed client of Flink's REST API: what the `flink` executor (issue 13) uses to run, watch,
//! savepoint, stop and restore jobs on a Flink session cluster.
//!
//! - [`FlinkRestClient`] (`rest.rs`): one method per REST call, each with a timeout
//!   ([`Timeouts`], `transport.rs`), returning checked values (`model.rs`, `ids.rs`) or a
//!   [`FlinkError`].
//! - `answers.rs`: what each answer means, from (HTTP status, body) to a value or a typed error;
//!   tested against answers recorded from a real Flink 2.3 cluster (`testdata/record.sh`).
//!
//! # What Flink 2.3 answers in the edge cases (recorded; the executor relies on these)
//! | situation | Flink's answer | here |
//! |---|---|---|
//! | run with a job id Flink already has (running or ended) | 400 `DuplicateApplicationSubmissionException` | [`FlinkError::JobAlreadyExists`] |
//! | run of a jar that is not uploaded | **500** `Jar file ... does not exist` | [`FlinkError::JarNotFound`] |
//! | `main` throws | 400, the exception as deepest cause | [`FlinkError::Http`] |
//! | `GET /jobs/{id}`, `/checkpoints`, `/exceptions`, cancel of an unknown job | 404 | [`FlinkError::JobNotFound`] |
//! | cancel of a `CANCELED` job | 202 | [`CancelOutcome::Requested`] |
//! | cancel of a `FINISHED` or `FAILED` job | 409 | [`CancelOutcome::AlreadyTerminated`] |
//! | stop or savepoint of an unknown or ended job | 202, then status `COMPLETED` with `FlinkJobNotFoundException` | [`SavepointFailureKind::JobNotFound`] |
//! | stop or savepoint before all tasks run | 202, then `COMPLETED` with `Not all required tasks are currently running` (the job runs on) | [`SavepointFailureKind::TasksNotRunning`] |
//! | status of an unknown trigger id | 404 `There is no savepoint operation` | [`FlinkError::TriggerNotFound`] |
//! | a trigger id used again (even after it failed) | 202, nothing new starts; the status stays the first result | — |
//! | a restarted JobManager (no HA) | its jobs and triggers are unknown (404); jars in a fixed `web.upload.dir` stay | — |

mod answers;
mod error;
mod ids;
mod model;
mod rest;
mod transport;

pub use error::FlinkError;
pub use ids::{InvalidValue, JarId, JobId, SavepointLocation, TriggerId};
pub use model::{
    CancelOutcome, ClusterOverview, JobCheckpoints, JobException, JobExceptions, JobInfo, JobState,
    JobSubmission, RestoredCheckpoint, SavepointFailure, SavepointFailureKind, SavepointStatus,
    TaskCounts, UploadedJar,
};
pub use rest::FlinkRestClient;
pub use transport::Timeouts;

const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<FlinkRestClient>();
    assert_send_sync::<FlinkError>();
};

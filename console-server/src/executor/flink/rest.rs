//! [`FlinkRestClient`]: the calls to one Flink cluster's REST API, each with a short timeout.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::answers;
use super::error::FlinkError;
use super::ids::{JarId, JobId, SavepointLocation, TriggerId};
use super::model::{
    CancelOutcome, ClusterOverview, JobCheckpoints, JobExceptions, JobInfo, JobSubmission,
    SavepointFailureKind, SavepointStatus, UploadedJar,
};
use super::transport::Timeouts;

/// A client of one Flink cluster's REST API (a session cluster, e.g. the one `deploy/flink.sh
/// start` runs on `http://127.0.0.1:8081`).
///
/// Cheap to clone (the connection pool is shared). Every answer is checked before it is returned
/// (see [`FlinkError::MalformedAnswer`]); every call has a timeout ([`Timeouts`]).
///
/// # Cancellation safety
/// Dropping a call's future abandons the request; like a timeout, Flink may still carry it out.
/// Every call that changes something can be repeated safely: runs carry the caller's job id,
/// savepoint operations the caller's trigger id, and a cancel of a cancelled job is accepted.
#[derive(Debug, Clone)]
pub struct FlinkRestClient {
    pub(super) base: Url,
    pub(super) http: reqwest::Client,
    pub(super) timeouts: Timeouts,
}

impl FlinkRestClient {
    /// A client of the REST API at `rest_url` (`http://host:port`, optionally with a path prefix)
    /// with the default [`Timeouts`].
    ///
    /// # Notable errors
    /// [`FlinkError::InvalidUrl`] for anything but an absolute `http`/`https` URL with a host and
    /// without query, fragment or credentials.
    pub fn new(rest_url: &str) -> Result<Self, FlinkError> {
        Self::with_timeouts(rest_url, Timeouts::default())
    }

    /// Like [`FlinkRestClient::new`], with the given timeouts.
    pub fn with_timeouts(rest_url: &str, timeouts: Timeouts) -> Result<Self, FlinkError> {
        let invalid = |reason: &str| FlinkError::InvalidUrl {
            url: rest_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(rest_url).map_err(|error| invalid(&error.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(invalid("must be an http:// or https:// URL with a host"));
        }
        if base.query().is_some() || base.fragment().is_some() || base.password().is_some() {
            return Err(invalid("must not have a query, a fragment or credentials"));
        }
        if base.cannot_be_a_base() {
            return Err(invalid("cannot be a base URL"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .build()
            .map_err(|error| invalid(&error.to_string()))?;
        Ok(Self {
            base,
            http,
            timeouts,
        })
    }

    /// The REST URL this client talks to.
    pub fn rest_url(&self) -> &Url {
        &self.base
    }

    /// `GET /overview`: task managers, slots, running jobs, Flink's version.
    pub async fn cluster_overview(&self) -> Result<ClusterOverview, FlinkError> {
        let answer = self.get(answers::OVERVIEW, &["overview"]).await?;
        answers::cluster_overview(&answer)
    }

    /// `POST /jars/upload`: uploads the jar at `path` (multipart field `jarfile`) and returns the
    /// id Flink gave it. Every upload makes a new id, even of the same file.
    ///
    /// # Notable errors
    /// [`FlinkError::JarFile`] when `path` cannot be read.
    pub async fn upload_jar(&self, path: &Path) -> Result<JarId, FlinkError> {
        let jar_file = |reason: String| FlinkError::JarFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|error| jar_file(error.to_string()))?;
        // Flink keeps uploads as `<uuid>_<file name>` and takes only names ending in `.jar`.
        let stem: String = path
            .file_stem()
            .map(|stem| stem.to_string_lossy())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        let file_name = format!("{}.jar", if stem.is_empty() { "job" } else { &stem });
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name)
            .mime_str("application/x-java-archive")
            .map_err(|error| jar_file(error.to_string()))?;
        let form = reqwest::multipart::Form::new().part("jarfile", part);
        let request = self
            .request(Method::POST, &["jars", "upload"])
            .multipart(form);
        let answer = self
            .send(answers::UPLOAD, request, self.timeouts.upload)
            .await?;
        answers::upload_jar(&answer)
    }

    /// `GET /jars`: the jars uploaded to this JobManager's upload directory.
    pub async fn jars(&self) -> Result<Vec<UploadedJar>, FlinkError> {
        let answer = self.get(answers::JARS, &["jars"]).await?;
        answers::jars(&answer)
    }

    /// `POST /jars/{jarid}/run`: runs the program, which submits the job with
    /// `submission.job_id`, and returns that id once Flink has accepted the job (it is then
    /// `INITIALIZING`, `CREATED` or `RUNNING`; its tasks start shortly after).
    ///
    /// # Notable errors
    /// [`FlinkError::JobAlreadyExists`] (nothing was started), [`FlinkError::JarNotFound`],
    /// [`FlinkError::Http`] with the program's exception when `main` fails (status 400).
    pub async fn run_jar(
        &self,
        jar_id: &JarId,
        submission: &JobSubmission,
    ) -> Result<JobId, FlinkError> {
        let mut body = json!({
            "jobId": submission.job_id,
            "programArgsList": submission.args,
            "allowNonRestoredState": submission.allow_non_restored_state,
        });
        if let Some(entry_class) = &submission.entry_class {
            let valid = !entry_class.is_empty()
                && entry_class
                    .chars()
                    .all(|c| c.is_alphanumeric() || "._$".contains(c));
            if !valid {
                return Err(FlinkError::InvalidRequest {
                    reason: format!("entry class {entry_class:?} is not a Java class name"),
                });
            }
            body["entryClass"] = json!(entry_class);
        }
        if let Some(parallelism) = submission.parallelism {
            body["parallelism"] = json!(parallelism.get());
        }
        if let Some(savepoint) = &submission.restore_from {
            body["savepointPath"] = json!(savepoint.as_str());
        }
        let request = self
            .request(Method::POST, &["jars", jar_id.as_str(), "run"])
            .json(&body);
        let answer = self.send(answers::RUN, request, self.timeouts.run).await?;
        answers::run_jar(&answer, jar_id, submission.job_id)
    }

    /// `GET /jobs/overview`: every job this JobManager knows, running or ended since it started,
    /// in one call (what a monitor polls, whatever the number of jobs).
    pub async fn jobs_overview(&self) -> Result<Vec<JobInfo>, FlinkError> {
        let answer = self
            .get(answers::JOBS_OVERVIEW, &["jobs", "overview"])
            .await?;
        answers::jobs_overview(&answer)
    }

    /// `GET /jobs/{jobid}`.
    pub async fn job(&self, job_id: JobId) -> Result<JobInfo, FlinkError> {
        let answer = self
            .get(answers::JOB, &["jobs", &job_id.to_string()])
            .await?;
        answers::job(&answer, job_id)
    }

    /// `PATCH /jobs/{jobid}?mode=cancel`: cancels the job without a savepoint. Returns at once;
    /// the job is `CANCELED` shortly after (0.1-0.6 s for the example job).
    pub async fn cancel_job(&self, job_id: JobId) -> Result<CancelOutcome, FlinkError> {
        let mut url = self.url(&["jobs", &job_id.to_string()]);
        url.set_query(Some("mode=cancel"));
        let request = self.http.request(Method::PATCH, url);
        let answer = self
            .send(answers::CANCEL, request, self.timeouts.call)
            .await?;
        answers::cancel(&answer, job_id)
    }

    /// `POST /jobs/{jobid}/stop`: takes a savepoint and then finishes the job (`drain` first
    /// emits end-of-input, which ends event-time windows: not what a restart wants). Returns once
    /// Flink has accepted the operation; follow it with [`FlinkRestClient::await_savepoint`].
    ///
    /// `target_directory` defaults to the cluster's `execution.checkpointing.savepoint-dir`.
    pub async fn stop_with_savepoint(
        &self,
        job_id: JobId,
        trigger_id: TriggerId,
        target_directory: Option<&SavepointLocation>,
        drain: bool,
    ) -> Result<(), FlinkError> {
        let mut body = json!({ "triggerId": trigger_id, "drain": drain });
        if let Some(directory) = target_directory {
            body["targetDirectory"] = json!(directory.as_str());
        }
        self.savepoint_operation(answers::STOP, "stop", job_id, trigger_id, body)
            .await
    }

    /// `POST /jobs/{jobid}/savepoints`: takes a savepoint of a running job, which runs on. Returns
    /// once Flink has accepted the operation; follow it with [`FlinkRestClient::await_savepoint`].
    pub async fn trigger_savepoint(
        &self,
        job_id: JobId,
        trigger_id: TriggerId,
        target_directory: Option<&SavepointLocation>,
    ) -> Result<(), FlinkError> {
        let mut body = json!({ "triggerId": trigger_id, "cancel-job": false });
        if let Some(directory) = target_directory {
            body["target-directory"] = json!(directory.as_str());
        }
        self.savepoint_operation(answers::TRIGGER, "savepoints", job_id, trigger_id, body)
            .await
    }

    async fn savepoint_operation(
        &self,
        call: &'static str,
        path: &str,
        job_id: JobId,
        trigger_id: TriggerId,
        body: Value,
    ) -> Result<(), FlinkError> {
        let request = self
            .request(Method::POST, &["jobs", &job_id.to_string(), path])
            .json(&body);
        let answer = self.send(call, request, self.timeouts.call).await?;
        answers::savepoint_triggered(&answer, call, job_id, trigger_id)
    }

    /// `GET /jobs/{jobid}/savepoints/{triggerid}`: the state of a savepoint or stop operation.
    ///
    /// # Notable errors
    /// [`FlinkError::TriggerNotFound`] for a trigger id Flink does not know (any more).
    pub async fn savepoint_status(
        &self,
        job_id: JobId,
        trigger_id: TriggerId,
    ) -> Result<SavepointStatus, FlinkError> {
        let path = [
            "jobs",
            &job_id.to_string(),
            "savepoints",
            &trigger_id.to_string(),
        ];
        let answer = self.get(answers::SAVEPOINT_STATUS, &path).await?;
        answers::savepoint_status(&answer, job_id, trigger_id)
    }

    /// Polls [`FlinkRestClient::savepoint_status`] until the operation has completed, for at most
    /// `within`, and returns the savepoint's location.
    ///
    /// # Notable errors
    /// [`FlinkError::SavepointFailed`]; [`FlinkError::JobNotFound`] when the failure is that the
    /// job is not running (unknown, or already ended); [`FlinkError::SavepointPending`] after
    /// `within`; an error of a poll as it is (the operation may go on regardless).
    pub async fn await_savepoint(
        &self,
        job_id: JobId,
        trigger_id: TriggerId,
        within: Duration,
    ) -> Result<SavepointLocation, FlinkError> {
        let started = Instant::now();
        loop {
            match self.savepoint_status(job_id, trigger_id).await? {
                SavepointStatus::Completed(location) => return Ok(location),
                SavepointStatus::Failed(failure)
                    if failure.kind == SavepointFailureKind::JobNotFound =>
                {
                    return Err(FlinkError::JobNotFound { job_id });
                }
                SavepointStatus::Failed(failure) => {
                    return Err(FlinkError::SavepointFailed {
                        job_id,
                        trigger_id,
                        failure,
                    });
                }
                SavepointStatus::InProgress if started.elapsed() >= within => {
                    return Err(FlinkError::SavepointPending {
                        job_id,
                        trigger_id,
                        waited: started.elapsed(),
                    });
                }
                SavepointStatus::InProgress => {
                    tokio::time::sleep(self.timeouts.poll_interval).await
                }
            }
        }
    }

    /// `GET /jobs/{jobid}/checkpoints`: among others, the savepoint the job was restored from.
    pub async fn checkpoints(&self, job_id: JobId) -> Result<JobCheckpoints, FlinkError> {
        let path = ["jobs", &job_id.to_string(), "checkpoints"];
        let answer = self.get(answers::CHECKPOINTS, &path).await?;
        answers::checkpoints(&answer, job_id)
    }

    /// `GET /jobs/{jobid}/exceptions`: why the job failed or restarted.
    pub async fn exceptions(&self, job_id: JobId) -> Result<JobExceptions, FlinkError> {
        let path = ["jobs", &job_id.to_string(), "exceptions"];
        let answer = self.get(answers::EXCEPTIONS, &path).await?;
        answers::exceptions(&answer, job_id)
    }
}

#[cfg(test)]
mod tests;

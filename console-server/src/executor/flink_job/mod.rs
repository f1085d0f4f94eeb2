//! The `flink` executor (issue 13): an app is one job on a Flink session cluster, reached over
//! REST from any console node, so an app fails over between nodes on any hosts.
//!
//! - **One job per app, across retries and failover.** A start submits with a job id derived
//!   from the cluster, the app and the start task ([`FlinkExecutor::job_id_for`]); Flink refuses
//!   a second job with that id, and a start re-run after its owner died finds the job by that
//!   id and adopts it. Savepoint triggers carry ids derived the same way.
//! - **Stop** takes a savepoint into `<savepoint_dir>/app-<id>/` and ends the job;
//!   **savepoint** (a `savepoint` task) takes one there while the job runs on; a **start**
//!   restores the newest savepoint there; only the newest `retention` are kept (`trigger.rs`).
//! - **Probe** reads `GET /jobs/overview` at most once per [`OVERVIEW_TTL`] for all the apps of a
//!   cluster. RUNNING, INITIALIZING, CREATED, RESTARTING (and the transient FAILING,
//!   CANCELLING, RECONCILING) are alive; FAILED, CANCELED, FINISHED and a job Flink no longer
//!   knows are dead, with the reason; Flink unreachable is unknown, never dead.
//! - A handle names its cluster: one that is neither `executors.flink.rest_url` nor the app's
//!   `spec.rest_url` is never called (a handle comes from the database: no request to an
//!   address someone wrote there).

mod jars;
pub mod savepoints;
mod spec;
mod trigger;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::flink::{
    FlinkError, FlinkRestClient, JobId, JobInfo, JobState, JobSubmission, SavepointLocation,
};
use super::{AppRef, Executor, ExecutorError, Handle, Liveness, TaskRef};
use crate::config::FlinkConfig;
pub use spec::FlinkSpec;

/// How long one `/jobs/overview` answer serves probes: about one monitor tick.
pub const OVERVIEW_TTL: Duration = Duration::from_millis(500);
/// How long a stop waits for the job to end (after its savepoint, or after a cancel).
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// Where a `flink` app runs: `{"executor":"flink","job_id","rest_url","restored_from"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlinkHandle {
    pub job_id: String,
    pub rest_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FlinkExecutor {
    default_url: String,
    salt: String,
    savepoint_dir: Option<PathBuf>,
    retention: usize,
    clients: std::sync::Mutex<HashMap<String, FlinkRestClient>>,
    jars: jars::JarCache,
    /// The last `/jobs/overview` answer (or failure) per cluster, and when it came.
    overviews: tokio::sync::Mutex<HashMap<String, Overview>>,
    /// `console_flink_overview_calls_total`: every `GET /jobs/overview` this executor made.
    overview_calls: Counter,
}

/// A `/jobs/overview` answer (or its failure) and when it came.
type Overview = (Instant, Result<Vec<JobInfo>, FlinkError>);

/// What a stored handle names, as far as this executor may act on it.
enum Seen {
    Usable(FlinkRestClient, JobId),
    /// A cluster this executor is not configured for.
    Foreign(String),
    /// Not a flink handle, or a broken one.
    Invalid(String),
}

impl FlinkExecutor {
    /// The executor of `config` (whose `rest_url` is set); `salt` (the cluster id) makes its job
    /// ids differ from another console cluster's on the same Flink.
    ///
    /// # Notable errors
    /// [`ExecutorError::Setup`] naming `executors.flink.rest_url` when it is not usable.
    pub fn new(config: &FlinkConfig, salt: &str) -> Result<Self, ExecutorError> {
        let executor = Self {
            default_url: config.rest_url.clone(),
            salt: salt.to_owned(),
            savepoint_dir: (!config.savepoint_dir.is_empty())
                .then(|| PathBuf::from(&config.savepoint_dir)),
            retention: usize::try_from(config.retention)
                .unwrap_or(usize::MAX)
                .max(1),
            clients: std::sync::Mutex::default(),
            jars: jars::JarCache::default(),
            overviews: tokio::sync::Mutex::default(),
            overview_calls: Counter::default(),
        };
        executor
            .client(&config.rest_url)
            .map_err(|error| ExecutorError::Setup {
                what: "executors.flink.rest_url".to_owned(),
                reason: error.to_string(),
            })?;
        Ok(executor)
    }

    /// Counts this executor's `GET /jobs/overview` calls in `counter` (the node's
    /// `console_flink_overview_calls_total`) instead of a counter of its own.
    #[must_use]
    pub fn with_overview_counter(mut self, counter: Counter) -> Self {
        self.overview_calls = counter;
        self
    }

    /// How many `GET /jobs/overview` calls this executor made.
    #[cfg(test)]
    pub(crate) fn overview_calls(&self) -> u64 {
        self.overview_calls.get()
    }

    /// The job id of `app`'s start task `task_id`: the same on every node of the cluster.
    pub fn job_id_for(&self, app_id: i64, task_id: i64) -> JobId {
        JobId::from_bytes(self.derive(&format!("job\n{app_id}\n{task_id}")))
    }

    fn derive(&self, parts: &str) -> [u8; 16] {
        let digest = Sha256::digest(format!("console-server flink\n{}\n{parts}", self.salt));
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes
    }

    fn client(&self, url: &str) -> Result<FlinkRestClient, FlinkError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(client) = clients.get(url) {
            return Ok(client.clone());
        }
        let client = FlinkRestClient::new(url)?;
        clients.insert(url.to_owned(), client.clone());
        Ok(client)
    }

    /// The cluster `spec` runs on: its `rest_url`, or the configured one.
    fn url_of<'a>(&'a self, spec: &'a serde_json::Value) -> &'a str {
        spec.get("rest_url")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&self.default_url)
    }

    /// The client and job of `handle`, for a call that acts on the job.
    ///
    /// # Notable errors
    /// The refusal [`ExecutorError::Undetermined`] for a cluster this node does not use;
    /// [`ExecutorError::InvalidHandle`].
    fn usable(
        &self,
        app: &AppRef<'_>,
        handle: &Handle,
    ) -> Result<(FlinkRestClient, JobId), ExecutorError> {
        match self.see(app, handle) {
            Seen::Usable(client, job_id) => Ok((client, job_id)),
            Seen::Foreign(url) => Err(undetermined(format!(
                "the job runs on Flink cluster {url}, which this node does not use"
            ))),
            Seen::Invalid(reason) => Err(ExecutorError::InvalidHandle { reason }),
        }
    }

    fn see(&self, app: &AppRef<'_>, handle: &Handle) -> Seen {
        let Handle::Flink(flink) = handle else {
            return Seen::Invalid(format!("not a flink handle: {handle:?}"));
        };
        let job_id: JobId = match flink.job_id.parse() {
            Ok(id) => id,
            Err(error) => return Seen::Invalid(error.to_string()),
        };
        if flink.rest_url != self.default_url && flink.rest_url != self.url_of(app.spec) {
            return Seen::Foreign(flink.rest_url.clone());
        }
        match self.client(&flink.rest_url) {
            Ok(client) => Seen::Usable(client, job_id),
            Err(error) => Seen::Invalid(error.to_string()),
        }
    }

    /// The job's state from a fresh enough `/jobs/overview` of its cluster, else (a job newer
    /// than the answer, or one Flink forgot) from `/jobs/{id}`. A failed overview call is
    /// remembered as long as an answer would be: while Flink is unreachable, every probe of the
    /// window answers that error (unknown), with no call of its own.
    async fn job_state(
        &self,
        client: &FlinkRestClient,
        job_id: JobId,
    ) -> Result<JobInfo, FlinkError> {
        let url = client.rest_url().to_string();
        let overview = {
            // One caller fetches while the others wait for its answer.
            let mut overviews = self.overviews.lock().await;
            match overviews.get(&url) {
                Some((at, answer)) if at.elapsed() <= OVERVIEW_TTL => answer.clone(),
                _ => {
                    self.overview_calls.inc();
                    let answer = client.jobs_overview().await;
                    overviews.insert(url, (Instant::now(), answer.clone()));
                    answer
                }
            }
        };
        match overview?.into_iter().find(|job| job.id == job_id) {
            Some(job) => Ok(job),
            None => client.job(job_id).await,
        }
    }

    async fn death_reason(&self, client: &FlinkRestClient, job: &JobInfo) -> String {
        let mut reason = format!("Flink job {} is {}", job.id, job.state.as_str());
        if job.state == JobState::Failed
            && let Ok(exceptions) = client.exceptions(job.id).await
            && let Some(latest) = exceptions.latest()
        {
            reason.push_str(&format!(": {}", latest.root_cause));
        }
        reason
    }

    fn newest_savepoint(&self, app_id: i64) -> Option<SavepointLocation> {
        let dir = self.savepoint_dir.as_ref()?;
        let newest = savepoints::list(dir, app_id).into_iter().next()?;
        newest.location.parse().ok()
    }

    /// Waits until the job has ended (or Flink forgot it).
    async fn until_ended(
        &self,
        client: &FlinkRestClient,
        job_id: JobId,
        within: Duration,
    ) -> Result<(), ExecutorError> {
        let started = Instant::now();
        loop {
            match client.job(job_id).await {
                Ok(job) if job.state.is_terminal() => return Ok(()),
                Err(FlinkError::JobNotFound { .. }) => return Ok(()),
                Ok(job) if started.elapsed() >= within => {
                    return Err(flink_error(format!(
                        "job {job_id} still {} after {within:?}",
                        job.state.as_str()
                    )));
                }
                Err(error) if started.elapsed() >= within => {
                    return Err(flink_error(error.to_string()));
                }
                _ => tokio::time::sleep(trigger::RETRY_PAUSE).await,
            }
        }
    }
}

#[async_trait]
impl Executor for FlinkExecutor {
    fn name(&self) -> &'static str {
        "flink"
    }

    fn validate_spec(&self, spec: &serde_json::Value) -> Result<(), ExecutorError> {
        FlinkSpec::parse(spec).map(drop)
    }

    async fn start(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        previous: Option<&Handle>,
    ) -> Result<Handle, ExecutorError> {
        let spec = FlinkSpec::parse(app.spec)?;
        if let Some(previous) = previous {
            match self.see(app, previous) {
                Seen::Foreign(url) => {
                    return Err(undetermined(format!(
                        "the previous job runs on Flink cluster {url}, which this node does not use"
                    )));
                }
                Seen::Invalid(reason) => {
                    return Err(undetermined(format!(
                        "the previous handle cannot be used: {reason}"
                    )));
                }
                Seen::Usable(client, job_id) => match client.job(job_id).await {
                    Ok(job) if !job.state.is_terminal() => return Ok(previous.clone()),
                    Ok(_) | Err(FlinkError::JobNotFound { .. }) => {}
                    Err(error) => {
                        return Err(undetermined(format!(
                            "cannot read the previous job {job_id}: {error}"
                        )));
                    }
                },
            }
        }
        let url = self.url_of(app.spec).to_owned();
        let client = self
            .client(&url)
            .map_err(|error| flink_error(error.to_string()))?;
        let job_id = self.job_id_for(app.id, task.id);
        let handle = |restored_from: Option<String>| {
            Handle::Flink(FlinkHandle {
                job_id: job_id.to_string(),
                rest_url: url.clone(),
                restored_from,
            })
        };
        match client.job(job_id).await {
            Ok(job) if !job.state.is_terminal() => {
                tracing::info!(app_id = app.id, %job_id, "adopting the job this start task submitted before");
                return Ok(handle(None));
            }
            Ok(job) => {
                return Err(flink_error(format!(
                    "job {job_id} of this start task already ran and is {}; submit a new start",
                    job.state.as_str()
                )));
            }
            Err(FlinkError::JobNotFound { .. }) => {}
            Err(error) => return Err(flink_error(format!("cannot reach Flink at {url}: {error}"))),
        }
        let restore = match task.params.and_then(|params| params.get("restore")) {
            None => self.newest_savepoint(app.id),
            Some(serde_json::Value::String(none)) if none == "none" => None,
            Some(serde_json::Value::String(location)) => Some(location.parse().map_err(
                |error: super::flink::InvalidValue| ExecutorError::InvalidSpec {
                    reason: format!("restore: {error}"),
                },
            )?),
            Some(other) => {
                return Err(ExecutorError::InvalidSpec {
                    reason: format!(
                        "restore must be \"none\" or a savepoint location, got {other}"
                    ),
                });
            }
        };
        let submission = JobSubmission {
            entry_class: spec.entry_class.clone(),
            args: spec.args.clone(),
            parallelism: spec.parallelism,
            restore_from: restore.clone(),
            ..JobSubmission::new(job_id)
        };
        let mut jar = self.jars.jar_id(&client, &spec.jar, false).await?;
        for first in [true, false] {
            match client.run_jar(&jar, &submission).await {
                Ok(_) => {
                    tracing::info!(app_id = app.id, %job_id, restored_from = ?restore.as_ref().map(SavepointLocation::as_str), "Flink job submitted");
                    return Ok(handle(restore.map(|location| location.as_str().to_owned())));
                }
                // Another node's run of this task won the race: the job is the one to adopt.
                Err(FlinkError::JobAlreadyExists { .. }) => return Ok(handle(None)),
                Err(FlinkError::JarNotFound { .. }) if first => {
                    jar = self.jars.jar_id(&client, &spec.jar, true).await?;
                }
                Err(error) => return Err(flink_error(format!("submitting job {job_id}: {error}"))),
            }
        }
        unreachable!("the second try returns")
    }

    async fn stop(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        handle: &Handle,
    ) -> Result<(), ExecutorError> {
        let (client, job_id) = self.usable(app, handle)?;
        match client.job(job_id).await {
            Ok(job) if job.state.is_terminal() => Ok(()),
            Err(FlinkError::JobNotFound { .. }) => Ok(()),
            Ok(_) if wants_savepoint(task) => {
                let started = Instant::now();
                let taken = self
                    .take_savepoint(app, task, &client, job_id, trigger::Operation::Stop)
                    .await?;
                match taken {
                    Some(_) => {
                        let remaining = STOP_WITHIN.saturating_sub(started.elapsed());
                        self.until_ended(&client, job_id, remaining).await
                    }
                    // The job ended meanwhile: stopped.
                    None => Ok(()),
                }
            }
            Ok(_) => {
                // `{"savepoint": false}`: cancel, no savepoint.
                client
                    .cancel_job(job_id)
                    .await
                    .map_err(|error| flink_error(format!("cancel of job {job_id}: {error}")))?;
                tracing::info!(app_id = app.id, %job_id, "cancelled without a savepoint, as asked");
                self.until_ended(&client, job_id, STOP_WITHIN).await
            }
            Err(error) => Err(flink_error(format!("cannot read job {job_id}: {error}"))),
        }
    }

    fn takes_savepoints(&self) -> bool {
        true
    }

    async fn savepoint(
        &self,
        app: &AppRef<'_>,
        task: TaskRef<'_>,
        handle: &Handle,
    ) -> Result<String, ExecutorError> {
        let (client, job_id) = self.usable(app, handle)?;
        let taken = self
            .take_savepoint(app, task, &client, job_id, trigger::Operation::Manual)
            .await?;
        taken
            .map(|location| location.as_str().to_owned())
            .ok_or_else(|| {
                flink_error(format!(
                    "job {job_id} does not run (Flink does not know it, or it ended): no savepoint taken"
                ))
            })
    }

    async fn probe(&self, app: &AppRef<'_>, handle: &Handle) -> Liveness {
        let (client, job_id) = match self.see(app, handle) {
            Seen::Usable(client, job_id) => (client, job_id),
            Seen::Foreign(url) => {
                return Liveness::Unknown {
                    reason: format!(
                        "the job runs on Flink cluster {url}, which this node does not use"
                    ),
                };
            }
            Seen::Invalid(reason) => {
                return Liveness::Unknown {
                    reason: format!("invalid handle: {reason}"),
                };
            }
        };
        match self.job_state(&client, job_id).await {
            Ok(job) if job.state == JobState::Suspended => Liveness::Unknown {
                reason: format!("Flink job {job_id} is SUSPENDED (its JobManager lost leadership)"),
            },
            Ok(job) if !job.state.is_terminal() => Liveness::Alive,
            Ok(job) => Liveness::Dead {
                reason: self.death_reason(&client, &job).await,
            },
            Err(FlinkError::JobNotFound { .. }) => {
                let newest = self
                    .newest_savepoint(app.id)
                    .map_or_else(|| "none".to_owned(), |at| at.as_str().to_owned());
                Liveness::Dead {
                    reason: format!(
                        "Flink no longer knows job {job_id} (its JobManager restarted without HA?); newest savepoint: {newest}"
                    ),
                }
            }
            Err(error) => Liveness::Unknown {
                reason: format!("Flink: {error}"),
            },
        }
    }
}

/// Whether a stop takes a savepoint: unless the request said `{"savepoint": false}`.
fn wants_savepoint(task: TaskRef<'_>) -> bool {
    task.params
        .and_then(|params| params.get("savepoint"))
        .and_then(serde_json::Value::as_bool)
        != Some(false)
}

fn undetermined(reason: String) -> ExecutorError {
    ExecutorError::Undetermined { reason }
}

fn flink_error(reason: String) -> ExecutorError {
    ExecutorError::Flink { reason }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests;

//! The executor conformance kit (`executor/kit/`) against the `flink` executor and the shared
//! Flink session cluster (`CONSOLE_TEST_FLINK_URL`, `deploy/flink.sh start`), with the example
//! job. Jobs are counted from `GET /jobs/overview`, not through the executor.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{FlinkExecutor, FlinkHandle};
use crate::config::FlinkConfig;
use crate::executor::flink::{FlinkRestClient, JobId};
use crate::executor::kit::Target;
use crate::executor::{AppRef, Executor, Handle};

/// The kit's apps have ids 1 to 8 and start tasks 1 to 4.
const KIT_APPS: i64 = 8;
const KIT_TASKS: i64 = 4;

#[derive(Debug)]
struct FlinkTarget {
    dir: tempfile::TempDir,
    client: FlinkRestClient,
    executor: FlinkExecutor,
}

impl FlinkTarget {
    /// The ids of the jobs the kit's start tasks of `app_id` may have submitted.
    fn job_ids(&self, app_id: i64) -> Vec<JobId> {
        (1..=KIT_TASKS)
            .map(|task| self.executor.job_id_for(app_id, task))
            .collect()
    }

    async fn live_jobs(&self, app_id: i64) -> Result<Vec<JobId>, String> {
        let ours = self.job_ids(app_id);
        let jobs = self
            .client
            .jobs_overview()
            .await
            .map_err(|error| error.to_string())?;
        Ok(jobs
            .into_iter()
            .filter(|job| ours.contains(&job.id) && !job.state.is_terminal())
            .map(|job| job.id)
            .collect())
    }
}

#[async_trait]
impl Target for FlinkTarget {
    async fn create() -> Result<Self, String> {
        let url = test_support::flink::rest_url();
        let client = FlinkRestClient::new(&url).map_err(|error| error.to_string())?;
        client.cluster_overview().await.map_err(|error| {
            format!(
                "Flink at {url} does not answer ({error}); {}",
                test_support::flink::HOW_TO_START
            )
        })?;
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let config = FlinkConfig {
            rest_url: url,
            savepoint_dir: dir.path().join("savepoints").display().to_string(),
            retention: 2,
        };
        let salt = uuid::Uuid::new_v4().to_string();
        let executor = FlinkExecutor::new(&config, &salt).map_err(|error| error.to_string())?;
        Ok(Self {
            dir,
            client,
            executor,
        })
    }

    fn executor(&self) -> &dyn Executor {
        &self.executor
    }

    fn long_running_spec(&self) -> Value {
        let output = self
            .dir
            .path()
            .join(format!("out-{}.txt", uuid::Uuid::new_v4()));
        json!({
            "jar": test_support::flink::example_jar(),
            "args": ["--output", output],
        })
    }

    async fn copies(&self, app: &AppRef<'_>) -> Result<usize, String> {
        self.live_jobs(app.id).await.map(|jobs| jobs.len())
    }

    async fn kill_behind_the_back(&self, app: &AppRef<'_>) -> Result<(), String> {
        for job in self.live_jobs(app.id).await? {
            self.client
                .cancel_job(job)
                .await
                .map_err(|error| error.to_string())?;
        }
        crate::executor::kit::until_no_copies(self, app).await
    }

    fn foreign(&self, handle: &Handle) -> Handle {
        let Handle::Flink(flink) = handle else {
            panic!("not a flink handle: {handle:?}");
        };
        Handle::Flink(FlinkHandle {
            rest_url: "http://flink.elsewhere.example:8081".to_owned(),
            ..flink.clone()
        })
    }

    fn undeterminable(&self, handle: &Handle) -> Handle {
        let Handle::Flink(flink) = handle else {
            panic!("not a flink handle: {handle:?}");
        };
        Handle::Flink(FlinkHandle {
            job_id: "not-a-job-id".to_owned(),
            ..flink.clone()
        })
    }

    fn settle(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn destroy(&self) {
        for app in 1..=KIT_APPS {
            for job in self.live_jobs(app).await.unwrap_or_default() {
                let _ = self.client.cancel_job(job).await;
            }
        }
    }
}

mod flink_conformance {
    crate::executor::kit::executor_conformance_tests!(super::FlinkTarget);
}

//! The executor conformance kit (`executor/kit/`) against the `flink` executor and the shared
//! Flink session cluster (`CONSOLE_TEST_FLINK_URL`, `deploy/flink.sh start`), with the example
//! job. Jobs are counted from `GET /jobs/overview`, not through the executor.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{FlinkExecutor, FlinkHandle, savepoints};
use crate::config::FlinkConfig;
use crate::executor::flink::{FlinkRestClient, JobId};
use crate::executor::kit::{CaseResult, Context, KitApp, Target, ensure, run_case, task};
use crate::executor::{AppRef, Executor, Handle, Liveness, TaskRef};

/// The kit's apps (and this module's own cases) have ids 1 to 10 and start tasks 1 to 4.
const KIT_APPS: i64 = 10;
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

/// Manual savepoints are noted `manual` and listed newest first; retention keeps the newest two;
/// a stop's savepoint is the newest then, and the next start restores it, as Flink's own
/// `GET /jobs/{id}/checkpoints` of the new job says (`latest.restored`). The monitor's probes of
/// the app share `GET /jobs/overview` calls (at most one per [`super::OVERVIEW_TTL`]).
async fn savepoints_are_noted_pruned_and_restored(
    target: std::sync::Arc<FlinkTarget>,
) -> CaseResult {
    let app = KitApp::new(&*target, 10);
    let executor = &target.executor;
    let dir = target.dir.path().join("savepoints");
    let handle = executor
        .start(&app.as_ref(), task(1), None)
        .await
        .context("start")?;
    let probes_from = tokio::time::Instant::now();
    let calls_before = executor.overview_calls();
    for _ in 0..10 {
        ensure(
            executor.probe(&app.as_ref(), &handle).await.is_alive(),
            || "the running job probed not alive".to_owned(),
        )?;
    }
    let calls = executor.overview_calls() - calls_before;
    let bound = 1 + probes_from.elapsed().as_millis() / super::OVERVIEW_TTL.as_millis();
    ensure(u128::from(calls) <= bound, || {
        format!(
            "10 probes made {calls} overview calls, more than one per {:?}",
            super::OVERVIEW_TTL
        )
    })?;
    let mut taken = Vec::new();
    for task_id in [11, 12, 13] {
        let location = executor
            .savepoint(&app.as_ref(), task(task_id), &handle)
            .await
            .context(format!("savepoint of task {task_id}"))?;
        taken.push(location);
    }
    let listed = savepoints::list(&dir, app.id);
    let locations: Vec<&str> = listed.iter().map(|s| s.location.as_str()).collect();
    ensure(locations == [taken[2].as_str(), taken[1].as_str()], || {
        format!("retention 2 after savepoints {taken:?} listed {listed:?}")
    })?;
    let Handle::Flink(flink) = &handle else {
        unreachable!("a flink start answers a flink handle")
    };
    ensure(
        listed
            .iter()
            .all(|s| s.kind == "manual" && s.job_id.as_deref() == Some(flink.job_id.as_str())),
        || format!("notes: {listed:?}"),
    )?;

    executor
        .stop(&app.as_ref(), task(14), &handle)
        .await
        .context("stop with a savepoint")?;
    let listed = savepoints::list(&dir, app.id);
    ensure(
        listed.len() == 2 && listed[0].kind == "stop" && listed[1].location == taken[2],
        || format!("after the stop: {listed:?}"),
    )?;

    let restarted = executor
        .start(&app.as_ref(), task(2), Some(&handle))
        .await
        .context("the start after the stop")?;
    let Handle::Flink(restored) = &restarted else {
        unreachable!("a flink start answers a flink handle")
    };
    ensure(
        restored.restored_from.as_deref() == Some(listed[0].location.as_str()),
        || {
            format!(
                "the start restored {:?}, not the newest {}",
                restored.restored_from, listed[0].location
            )
        },
    )?;
    let job_id = restored
        .job_id
        .parse::<JobId>()
        .map_err(|error| error.to_string())
        .context("job id")?;
    let checkpoints = target
        .client
        .checkpoints(job_id)
        .await
        .map_err(|error| error.to_string())
        .context("GET /jobs/{id}/checkpoints")?;
    let named = checkpoints.restored.as_ref().is_some_and(|restored| {
        restored.is_savepoint
            && restored.location.as_ref().map(|l| l.as_str()) == Some(listed[0].location.as_str())
    });
    ensure(named, || {
        format!(
            "Flink says the job restored {:?}, not the savepoint {}",
            checkpoints.restored, listed[0].location
        )
    })?;
    let cancel = serde_json::json!({"savepoint": false});
    let stop = TaskRef {
        params: Some(&cancel),
        ..task(15)
    };
    executor
        .stop(&app.as_ref(), stop, &restarted)
        .await
        .context("cancel")?;
    ensure(savepoints::list(&dir, app.id).len() == 2, || {
        "a cancel took a savepoint".to_owned()
    })
}

#[test]
fn flink_savepoints_are_noted_pruned_and_restored() {
    run_case::<FlinkTarget, _, _>(
        "savepoints_are_noted_pruned_and_restored",
        savepoints_are_noted_pruned_and_restored,
    );
}

/// Flink unreachable is unknown, never dead, and the probes of one window share one failed
/// `GET /jobs/overview` instead of calling again each.
#[tokio::test]
async fn an_unreachable_flink_is_unknown_and_asked_once_per_window() {
    let config = FlinkConfig {
        rest_url: format!("http://127.0.0.1:{}", test_support::ports::free_port()),
        savepoint_dir: String::new(),
        retention: 1,
    };
    let executor = FlinkExecutor::new(&config, "salt").unwrap();
    let spec = json!({});
    let app = AppRef {
        id: 1,
        name: "a",
        spec: &spec,
    };
    let handle = Handle::Flink(FlinkHandle {
        job_id: executor.job_id_for(1, 1).to_string(),
        rest_url: config.rest_url.clone(),
        restored_from: None,
    });
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        let liveness = executor.probe(&app, &handle).await;
        assert!(matches!(liveness, Liveness::Unknown { .. }), "{liveness:?}");
    }
    let bound = 1 + started.elapsed().as_millis() / super::OVERVIEW_TTL.as_millis();
    assert!(
        u128::from(executor.overview_calls()) <= bound,
        "{} calls for 5 probes in {:?}",
        executor.overview_calls(),
        started.elapsed()
    );
}

//! `flink` apps through real `console-server` nodes and real Flink session clusters (issue 13).
//!
//! | module | scenario |
//! |---|---|
//! | `failover` | the shared cluster (`CONSOLE_TEST_FLINK_URL`, `deploy/flink.sh start`), both registries: the owner of a running job is SIGKILLed and the next owner adopts the same job (never a second one); a savepoint of the running job (`POST .../savepoint`); a stop takes a savepoint and the next start restores it, as Flink's own `GET /jobs/{id}/checkpoints` says, so the example job's counter continues; a cancel and a fresh start |
//! | `jobmanager_lost` | a private cluster ([`test_support::flink::PrivateFlink`]) whose JobManager is SIGKILLed: the app is unknown (still RUNNING) while Flink does not answer, FAILED naming the newest savepoint once the restarted Flink does not know the job, and a start restores that savepoint |
//!
//! "One job" is checked from the job's own output: the example job appends `key=k0 count=N
//! seq=S` lines to its `--output` file, and two jobs of the app would both write there, so the
//! sequence numbers would repeat. Durations are printed as `measured:` lines (`--nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod failover;
mod jobmanager_lost;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster_tests::api::Body;
use cluster_tests::{Cluster, Id, Options, RegistryKind};
use serde_json::{Value, json};
use test_support::wait::eventually;

/// How long a job may take to reach a state, a failover included.
const SETTLE: Duration = Duration::from_secs(90);

/// A cluster of `nodes` on `kind` whose `flink` executor uses `flink_url` and keeps savepoints
/// under `<dir>/savepoints`; with the spec of an app of the example job that writes to the
/// answered path (`<dir>/counter.txt`).
async fn flink_cluster(
    kind: RegistryKind,
    nodes: usize,
    flink_url: &str,
    dir: &Path,
) -> (Cluster, Value, PathBuf) {
    let savepoint_dir = dir.join("savepoints");
    let output = dir.join("counter.txt");
    let cluster = Cluster::start(
        Options::new(kind, nodes)
            .env("CONSOLE__EXECUTORS__FLINK__REST_URL", flink_url)
            .env(
                "CONSOLE__EXECUTORS__FLINK__SAVEPOINT_DIR",
                &savepoint_dir.display().to_string(),
            ),
    )
    .await;
    let spec = json!({
        "jar": test_support::flink::example_jar(),
        "args": ["--output", output],
        "parallelism": 1,
    });
    (cluster, spec, output)
}

/// `GET <flink_url>/<path>` as JSON.
async fn flink_get(flink_url: &str, path: &str) -> Result<Value, String> {
    let url = format!("{flink_url}/{path}");
    reqwest::get(&url)
        .await
        .map_err(|error| error.to_string())?
        .json()
        .await
        .map_err(|error| format!("{url}: {error}"))
}

/// The state of job `job_id` on Flink, or why it could not be read.
async fn job_state(flink_url: &str, job_id: &str) -> Result<String, String> {
    let body = flink_get(flink_url, &format!("jobs/{job_id}")).await?;
    body["state"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no state in {body}"))
}

/// Checks, with Flink's own `GET /jobs/{id}/checkpoints`, that job `job_id` was restored from
/// the savepoint at `location` (`latest.restored`: `is_savepoint` and `external_path`).
async fn assert_restored_from(flink_url: &str, job_id: &str, location: &Value) {
    let checkpoints = flink_get(flink_url, &format!("jobs/{job_id}/checkpoints"))
        .await
        .unwrap();
    let restored = &checkpoints["latest"]["restored"];
    assert_eq!(
        (&restored["is_savepoint"], &restored["external_path"]),
        (&json!(true), location),
        "Flink's checkpoint statistics of job {job_id} name what it restored: {checkpoints}"
    );
}

/// Waits until the app is `state` with a live owner that adopted it; returns the app.
async fn app_in(cluster: &Cluster, node: usize, id: &Id, state: &str) -> cluster_tests::App {
    let api = cluster.api(node);
    let live = cluster.live_ids();
    eventually(
        &format!("app {id} is {state}, adopted by a live owner"),
        SETTLE,
        || async {
            let app = api.app(id).await?;
            let adopted = app.owner.is_some() && app.owner == app.adopted_by;
            let live_owner = app.owner.as_ref().is_some_and(|owner| live.contains(owner));
            if app.state == state && adopted && live_owner {
                Ok(app)
            } else {
                Err(format!("{app:?}"))
            }
        },
    )
    .await
}

/// Submits `action` through node `node` and waits until the app is `state`.
async fn act(
    cluster: &Cluster,
    node: usize,
    id: &Id,
    action: &str,
    state: &str,
) -> cluster_tests::App {
    cluster.api(node).submit(id, action).await.unwrap();
    app_in(cluster, node, id, state).await
}

/// `POST /api/v1/apps/{id}/{action}` with a JSON body through node `node`, expecting 202.
async fn act_with(cluster: &Cluster, node: usize, id: &Id, action: &str, body: Value) {
    let answer = cluster
        .api(node)
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/apps/{id}/{action}"),
            Body::Json(body),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{action}: {answer}");
}

/// Waits until task `task_id` has finished; panics unless it SUCCEEDED.
async fn task_succeeded(cluster: &Cluster, node: usize, task_id: &Id) {
    let task = cluster.api(node).finished_task(task_id, SETTLE).await;
    assert_eq!(task.status, "SUCCEEDED", "{task:?}");
}

/// `GET /api/v1/apps/{id}/savepoints` through node `node`.
async fn savepoints(cluster: &Cluster, node: usize, id: &Id) -> Vec<Value> {
    let answer = cluster
        .api(node)
        .get(&format!("/api/v1/apps/{id}/savepoints"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer}");
    answer.body.as_array().cloned().unwrap_or_default()
}

fn job_id(app: &cluster_tests::App) -> String {
    app.handle
        .as_ref()
        .and_then(|h| h["job_id"].as_str())
        .expect("a job id in the handle")
        .to_owned()
}

//! `flink` apps through real `console-server` nodes and the shared Flink session cluster
//! (`CONSOLE_TEST_FLINK_URL`, `deploy/flink.sh start`), issue 13: the owner of a running job is
//! SIGKILLed and the next owner adopts the same job (never a second one); a stop takes a
//! savepoint, and the next start restores it, so the example job's counter continues.
//!
//! "One job" is checked from the job's own output: the example job appends `key=k0 count=N
//! seq=S` lines to its `--output` file, and two jobs of the app would both write there, so the
//! sequence numbers would repeat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster_tests::api::Body;
use cluster_tests::{Cluster, Id, Options, RegistryKind};
use serde_json::{Value, json};
use test_support::flink::counter_lines;
use test_support::wait::eventually;

/// How long a job may take to reach a state, a failover included.
const SETTLE: Duration = Duration::from_secs(90);

/// The state of job `job_id` on Flink, or why it could not be read.
async fn job_state(job_id: &str) -> Result<String, String> {
    let url = format!("{}/jobs/{job_id}", test_support::flink::rest_url());
    let body: Value = reqwest::get(&url)
        .await
        .map_err(|error| error.to_string())?
        .json()
        .await
        .map_err(|error| error.to_string())?;
    body["state"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no state in {body}"))
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

fn job_id(app: &cluster_tests::App) -> String {
    app.handle
        .as_ref()
        .and_then(|h| h["job_id"].as_str())
        .expect("a job id in the handle")
        .to_owned()
}

async fn flink_job_survives_failover_and_restores_its_savepoint(kind: RegistryKind) {
    let flink_url = test_support::flink::rest_url();
    reqwest::get(format!("{flink_url}/overview"))
        .await
        .unwrap_or_else(|error| {
            panic!(
                "Flink at {flink_url} does not answer ({error}); {}",
                test_support::flink::HOW_TO_START
            )
        });
    let dir = tempfile::tempdir().unwrap();
    let savepoints = dir.path().join("savepoints");
    let output = dir.path().join("counter.txt");
    let mut cluster = Cluster::start(
        Options::new(kind, 3)
            .env("CONSOLE__EXECUTORS__FLINK__REST_URL", &flink_url)
            .env(
                "CONSOLE__EXECUTORS__FLINK__SAVEPOINT_DIR",
                &savepoints.display().to_string(),
            ),
    )
    .await;
    let spec = json!({
        "jar": test_support::flink::example_jar(),
        "args": ["--output", output],
        "parallelism": 1,
    });
    let created = cluster
        .api(0)
        .create_app("counter", "flink", spec)
        .await
        .unwrap();
    let submitted = std::time::Instant::now();
    cluster.api(0).submit(&created.id, "start").await.unwrap();
    let running = app_in(&cluster, 0, &created.id, "RUNNING").await;
    let first_job = job_id(&running);
    eventually("the job writes its counter", SETTLE, || async {
        counter_lines(&output).len() >= 3
    })
    .await;
    eprintln!(
        "measured: {kind:?} flink: 202 -> counter written {} ms",
        submitted.elapsed().as_millis()
    );

    // SIGKILL the owner: the next owner adopts the same job.
    let owner = running.owner.clone().unwrap();
    let victim = (0..cluster.len())
        .find(|i| cluster.node(*i).id == owner)
        .unwrap();
    let survivor = (victim + 1) % cluster.len();
    let killed = cluster.kill(victim).await;
    let adopted = app_in(&cluster, survivor, &created.id, "RUNNING").await;
    eprintln!(
        "measured: {kind:?} flink: SIGKILL of {owner} -> adopted by {:?} {} ms",
        adopted.owner,
        killed.elapsed().as_millis()
    );
    assert_ne!(adopted.owner.as_deref(), Some(owner.as_str()));
    assert_eq!(
        job_id(&adopted),
        first_job,
        "the new owner adopted the same job"
    );
    assert_eq!(job_state(&first_job).await.unwrap(), "RUNNING");
    let before = counter_lines(&output).len();
    eventually("the adopted job goes on counting", SETTLE, || async {
        counter_lines(&output).len() > before + 2
    })
    .await;

    // Stop with a savepoint, then start: the counter continues from the savepoint.
    act(&cluster, survivor, &created.id, "stop", "STOPPED").await;
    let answer = cluster
        .api(survivor)
        .get(&format!("/api/v1/apps/{}/savepoints", created.id))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let listed = answer.body.as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["kind"], "stop");
    assert_eq!(listed[0]["job_id"], first_job.as_str());
    let at_stop = counter_lines(&output);
    let last = *at_stop.last().unwrap();

    cluster
        .api(survivor)
        .submit(&created.id, "start")
        .await
        .unwrap();
    let restarted = app_in(&cluster, survivor, &created.id, "RUNNING").await;
    let second_job = job_id(&restarted);
    assert_ne!(second_job, first_job, "a new start task, a new job");
    assert_eq!(
        restarted.handle.as_ref().unwrap()["restored_from"],
        listed[0]["location"],
        "the start restored the newest savepoint"
    );
    eventually("the restored job writes", SETTLE, || async {
        counter_lines(&output).len() > at_stop.len()
    })
    .await;
    let lines = counter_lines(&output);
    let (count, seq) = lines[at_stop.len()];
    assert!(
        count > 1 && count <= last.0 + 1 && seq <= last.1 + 1,
        "the restored job's first line {count}/{seq} continues from the savepoint (the last line before the stop was {last:?}), not from the start"
    );
    // One writer at every moment: the sequence numbers never repeat, except the few the
    // restored job writes again after its savepoint (it resumes from the savepoint's state).
    let before_restore: Vec<u64> = lines[..at_stop.len()].iter().map(|(_, seq)| *seq).collect();
    assert!(
        before_restore.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "two jobs wrote at once before the stop: {before_restore:?}"
    );

    // `{"savepoint": false}` cancels without a savepoint; `{"restore": "none"}` starts afresh.
    let cancel = cluster
        .api(survivor)
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/apps/{}/stop", created.id),
            Body::Json(json!({"savepoint": false})),
        )
        .await
        .unwrap();
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    app_in(&cluster, survivor, &created.id, "STOPPED").await;
    let listed = cluster
        .api(survivor)
        .get(&format!("/api/v1/apps/{}/savepoints", created.id))
        .await
        .unwrap();
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(1),
        "no savepoint for a cancel: {:?}",
        listed.body
    );
    let before_fresh = counter_lines(&output).len();
    let fresh = cluster
        .api(survivor)
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/apps/{}/start", created.id),
            Body::Json(json!({"restore": "none"})),
        )
        .await
        .unwrap();
    assert_eq!(fresh.status, 202, "{:?}", fresh.body);
    let fresh_app = app_in(&cluster, survivor, &created.id, "RUNNING").await;
    assert!(
        fresh_app
            .handle
            .as_ref()
            .unwrap()
            .get("restored_from")
            .is_none(),
        "{:?}",
        fresh_app.handle
    );
    eventually("the fresh job writes", SETTLE, || async {
        counter_lines(&output).len() > before_fresh
    })
    .await;
    assert_eq!(
        counter_lines(&output)[before_fresh].0,
        1,
        "a start with restore none counts from 1"
    );
    act(&cluster, survivor, &created.id, "stop", "STOPPED").await;
}

#[tokio::test]
async fn zk_flink_job_survives_failover_and_restores_its_savepoint() {
    flink_job_survives_failover_and_restores_its_savepoint(RegistryKind::Zookeeper).await;
}

#[tokio::test]
async fn mysql_flink_job_survives_failover_and_restores_its_savepoint() {
    flink_job_survives_failover_and_restores_its_savepoint(RegistryKind::Mysql).await;
}

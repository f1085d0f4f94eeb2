//! A private Flink cluster whose JobManager is SIGKILLed (no Flink HA: its jobs are lost), one
//! console node on ZooKeeper: while Flink does not answer the app is unknown and stays RUNNING;
//! once the restarted Flink does not know the job, the app is FAILED with the newest savepoint
//! named; a start restores that savepoint and the example job's counter continues.

use std::time::{Duration, Instant};

use cluster_tests::RegistryKind;
use serde_json::json;
use test_support::flink::{PrivateFlink, counter_lines};
use test_support::wait::{eventually, holds_for};

use super::{
    SETTLE, act_with, app_in, assert_restored_from, flink_cluster, job_id, savepoints,
    task_succeeded,
};

/// How long the test watches the app while Flink does not answer: several monitor ticks.
const UNREACHABLE_WINDOW: Duration = Duration::from_secs(2);

/// The last count the example job wrote.
fn last_count(output: &std::path::Path) -> u64 {
    counter_lines(output).last().map_or(0, |(count, _)| *count)
}

#[tokio::test]
async fn zk_flink_job_lost_with_its_jobmanager_restores_the_newest_savepoint() {
    let began = Instant::now();
    let flink = PrivateFlink::start(2).await;
    eprintln!(
        "measured: private Flink cold start {} ms",
        began.elapsed().as_millis()
    );
    let flink_url = flink.rest_url();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, spec, output) =
        flink_cluster(RegistryKind::Zookeeper, 1, &flink_url, dir.path()).await;
    let api = cluster.api(0);
    let created = api.create_app("counter", "flink", spec).await.unwrap();
    api.submit(&created.id, "start").await.unwrap();
    let running = app_in(&cluster, 0, &created.id, "RUNNING").await;
    let lost_job = job_id(&running);
    eventually("the job writes its counter", SETTLE, || async {
        counter_lines(&output).len() >= 3
    })
    .await;

    // A savepoint while it runs: its count is between the last counts before and after it.
    let lowest = last_count(&output);
    let task = api.submit(&created.id, "savepoint").await.unwrap().task_id;
    task_succeeded(&cluster, 0, &task).await;
    let highest = last_count(&output);
    let listed = savepoints(&cluster, 0, &created.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let newest = listed[0]["location"].clone();
    // The job runs on well past the savepoint before it is lost.
    eventually("the job counts past its savepoint", SETTLE, || async {
        last_count(&output) >= highest + 5
    })
    .await;

    let killed = Instant::now();
    flink.kill_jobmanager().await;
    holds_for(
        "the app stays RUNNING while Flink does not answer (unknown is not dead)",
        UNREACHABLE_WINDOW,
        || async {
            let app = api.app(&created.id).await?;
            if app.state == "RUNNING" {
                Ok(())
            } else {
                Err(format!("{app:?}"))
            }
        },
    )
    .await;
    flink.restart().await;
    eprintln!(
        "measured: JobManager SIGKILL -> Flink restarted {} ms",
        killed.elapsed().as_millis()
    );
    let failed = app_in(&cluster, 0, &created.id, "FAILED").await;
    let reason = failed.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains(&lost_job) && reason.contains(newest.as_str().unwrap()),
        "the app's last error names the lost job and the newest savepoint {newest}: {reason:?}"
    );

    let marker = counter_lines(&output).len();
    let restarted = Instant::now();
    api.submit(&created.id, "start").await.unwrap();
    let restored = app_in(&cluster, 0, &created.id, "RUNNING").await;
    assert_eq!(restored.handle.as_ref().unwrap()["restored_from"], newest);
    assert_restored_from(&flink_url, &job_id(&restored), &newest).await;
    // The restored job counts on from the savepoint's count, not from 1, and not from where
    // the lost job had got to.
    let first = eventually("the restored job writes", SETTLE, || async {
        let lines = counter_lines(&output);
        lines[marker.min(lines.len())..]
            .iter()
            .map(|(count, _)| *count)
            .find(|count| (lowest + 1..=highest + 1).contains(count))
            .ok_or_else(|| format!("{} lines since the restart", lines.len() - marker))
    })
    .await;
    eprintln!(
        "measured: start after the loss -> counter continued at {first} in {} ms",
        restarted.elapsed().as_millis()
    );
    let since = counter_lines(&output);
    assert!(
        since[marker..].iter().all(|(count, _)| *count > lowest),
        "the restored job started over: {:?}",
        &since[marker..]
    );
    act_with(
        &cluster,
        0,
        &created.id,
        "stop",
        json!({"savepoint": false}),
    )
    .await;
    app_in(&cluster, 0, &created.id, "STOPPED").await;
    eprintln!(
        "measured: the whole test {} ms",
        began.elapsed().as_millis()
    );
}

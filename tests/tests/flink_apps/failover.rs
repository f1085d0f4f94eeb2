//! The shared Flink cluster, three console nodes, both registries: adoption after SIGKILL of
//! the owner, a savepoint of the running job, stop with a savepoint and restore, cancel, and a
//! fresh start.

use cluster_tests::RegistryKind;
use cluster_tests::api::Body;
use serde_json::json;
use test_support::flink::counter_lines;
use test_support::wait::eventually;

use super::{
    SETTLE, act, act_with, app_in, assert_restored_from, flink_cluster, job_id, job_state,
    savepoints, task_succeeded,
};

async fn flink_job_survives_failover_and_restores_its_savepoint(kind: RegistryKind) {
    let flink_url = test_support::flink::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, spec, output) = flink_cluster(kind, 3, &flink_url, dir.path()).await;
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
    assert_eq!(job_state(&flink_url, &first_job).await.unwrap(), "RUNNING");
    let before = counter_lines(&output).len();
    eventually("the adopted job goes on counting", SETTLE, || async {
        counter_lines(&output).len() > before + 2
    })
    .await;

    // A savepoint of the running job: a task like the other actions (a repeated
    // Idempotency-Key answers the same task); the job runs on.
    let api = cluster.api(survivor);
    let savepoint_path = format!("/api/v1/apps/{}/savepoint", created.id);
    let key = [("idempotency-key", "savepoint-1".to_owned())];
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let answer = api
            .call_with_headers(reqwest::Method::POST, &savepoint_path, Body::None, &key)
            .await
            .unwrap();
        let submitted: cluster_tests::api::Submitted = answer.parse(202).unwrap();
        assert_eq!(submitted.action, "savepoint");
        tasks.push(submitted.task_id);
    }
    assert_eq!(tasks[0], tasks[1], "the same key answers the same task");
    task_succeeded(&cluster, survivor, &tasks[0]).await;
    let after = app_in(&cluster, survivor, &created.id, "RUNNING").await;
    assert_eq!(job_id(&after), first_job, "a savepoint keeps the job");
    let listed = savepoints(&cluster, survivor, &created.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (&listed[0]["kind"], &listed[0]["job_id"]),
        (&json!("manual"), &json!(first_job))
    );

    // Stop with a savepoint, then start: the counter continues from the savepoint.
    act(&cluster, survivor, &created.id, "stop", "STOPPED").await;
    let listed = savepoints(&cluster, survivor, &created.id).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["kind"], "stop", "the newest first: {listed:?}");
    assert_eq!(listed[0]["job_id"], first_job.as_str());
    let refused = api.act(&created.id, "savepoint").await.unwrap();
    assert_eq!(
        (refused.status, refused.error_code()),
        (409, Ok("illegal_transition")),
        "a savepoint of a STOPPED app: {refused}"
    );
    let at_stop = counter_lines(&output);
    let last = *at_stop.last().unwrap();

    api.submit(&created.id, "start").await.unwrap();
    let restarted = app_in(&cluster, survivor, &created.id, "RUNNING").await;
    let second_job = job_id(&restarted);
    assert_ne!(second_job, first_job, "a new start task, a new job");
    assert_eq!(
        restarted.handle.as_ref().unwrap()["restored_from"],
        listed[0]["location"],
        "the start restored the newest savepoint"
    );
    assert_restored_from(&flink_url, &second_job, &listed[0]["location"]).await;
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
    act_with(
        &cluster,
        survivor,
        &created.id,
        "stop",
        json!({"savepoint": false}),
    )
    .await;
    app_in(&cluster, survivor, &created.id, "STOPPED").await;
    assert_eq!(
        savepoints(&cluster, survivor, &created.id).await.len(),
        2,
        "no savepoint for a cancel"
    );
    let before_fresh = counter_lines(&output).len();
    act_with(
        &cluster,
        survivor,
        &created.id,
        "start",
        json!({"restore": "none"}),
    )
    .await;
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

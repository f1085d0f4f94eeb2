//! Scenario 5: concurrent `start` calls for one app through every node start one process.

use std::collections::BTreeMap;

use cluster_tests::{Cluster, Options, RegistryKind};
use test_support::wait::eventually;

use crate::{SETTLE, label};

/// Fires 50 concurrent `start` calls for app `id` through the nodes in turn; answers the
/// accepted ones (202) and how many were refused. Every other answer must be a JSON 409.
async fn fifty_concurrent_starts(
    cluster: &Cluster,
    id: &cluster_tests::Id,
) -> (Vec<cluster_tests::api::Submitted>, usize) {
    let apis = cluster.live_apis();
    let mut calls = tokio::task::JoinSet::new();
    for call in 0..50 {
        let (node, api) = apis[call % apis.len()].clone();
        let id = id.clone();
        calls.spawn(async move { (node, api.act(&id, "start").await) });
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    while let Some(joined) = calls.join_next().await {
        let (node, answer) = joined.unwrap();
        let answer = answer.unwrap_or_else(|error| panic!("start via {node}: {error}"));
        match answer.status {
            202 => accepted.push(answer.parse(202).unwrap()),
            409 => {
                answer.error_code().unwrap();
                refused += 1;
            }
            _ => panic!("start via {node}: {answer}"),
        }
    }
    (accepted, refused)
}

/// 5. 50 concurrent `start` calls for one app, spread over all nodes: exactly one process.
async fn concurrent_starts_start_once(kind: RegistryKind) {
    let cluster = Cluster::start(Options::new(kind, 3)).await;
    let app = cluster.create_marker_apps(1).await.remove(0);
    let apis = cluster.live_apis();
    let (accepted, refused) = fifty_concurrent_starts(&cluster, &app.id).await;
    assert!(!accepted.is_empty(), "no start was accepted");
    let api = apis[0].1.clone();
    let mut outcomes = BTreeMap::<String, usize>::new();
    for submitted in &accepted {
        let task = eventually("an accepted start finishes", SETTLE, || async {
            let task = api.task(&submitted.task_id).await?;
            if task.is_finished() {
                Ok(task)
            } else {
                Err(format!("{task:?}"))
            }
        })
        .await;
        if task.status == "FAILED" {
            eprintln!(
                "{} test 5: an accepted start failed: {:?}",
                label(kind),
                task.error
            );
        }
        *outcomes.entry(task.status).or_default() += 1;
    }
    eprintln!(
        "measured: {} test 5: {} starts accepted (tasks {outcomes:?}), {refused} refused with 409",
        label(kind),
        accepted.len()
    );
    assert_eq!(
        outcomes.get("SUCCEEDED"),
        Some(&1),
        "exactly one start succeeds"
    );
    let app = api.app(&app.id).await.unwrap();
    assert_eq!(app.state, "RUNNING", "{app:?}");
    assert_eq!(
        app.last_error, None,
        "a refused duplicate start leaves the app alone"
    );
    // RUNNING says the process exists; its shell appends the marker line a moment later.
    eventually("the app wrote its marker", SETTLE, || async {
        cluster.marker_lines(&app.name) > 0
    })
    .await;
    assert_eq!(cluster.marker_lines(&app.name), 1, "started exactly once");
    let processes = cluster.app_processes(&app.id.0);
    assert_eq!(processes.len(), 1, "exactly one process: {processes:?}");
    assert_eq!(Some(processes[0].pid), app.pid());
}

each_registry!(concurrent_starts_start_once => zk_concurrent_starts_start_one_process, mysql_concurrent_starts_start_one_process, etcd_concurrent_starts_start_one_process);

/// DESIGN.md: an action that is not allowed once the queued ones have run is refused with 409.
/// Of concurrent starts, only the first can be allowed: `Store::submit_task` checks and inserts
/// in one transaction holding the app's row, so submissions through different nodes are checked
/// against each other.
async fn concurrent_starts_accept_only_one(kind: RegistryKind) {
    let cluster = Cluster::start(Options::new(kind, 3)).await;
    let mut accepted = Vec::new();
    for round in 1..=5 {
        let name = format!("race-{round}");
        let app = cluster
            .api(0)
            .create_app(&name, "process", cluster.marker_spec(&name))
            .await
            .unwrap();
        accepted.push(fifty_concurrent_starts(&cluster, &app.id).await.0.len());
    }
    assert!(
        accepted.iter().all(|count| *count == 1),
        "starts accepted per app out of 50 concurrent ones (expected 1 each): {accepted:?}"
    );
}

each_registry!(concurrent_starts_accept_only_one => zk_concurrent_starts_accept_only_one, mysql_concurrent_starts_accept_only_one, etcd_concurrent_starts_accept_only_one);

//! `process` apps through real `console-server` nodes (issue 12, findings 2 and 7): a start
//! interrupted between the spawn and its record is adopted by the next owner, never repeated;
//! an app whose first process exits while its child runs (`sh -c 'server & exit 0'`) stays
//! RUNNING, and stop + delete leave nothing running. Every count of copies is taken from the
//! processes themselves (`/proc`), not from the console.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster_tests::processes::{self, RUN_TAG_VAR};
use cluster_tests::{Cluster, Id, Options, RegistryKind};
use serde_json::json;
use test_support::wait::{eventually, holds_for};

/// How long a task may take to finish, a failover included.
const SETTLE: Duration = Duration::from_secs(60);

/// The test-only failpoint of the process executor (`executor/process/failpoint.rs`).
const KILL_AFTER_SPAWN_VAR: &str = "CONSOLE_TEST_KILL_AFTER_SPAWN";

/// Waits until task `task` is finished and answers it.
async fn finished(cluster: &Cluster, node: usize, task: &Id) -> cluster_tests::api::Task {
    cluster.api(node).finished_task(task, SETTLE).await
}

/// The live processes of app `app` (by `CONSOLE_APP_ID` and this run's tag).
fn copies(cluster: &Cluster, app: &Id) -> Vec<i32> {
    cluster
        .app_processes(&app.0)
        .iter()
        .map(|process| process.pid)
        .collect()
}

/// The owner of a start dies (SIGKILL) between spawning the app and recording the start; the
/// next owner re-runs the task and adopts the copy: one process, started once, then stopped.
async fn interrupted_start_is_adopted(kind: RegistryKind) {
    let name = "interrupted";
    let mut cluster = Cluster::start(Options::new(kind, 2).env(KILL_AFTER_SPAWN_VAR, name)).await;
    let app = cluster
        .api(0)
        .create_app(name, "process", cluster.marker_spec(name))
        .await
        .unwrap();
    let owner = app.owner.clone().expect("an owner");
    let victim = (0..cluster.len())
        .find(|index| cluster.node(*index).id == owner)
        .expect("the owner is a node of the cluster");
    let survivor = 1 - victim;
    let submitted = cluster
        .api(survivor)
        .submit(&app.id, "start")
        .await
        .unwrap();

    // The owner spawns the app and kills itself before the start is recorded.
    let (status, _) = cluster.node_mut(victim).wait_exit(SETTLE).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the owner died by the failpoint: {status:?}"
    );
    eventually("the app the owner spawned has started", SETTLE, || async {
        cluster.marker_lines(name) >= 1
    })
    .await;

    // The survivor takes the app over once the owner's session ends, re-runs the start task,
    // and finds the copy instead of starting a second one (were it to start one, the failpoint
    // would kill it too: the check below says so at once).
    let api = cluster.api(survivor);
    let task = eventually("the re-run start finishes", SETTLE, || async {
        let starts = cluster.marker_lines(name);
        assert_eq!(starts, 1, "the app was started again: {starts} starts");
        let task = api.task(&submitted.task_id).await?;
        if task.is_finished() {
            Ok(task)
        } else {
            Err(format!("{task:?}"))
        }
    })
    .await;
    assert_eq!(task.status, "SUCCEEDED", "{task:?}");
    assert_eq!(task.attempts, Some(2), "the task ran again: {task:?}");
    let running = api.app(&app.id).await.unwrap();
    assert_eq!(running.state, "RUNNING", "{running:?}");
    let found = copies(&cluster, &app.id);
    assert_eq!(found.len(), 1, "one copy: {found:?}");
    assert_eq!(
        running.pid(),
        Some(found[0]),
        "the recorded pid is the copy's"
    );
    holds_for(
        "the app runs once, as it was started once",
        cluster.monitor_interval() * 3,
        || async {
            let found = copies(&cluster, &app.id);
            let starts = cluster.marker_lines(name);
            if found.len() == 1 && starts == 1 {
                Ok(())
            } else {
                Err(format!("{} copies {found:?}, {starts} starts", found.len()))
            }
        },
    )
    .await;

    let stop = api.submit(&app.id, "stop").await.unwrap();
    let task = finished(&cluster, survivor, &stop.task_id).await;
    assert_eq!(task.status, "SUCCEEDED", "{task:?}");
    assert!(copies(&cluster, &app.id).is_empty(), "stop left a copy");
}

#[tokio::test]
async fn zk_interrupted_start_is_adopted_not_repeated() {
    interrupted_start_is_adopted(RegistryKind::Zookeeper).await;
}

#[tokio::test]
async fn mysql_interrupted_start_is_adopted_not_repeated() {
    interrupted_start_is_adopted(RegistryKind::Mysql).await;
}

/// An app whose first process exits at once, leaving its child running: RUNNING while the
/// child runs, one copy; stop and delete leave no process.
#[tokio::test]
async fn zk_forking_app_runs_until_stopped_and_leaves_nothing() {
    let cluster = Cluster::start(Options::new(RegistryKind::Zookeeper, 1)).await;
    let run_dir = cluster.run_dir().display().to_string();
    let spec = json!({
        "command": ["sh", "-c",
            format!("echo started >> '{run_dir}/forking.marker'; sleep 100000 & exit 0")],
        "env": { RUN_TAG_VAR: run_dir },
    });
    let api = cluster.api(0);
    let app = api.create_app("forking", "process", spec).await.unwrap();
    let start = api.submit(&app.id, "start").await.unwrap();
    assert_eq!(
        finished(&cluster, 0, &start.task_id).await.status,
        "SUCCEEDED"
    );
    let child = eventually(
        "the shell has exited, its child runs on",
        SETTLE,
        || async {
            let app = api.app(&app.id).await?;
            let shell = app.pid().ok_or("no pid recorded")?;
            let found = copies(&cluster, &app.id);
            if !processes::is_alive(shell) && found.len() == 1 {
                Ok(found[0])
            } else {
                Err(format!("shell {shell}, copies {found:?}"))
            }
        },
    )
    .await;

    holds_for(
        "the app is RUNNING while its child runs",
        cluster.monitor_interval() * 4,
        || async {
            let app = api.app(&app.id).await?;
            if app.state == "RUNNING" && processes::is_alive(child) {
                Ok(())
            } else {
                Err(format!(
                    "{} ({:?}), child alive: {}",
                    app.state,
                    app.last_error,
                    processes::is_alive(child)
                ))
            }
        },
    )
    .await;

    let stop = api.submit(&app.id, "stop").await.unwrap();
    assert_eq!(
        finished(&cluster, 0, &stop.task_id).await.status,
        "SUCCEEDED"
    );
    assert!(
        !processes::is_alive(child),
        "stop left the child {child} running"
    );
    let deleted = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/apps/{}", app.id),
            cluster_tests::api::Body::None,
        )
        .await
        .unwrap();
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert!(
        copies(&cluster, &app.id).is_empty(),
        "a process outlived stop + delete"
    );
}

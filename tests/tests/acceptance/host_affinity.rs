//! Issue 12, finding 5: `process` apps after their node dies, with no other node on their host.
//! The two nodes run under host names of their own (`unshare --uts`), as on two machines.

use std::time::Duration;

use cluster_tests::Body;
use cluster_tests::processes;
use cluster_tests::{App, Options, RegistryKind};
use reqwest::Method;
use test_support::wait::{eventually, holds_for};

use crate::{SETTLE, label};

/// n1 (host `host-a`) dies by SIGKILL. Its apps stay RUNNING in their one process, unowned
/// (`placement.unowned` names `host-a`), still held by n1's lease: n2 (`host-b`) neither adopts
/// nor fails them. A restart and a delete are refused, a stop waits; n1 comes back on
/// `host-a`, adopts the app in its process and runs the stop, and the app can be deleted.
async fn process_apps_wait_for_a_node_on_their_host(kind: RegistryKind) {
    let options = Options::new(kind, 2).host_names(&["host-a", "host-b"]);
    let mut cluster = cluster_tests::Cluster::start(options).await;
    let apps = cluster.create_marker_apps(6).await;
    let running = cluster.start_and_wait_running(&apps, SETTLE).await;
    let nodes = cluster.api(1).nodes().await.unwrap();
    let host_of = |id: &str| {
        nodes
            .iter()
            .find(|node| node.id == id)
            .and_then(|node| node.host_id.clone())
            .unwrap_or_else(|| panic!("{id} has no host_id: {nodes:?}"))
    };
    let (host_a, host_b) = (host_of("n1"), host_of("n2"));
    assert!(
        host_a.starts_with("host-a/") && host_b.starts_with("host-b/"),
        "{host_a}, {host_b}"
    );
    for app in &running {
        let owner = app.owner.as_deref().expect("an owner");
        assert_eq!(app.placement["host"], host_of(owner).as_str(), "{app:?}");
    }
    let app: App = running
        .iter()
        .find(|app| app.owner.as_deref() == Some("n1"))
        .expect("n1 owns one of six apps")
        .clone();
    let (pid, ticks) = (app.pid().unwrap(), app.start_time_ticks().unwrap());

    cluster.kill(0).await;
    let n2 = cluster.api(1);
    eventually(
        "n2 sees n1 gone",
        cluster.session_timeout() + SETTLE,
        || {
            let n2 = n2.clone();
            async move {
                let ids: Vec<String> = n2.nodes().await?.into_iter().map(|n| n.id).collect();
                if ids == ["n2"] {
                    Ok(())
                } else {
                    Err(format!("n2 lists {ids:?}"))
                }
            }
        },
    )
    .await;
    // Several monitor intervals and lease retries: time enough to adopt or fail it wrongly.
    let window = cluster.monitor_interval() * 6;
    holds_for("the app waits for a node on host-a", window, || {
        let (n2, cluster, id) = (n2.clone(), &cluster, app.id.clone());
        let host_a = host_a.clone();
        async move {
            let now = n2.app(&id).await?;
            let copies = cluster.app_processes(&id.0).len();
            let unowned = now.placement["unowned"].as_str().unwrap_or_default();
            let fine = now.state == "RUNNING"
                && now.owner.is_none()
                && now.adopted_by.as_deref() == Some("n1")
                && unowned.contains(&host_a)
                && processes::is_alive_since(pid, ticks)
                && copies == 1;
            if fine {
                Ok(())
            } else {
                Err(format!("{now:?}; {copies} processes"))
            }
        }
    })
    .await;

    let restart = n2.act(&app.id, "restart").await.unwrap();
    assert_eq!(
        (restart.status, restart.error_code()),
        (409, Ok("host_unreachable")),
        "{restart}"
    );
    let path = format!("/api/v1/apps/{}", app.id);
    let delete = n2.call(Method::DELETE, &path, Body::None).await.unwrap();
    assert_eq!(delete.status, 409, "{delete}");
    let stop = n2.submit(&app.id, "stop").await.unwrap();
    assert_eq!(n2.task(&stop.task_id).await.unwrap().status, "PENDING");

    cluster.restart(0).await;
    eventually("n1 adopted the app and stopped it", SETTLE, || {
        let (n2, task) = (n2.clone(), stop.task_id.clone());
        let id = app.id.clone();
        async move {
            let task = n2.task(&task).await?;
            let now = n2.app(&id).await?;
            if task.status == "SUCCEEDED" && now.state == "STOPPED" {
                Ok(now)
            } else {
                Err(format!("{task:?}; {now:?}"))
            }
        }
    })
    .await;
    assert!(
        processes::wait_gone(pid, Duration::from_secs(5)),
        "the stop ended the app's one process {pid}"
    );
    assert_eq!(cluster.marker_lines(&app.name), 1, "never started twice");
    let stopped = n2.app(&app.id).await.unwrap();
    assert!(stopped.placement["host"].is_null(), "{stopped:?}");
    let delete = n2.call(Method::DELETE, &path, Body::None).await.unwrap();
    assert_eq!(delete.status, 204, "{delete}");
    eprintln!(
        "measured: {} host affinity: app {} waited unowned for {} ms with its process alive",
        label(kind),
        app.id,
        window.as_millis()
    );
}

each_registry!(process_apps_wait_for_a_node_on_their_host =>
    zk_process_apps_wait_for_a_node_on_their_host,
    mysql_process_apps_wait_for_a_node_on_their_host,
    etcd_process_apps_wait_for_a_node_on_their_host);

//! Scenarios 1 and 3: the apps spread over the nodes, and a joining node takes its share
//! without restarting anything.

use std::collections::BTreeSet;

use cluster_tests::processes;
use cluster_tests::{App, Options, RegistryKind};
use test_support::wait::eventually;
use tokio::time::Instant;

use crate::checks::{
    cluster_with_running_apps, owned_apps_add_up, owned_by, owners_are_live, task_succeeds,
};
use crate::{LOAD_PUBLISHED, label, ms};

/// 1. Three nodes, 30 apps: all RUNNING, each started once, spread over the three nodes, and
///    the nodes' `owned_apps` add up to 30.
async fn thirty_apps_spread(kind: RegistryKind) {
    let started = Instant::now();
    let (cluster, apps, baseline) = cluster_with_running_apps(Options::new(kind, 3), 30).await;
    eprintln!(
        "measured: {} test 1: 3 nodes up and 30 apps RUNNING after {} ms",
        label(kind),
        ms(started.elapsed())
    );
    for app in &apps {
        let processes = cluster.app_processes(&app.id.0);
        assert_eq!(
            processes.len(),
            1,
            "{} should have exactly one process: {processes:?}",
            app.name
        );
    }
    let apps = owners_are_live(&cluster, true).await.unwrap();
    let owners: BTreeSet<String> = apps.iter().filter_map(|app| app.owner.clone()).collect();
    assert_eq!(
        owners,
        cluster.live_ids(),
        "the apps should be spread over all three nodes"
    );
    let counts = eventually("owned_apps add up to 30", LOAD_PUBLISHED, || {
        owned_apps_add_up(&cluster, 30)
    })
    .await;
    eprintln!("measured: {} test 1: owned_apps {counts:?}", label(kind));
    baseline.check_unchanged(&cluster, &apps).unwrap();
}

each_registry!(thirty_apps_spread => zk_thirty_apps_spread_over_three_nodes, mysql_thirty_apps_spread_over_three_nodes, etcd_thirty_apps_spread_over_three_nodes);

/// 3. A fourth node joins: some apps move to it, none restarts; stop and start still work on
///    the moved apps.
async fn joining_node_takes_apps(kind: RegistryKind) {
    let (mut cluster, apps, baseline) = cluster_with_running_apps(Options::new(kind, 3), 30).await;
    let joined_at = Instant::now();
    let newcomer = cluster.add_node().await;
    let newcomer_id = cluster.node(newcomer).id.clone();
    let counts = eventually(
        "owned_apps add up to 30 over four nodes",
        LOAD_PUBLISHED,
        || owned_apps_add_up(&cluster, 30),
    )
    .await;
    eprintln!(
        "measured: {} test 3: {newcomer_id} ready and owned_apps settled {} ms after its start: {counts:?}",
        label(kind),
        ms(joined_at.elapsed())
    );
    let after = owners_are_live(&cluster, true).await.unwrap();
    baseline.check_unchanged(&cluster, &after).unwrap();
    let moved: Vec<App> = owned_by(&after, &newcomer_id)
        .into_iter()
        .cloned()
        .collect();
    assert!(
        !moved.is_empty(),
        "no app moved to {newcomer_id}: {after:?}"
    );
    for app in &moved {
        let before = apps.iter().find(|old| old.id == app.id).unwrap();
        assert_ne!(before.owner, app.owner, "{} moved", app.name);
    }

    // Stop and start a moved app, once through an old node and once through the newcomer.
    let mut changed = Vec::new();
    for (app, via) in moved.iter().zip([0, newcomer]) {
        let api = cluster.api(via);
        let old_pid = app.pid().unwrap();
        let stop = api.submit(&app.id, "stop").await.unwrap();
        task_succeeds(&api, &stop.task_id, &format!("stop of {}", app.name)).await;
        let stopped = api.app(&app.id).await.unwrap();
        assert_eq!(stopped.state, "STOPPED", "{stopped:?}");
        assert!(
            !processes::is_alive(old_pid),
            "{}'s process {old_pid} survived the stop",
            app.name
        );
        let start = api.submit(&app.id, "start").await.unwrap();
        task_succeeds(&api, &start.task_id, &format!("start of {}", app.name)).await;
        let started = api.app(&app.id).await.unwrap();
        assert_eq!(started.state, "RUNNING", "{started:?}");
        assert_eq!(started.owner.as_deref(), Some(newcomer_id.as_str()));
        let new_pid = started.pid().unwrap();
        assert_ne!(new_pid, old_pid);
        assert!(processes::is_alive(new_pid), "the restarted process runs");
        assert_eq!(cluster.marker_lines(&app.name), 2, "started once more");
        assert_eq!(cluster.app_processes(&app.id.0).len(), 1);
        changed.push(app.id.clone());
    }
    let mut rest = baseline.clone();
    rest.apps
        .retain(|id, _| !changed.iter().any(|changed| changed.0 == *id));
    let others: Vec<App> = owners_are_live(&cluster, true)
        .await
        .unwrap()
        .into_iter()
        .filter(|app| !changed.contains(&app.id))
        .collect();
    rest.check_unchanged(&cluster, &others).unwrap();
}

each_registry!(joining_node_takes_apps => zk_joining_node_takes_apps_without_restarts, mysql_joining_node_takes_apps_without_restarts, etcd_joining_node_takes_apps_without_restarts);

//! What the scenarios check on a running cluster: every app in its first process, live owners
//! that all nodes agree on, `owned_apps` that add up.

use std::collections::{BTreeMap, BTreeSet};

use cluster_tests::processes;
use cluster_tests::{App, Cluster, Options};

use crate::SETTLE;

/// What each running app looked like: its process, to tell later whether it was restarted.
#[derive(Debug, Clone)]
pub(crate) struct Baseline {
    /// By app id: (name, pid, start time in ticks).
    pub(crate) apps: BTreeMap<String, (String, i32, u64)>,
}

impl Baseline {
    pub(crate) fn of(apps: &[App]) -> Self {
        let apps = apps
            .iter()
            .map(|app| {
                let pid = app.pid().unwrap_or_else(|| panic!("no pid in {app:?}"));
                let ticks = app
                    .start_time_ticks()
                    .unwrap_or_else(|| panic!("no start_time_ticks in {app:?}"));
                (app.id.0.clone(), (app.name.clone(), pid, ticks))
            })
            .collect();
        Self { apps }
    }

    /// Every app is RUNNING with its original process alive, and no marker gained a line.
    pub(crate) fn check_unchanged(&self, cluster: &Cluster, apps: &[App]) -> Result<(), String> {
        if apps.len() != self.apps.len() {
            return Err(format!("{} apps, expected {}", apps.len(), self.apps.len()));
        }
        for app in apps {
            let Some((name, pid, ticks)) = self.apps.get(&app.id.0) else {
                return Err(format!("unknown app {app:?}"));
            };
            if app.state != "RUNNING" {
                return Err(format!("{name} is {} ({:?})", app.state, app.last_error));
            }
            if app.pid() != Some(*pid) || app.start_time_ticks() != Some(*ticks) {
                return Err(format!(
                    "{name} has a new process: {:?}, was pid {pid}",
                    app.handle
                ));
            }
            if !processes::is_alive_since(*pid, *ticks) {
                return Err(format!("{name}'s process {pid} is gone"));
            }
            let lines = cluster.marker_lines(name);
            if lines != 1 {
                return Err(format!("{name} was started {lines} times"));
            }
        }
        Ok(())
    }
}

/// Every running node's view: every app has a live owner (and, with `running`, is RUNNING);
/// all views agree. Answers the apps as the first node sees them.
pub(crate) async fn owners_are_live(cluster: &Cluster, running: bool) -> Result<Vec<App>, String> {
    let live = cluster.live_ids();
    let views = cluster.views().await?;
    let mut first: Option<(String, BTreeMap<String, Option<String>>)> = None;
    for (node, apps) in &views {
        for app in apps {
            match &app.owner {
                Some(owner) if live.contains(owner) => {}
                other => {
                    return Err(format!(
                        "node {node} says {} is owned by {other:?}; live: {live:?}",
                        app.name
                    ));
                }
            }
            if running && app.state != "RUNNING" {
                return Err(format!("node {node} says {} is {}", app.name, app.state));
            }
        }
        let owners: BTreeMap<String, Option<String>> = apps
            .iter()
            .map(|app| (app.name.clone(), app.owner.clone()))
            .collect();
        match &first {
            None => first = Some((node.clone(), owners)),
            Some((first_node, first_owners)) if *first_owners != owners => {
                return Err(format!(
                    "nodes {first_node} and {node} disagree on owners: {first_owners:?} vs {owners:?}"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(views
        .into_iter()
        .next()
        .map(|(_, apps)| apps)
        .unwrap_or_default())
}

/// Every running node lists exactly the running nodes, their `owned_apps` add up to `total`,
/// and each node's count matches the owners of the active apps (a node counts the active apps
/// it owns, and those with unfinished tasks; the tests check when no task is pending).
pub(crate) async fn owned_apps_add_up(
    cluster: &Cluster,
    total: u64,
) -> Result<BTreeMap<String, u64>, String> {
    let live = cluster.live_ids();
    let apps = owners_are_live(cluster, false).await?;
    let mut expected: BTreeMap<String, u64> = live.iter().map(|id| (id.clone(), 0)).collect();
    for app in &apps {
        let active = matches!(app.state.as_str(), "STARTING" | "RUNNING" | "STOPPING");
        if let (true, Some(owner)) = (active, &app.owner) {
            *expected.entry(owner.clone()).or_default() += 1;
        }
    }
    for (node, list) in cluster.node_lists().await? {
        let seen: BTreeMap<String, u64> = list
            .iter()
            .map(|info| (info.id.clone(), info.owned_apps))
            .collect();
        let ids: BTreeSet<String> = seen.keys().cloned().collect();
        if ids != live {
            return Err(format!("node {node} lists {ids:?}, live: {live:?}"));
        }
        let sum: u64 = seen.values().sum();
        if sum != total || seen != expected {
            return Err(format!(
                "node {node}: owned_apps {seen:?} (sum {sum}), expected {expected:?} (sum {total})"
            ));
        }
    }
    Ok(expected)
}

/// A cluster of `nodes` nodes with `count` marker apps RUNNING.
pub(crate) async fn cluster_with_running_apps(
    options: Options,
    count: usize,
) -> (Cluster, Vec<App>, Baseline) {
    let cluster = Cluster::start(options).await;
    let created = cluster.create_marker_apps(count).await;
    let apps = cluster.start_and_wait_running(&created, SETTLE).await;
    let baseline = Baseline::of(&apps);
    baseline
        .check_unchanged(&cluster, &apps)
        .unwrap_or_else(|error| panic!("right after the start: {error}"));
    (cluster, apps, baseline)
}

/// Apps whose owner is `node` in `apps`.
pub(crate) fn owned_by<'a>(apps: &'a [App], node: &str) -> Vec<&'a App> {
    apps.iter()
        .filter(|app| app.owner.as_deref() == Some(node))
        .collect()
}

/// Waits until `task` is SUCCEEDED (through `api`).
pub(crate) async fn task_succeeds(api: &cluster_tests::Api, task: &cluster_tests::Id, what: &str) {
    let task = api.finished_task(task, SETTLE).await;
    assert_eq!(task.status, "SUCCEEDED", "{what}: {task:?}");
}

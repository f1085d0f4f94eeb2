//! The acceptance tests of the clustered console (issue 6), each for the ZooKeeper and the MySQL
//! registry: real `console-server` processes, real ZooKeeper and MariaDB, real signals.
//!
//! Each scenario is one `async fn(RegistryKind)`; [`both_registries!`] turns it into a `zk_...`
//! and a `mysql_...` test. Timing bounds are the acceptance criteria themselves; every measured
//! duration is printed as a `measured:` line (see it with `--nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster_tests::processes;
use cluster_tests::{App, Cluster, Options, RegistryKind};
use test_support::wait::{self, eventually, holds_for, poll_until};
use tokio::time::Instant;

/// How long 30 apps may take to reach RUNNING, or a cluster to settle after a change.
const SETTLE: Duration = Duration::from_secs(60);

/// How long `owned_apps` (published by each node about once a second) may take to add up.
const LOAD_PUBLISHED: Duration = Duration::from_secs(10);

/// Turns a scenario into one test per registry.
macro_rules! both_registries {
    ($scenario:ident => $zk:ident, $mysql:ident) => {
        #[tokio::test]
        async fn $zk() {
            timed(stringify!($zk), $scenario(RegistryKind::Zookeeper)).await;
        }

        #[tokio::test]
        async fn $mysql() {
            timed(stringify!($mysql), $scenario(RegistryKind::Mysql)).await;
        }
    };
}

/// Runs a scenario and prints how long it took, teardown included.
async fn timed(name: &str, scenario: impl std::future::Future<Output = ()>) {
    let started = Instant::now();
    scenario.await;
    eprintln!("measured: {name} passed in {} ms", ms(started.elapsed()));
}

fn label(kind: RegistryKind) -> &'static str {
    match kind {
        RegistryKind::Zookeeper => "zk",
        RegistryKind::Mysql => "mysql",
    }
}

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

/// What each running app looked like: its process, to tell later whether it was restarted.
#[derive(Debug, Clone)]
struct Baseline {
    /// By app id: (name, pid, start time in ticks).
    apps: BTreeMap<String, (String, i32, u64)>,
}

impl Baseline {
    fn of(apps: &[App]) -> Self {
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
    fn check_unchanged(&self, cluster: &Cluster, apps: &[App]) -> Result<(), String> {
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
async fn owners_are_live(cluster: &Cluster, running: bool) -> Result<Vec<App>, String> {
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
async fn owned_apps_add_up(cluster: &Cluster, total: u64) -> Result<BTreeMap<String, u64>, String> {
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
async fn cluster_with_running_apps(
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

both_registries!(thirty_apps_spread => zk_thirty_apps_spread_over_three_nodes, mysql_thirty_apps_spread_over_three_nodes);

/// Apps whose owner is `node` in `apps`.
fn owned_by<'a>(apps: &'a [App], node: &str) -> Vec<&'a App> {
    apps.iter()
        .filter(|app| app.owner.as_deref() == Some(node))
        .collect()
}

/// 2. SIGKILL one node: within the session timeout + 2 s every app's owner is a live node, all
///    still RUNNING, no marker gained a line; then killing an adopted app's process turns it
///    FAILED within two monitor intervals.
async fn sigkilled_node_is_taken_over(kind: RegistryKind) {
    let (mut cluster, apps, baseline) = cluster_with_running_apps(Options::new(kind, 3), 30).await;
    let victim = 1;
    let victim_id = cluster.node(victim).id.clone();
    let victim_apps: Vec<App> = owned_by(&apps, &victim_id).into_iter().cloned().collect();
    assert!(!victim_apps.is_empty(), "{victim_id} owns no app: {apps:?}");

    let killed_at = cluster.kill(victim).await;
    let bound = cluster.session_timeout() + Duration::from_secs(2);
    let outcome = poll_until(bound.saturating_sub(killed_at.elapsed()), || {
        owners_are_live(&cluster, true)
    })
    .await;
    let (after, seen_at) = match outcome {
        Ok(found) => found,
        Err(timed_out) => panic!(
            "owners not all live within {bound:?} of the SIGKILL of {victim_id}: {}",
            timed_out.last
        ),
    };
    let failover = seen_at - killed_at;
    eprintln!(
        "measured: {} test 2: every owner live {} ms after SIGKILL of {victim_id} (bound {} ms)",
        label(kind),
        ms(failover),
        ms(bound)
    );
    baseline.check_unchanged(&cluster, &after).unwrap();
    let adopted_at = Instant::now();
    eventually(
        "the survivors' owned_apps add up to 30",
        LOAD_PUBLISHED,
        || owned_apps_add_up(&cluster, 30),
    )
    .await;
    eprintln!(
        "measured: {} test 2: owned_apps add up to 30 {} ms after SIGKILL",
        label(kind),
        ms(adopted_at.elapsed() + failover)
    );

    // The new owner monitors the adopted app: kill its process behind the console's back.
    let adopted = after
        .iter()
        .find(|app| victim_apps.iter().any(|old| old.id == app.id))
        .expect("an app of the killed node")
        .clone();
    let new_owner = adopted.owner.clone().expect("an owner");
    let pid = adopted.pid().expect("a pid");
    processes::signal(pid, libc::SIGKILL);
    assert!(
        processes::wait_gone(pid, Duration::from_secs(5)),
        "{}'s process {pid} survived SIGKILL",
        adopted.name
    );
    let died_at = Instant::now();
    let bound = cluster.monitor_interval() * 2;
    let api = cluster.live_apis()[0].1.clone();
    let outcome = poll_until(bound.saturating_sub(died_at.elapsed()), || {
        let api = api.clone();
        let id = adopted.id.clone();
        async move {
            let app = api.app(&id).await?;
            if app.state == "FAILED" {
                Ok(app)
            } else {
                Err(format!("{} is {}", app.name, app.state))
            }
        }
    })
    .await;
    let (failed, seen_at) = match outcome {
        Ok(found) => found,
        Err(timed_out) => panic!(
            "{} (adopted by {new_owner}) not FAILED within {bound:?} of its process's death: {}",
            adopted.name, timed_out.last
        ),
    };
    eprintln!(
        "measured: {} test 2: adopted app FAILED {} ms after its process died (bound {} ms); last_error {:?}",
        label(kind),
        ms(seen_at - died_at),
        ms(bound),
        failed.last_error
    );
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|error| !error.is_empty()),
        "a FAILED app says why: {failed:?}"
    );
    assert_eq!(cluster.marker_lines(&adopted.name), 1, "not restarted");
    let others: Vec<App> = owners_are_live(&cluster, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|app| app.id != adopted.id)
        .collect();
    let mut others_baseline = baseline.clone();
    others_baseline.apps.remove(&adopted.id.0);
    others_baseline.check_unchanged(&cluster, &others).unwrap();

    // The killed node comes back under its id and takes its share again, restarting nothing.
    let restarted_at = Instant::now();
    cluster.restart(victim).await;
    let counts = eventually(
        "owned_apps add up to the 29 running apps over three nodes again",
        LOAD_PUBLISHED,
        || owned_apps_add_up(&cluster, 29),
    )
    .await;
    eprintln!(
        "measured: {} test 2: {victim_id} restarted and owned_apps settled after {} ms: {counts:?}",
        label(kind),
        ms(restarted_at.elapsed())
    );
    let back: Vec<App> = owners_are_live(&cluster, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|app| app.id != adopted.id)
        .collect();
    others_baseline.check_unchanged(&cluster, &back).unwrap();
    for app in &victim_apps {
        let now = back.iter().find(|now| now.id == app.id);
        if let Some(now) = now {
            assert_eq!(
                now.owner.as_deref(),
                Some(victim_id.as_str()),
                "{} is owned by the restarted {victim_id} again (the ring is a function of the live set)",
                app.name
            );
        }
    }
}

both_registries!(sigkilled_node_is_taken_over => zk_sigkilled_node_apps_are_adopted_and_monitored, mysql_sigkilled_node_apps_are_adopted_and_monitored);

/// Waits until `task` is SUCCEEDED (through `api`).
async fn task_succeeds(api: &cluster_tests::Api, task: &cluster_tests::Id, what: &str) {
    let task = eventually(&format!("{what} finishes"), SETTLE, || async {
        let task = api.task(task).await?;
        if task.is_finished() {
            Ok(task)
        } else {
            Err(format!("{task:?}"))
        }
    })
    .await;
    assert_eq!(task.status, "SUCCEEDED", "{what}: {task:?}");
}

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

both_registries!(joining_node_takes_apps => zk_joining_node_takes_apps_without_restarts, mysql_joining_node_takes_apps_without_restarts);

/// 4. SIGTERM one node: it exits 0, its apps are owned by live nodes within 1 s of its exit,
///    none restarts.
async fn sigterm_hands_apps_over(kind: RegistryKind) {
    let (mut cluster, apps, baseline) = cluster_with_running_apps(Options::new(kind, 3), 30).await;
    let leaving = 2;
    let leaving_id = cluster.node(leaving).id.clone();
    assert!(
        !owned_by(&apps, &leaving_id).is_empty(),
        "{leaving_id} owns no app"
    );
    let survivors: Vec<(String, cluster_tests::Api)> = cluster
        .live_apis()
        .into_iter()
        .filter(|(id, _)| *id != leaving_id)
        .collect();
    let survivor_ids: BTreeSet<String> = survivors.iter().map(|(id, _)| id.clone()).collect();

    // Watch the survivors from the moment of the signal, so a hand-over before the exit counts.
    let watch = tokio::spawn(async move {
        poll_until(Duration::from_secs(30), || {
            let survivors = survivors.clone();
            let survivor_ids = survivor_ids.clone();
            async move {
                for (node, api) in &survivors {
                    for app in api.apps().await? {
                        let owner = app.owner.clone().unwrap_or_default();
                        if !survivor_ids.contains(&owner) || app.state != "RUNNING" {
                            return Err(format!(
                                "node {node}: {} is {} owned by {owner:?}",
                                app.name, app.state
                            ));
                        }
                    }
                }
                Ok(())
            }
        })
        .await
    });
    let signalled_at = Instant::now();
    let (status, exited_at) = cluster.terminate(leaving, Duration::from_secs(20)).await;
    let outcome = watch.await.unwrap();
    let ((), handed_over_at) = outcome.unwrap_or_else(|timed_out| {
        panic!(
            "the survivors did not own every app within 30 s of the SIGTERM: {}",
            timed_out.last
        )
    });
    assert!(status.success(), "{leaving_id} exited with {status}");
    let (relation, gap) = if handed_over_at >= exited_at {
        ("after", handed_over_at - exited_at)
    } else {
        ("before", exited_at - handed_over_at)
    };
    eprintln!(
        "measured: {} test 4: {leaving_id} exited 0 {} ms after SIGTERM; survivors owned every app {} ms {relation} its exit (bound 1000 ms after)",
        label(kind),
        ms(exited_at - signalled_at),
        ms(gap)
    );
    assert!(
        handed_over_at <= exited_at + Duration::from_secs(1),
        "the hand-over finished {} ms after the exit of {leaving_id} (bound 1000 ms)",
        ms(gap)
    );
    let after = owners_are_live(&cluster, true).await.unwrap();
    baseline.check_unchanged(&cluster, &after).unwrap();
    eventually(
        "the survivors' owned_apps add up to 30",
        LOAD_PUBLISHED,
        || owned_apps_add_up(&cluster, 30),
    )
    .await;
    baseline
        .check_unchanged(&cluster, &owners_are_live(&cluster, true).await.unwrap())
        .unwrap();
}

both_registries!(sigterm_hands_apps_over => zk_sigterm_hands_apps_over_within_a_second, mysql_sigterm_hands_apps_over_within_a_second);

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
    assert_eq!(cluster.marker_lines(&app.name), 1, "started exactly once");
    let processes = cluster.app_processes(&app.id.0);
    assert_eq!(processes.len(), 1, "exactly one process: {processes:?}");
    assert_eq!(Some(processes[0].pid), app.pid());
}

both_registries!(concurrent_starts_start_once => zk_concurrent_starts_start_one_process, mysql_concurrent_starts_start_one_process);

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

#[tokio::test]
async fn zk_concurrent_starts_accept_only_one() {
    concurrent_starts_accept_only_one(RegistryKind::Zookeeper).await;
}

#[tokio::test]
async fn mysql_concurrent_starts_accept_only_one() {
    concurrent_starts_accept_only_one(RegistryKind::Mysql).await;
}

/// Polls every node's `/readyz` in the background until stopped; answers, per node, how many
/// answers were not 200 (503, or no answer).
fn watch_readiness(
    apis: Vec<(String, cluster_tests::Api)>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<BTreeMap<String, usize>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut not_ready: BTreeMap<String, usize> =
            apis.iter().map(|(id, _)| (id.clone(), 0)).collect();
        loop {
            for (id, api) in &apis {
                if !matches!(api.ready().await, Ok(true)) {
                    *not_ready.entry(id.clone()).or_default() += 1;
                }
            }
            tokio::select! {
                _ = &mut stopped => return not_ready,
                () = tokio::time::sleep(wait::POLL_INTERVAL) => {}
            }
        }
    });
    (stop, task)
}

/// How long the registry is away in scenario 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Shorter than the point where nodes stop acting (2/3 of the session timeout).
    Short,
    /// Until every node has stopped acting (`/readyz` 503).
    PastFenceBound,
}

/// Cluster options for an outage test: ZooKeeper on a private server, MySQL through a proxy.
///
/// Session timeouts: a ZooKeeper restart takes 1.5-4.5 s on two loaded cores, so a short
/// outage uses 8 s sessions (stays under both the session and the 5.3 s fence bound). Past the
/// fence bound, ZooKeeper uses 4 s sessions: the outage (2.7 s until the nodes stop acting, plus
/// the restart) is then about the session timeout, and a node comes back either on its old
/// session (the restarted server gives sessions a fresh timeout) or, when its client has given
/// up on it first, on a new one after the old one's entries are gone; both must restart nothing.
/// MySQL sessions end by the database's clock: a short outage is a 500 ms cut with the usual 1 s
/// sessions; past the fence bound it uses 4 s sessions, the nodes stop acting after 2.7 s and
/// the cut ends before 4 s.
fn outage_options(kind: RegistryKind, outage: Outage) -> Options {
    let session = match (kind, outage) {
        (RegistryKind::Zookeeper, Outage::Short) => Duration::from_secs(8),
        (RegistryKind::Mysql, Outage::Short) => Duration::from_secs(1),
        (_, Outage::PastFenceBound) => Duration::from_secs(4),
    };
    let options = Options::new(kind, 3).session_timeout(session);
    match kind {
        RegistryKind::Zookeeper => options.private_zookeeper(),
        RegistryKind::Mysql => options.database_proxy(),
    }
}

/// Waits until every node answers `/readyz` with 503, for at most `timeout`.
async fn all_stop_acting(cluster: &Cluster, timeout: Duration) -> Result<(), String> {
    let apis = cluster.live_apis();
    poll_until(timeout, || {
        let apis = apis.clone();
        async move {
            for (id, api) in &apis {
                if api.ready().await? {
                    return Err(format!("{id} is still ready"));
                }
            }
            Ok(())
        }
    })
    .await
    .map(|_| ())
    .map_err(|timed_out| timed_out.last)
}

/// 6. The registry goes away and comes back: no app restarts or fails, and all nodes are ready
///    again afterwards.
///
/// ZooKeeper: a private server is stopped and started again with `deploy/zookeeper.sh`. MySQL:
/// the shared MariaDB stays up; a proxy between the nodes and it (registry and task store) is
/// cut and restored. [`Outage::Short`] is the acceptance test: away for less than the session
/// timeout (and less than the fence bound). [`Outage::PastFenceBound`] keeps it away until every
/// node has stopped acting (DESIGN.md "Fencing"), so the nodes must also resume; for MySQL that
/// is still within the session timeout (see [`outage_options`]).
async fn registry_outage(kind: RegistryKind, outage: Outage) {
    let (mut cluster, _apps, baseline) =
        cluster_with_running_apps(outage_options(kind, outage), 12).await;
    let session = cluster.session_timeout();
    let fence_bound = session * 2 / 3;
    let (stop_watching, watching) = watch_readiness(cluster.live_apis());
    let outage_started = Instant::now();
    let mut fenced = Ok(());
    match kind {
        RegistryKind::Zookeeper => {
            cluster.zookeeper().stop().await;
            if outage == Outage::PastFenceBound {
                fenced = all_stop_acting(&cluster, fence_bound + Duration::from_secs(2)).await;
            }
            cluster.zookeeper().resume().await;
        }
        RegistryKind::Mysql => {
            cluster.proxy().cut();
            match outage {
                Outage::Short => tokio::time::sleep(session / 2).await,
                Outage::PastFenceBound => {
                    fenced = all_stop_acting(&cluster, session * 3 / 4).await;
                }
            }
            cluster.proxy().pass();
        }
    }
    let outage_took = outage_started.elapsed();
    if let Err(last) = fenced {
        panic!(
            "not every node stopped acting within {} ms of losing the registry (fence bound {} ms): {last}",
            ms(outage_took),
            ms(fence_bound)
        );
    }
    let back_at = Instant::now();
    cluster.wait_converged(session + SETTLE).await;
    let ready_after = back_at.elapsed();
    stop_watching.send(()).unwrap();
    let not_ready = watching.await.unwrap();
    eprintln!(
        "measured: {} test 6 ({outage:?}): registry away for {} ms (session {} ms); all nodes ready {} ms after it was back; not-ready answers per node meanwhile: {not_ready:?}",
        label(kind),
        ms(outage_took),
        ms(session),
        ms(ready_after)
    );
    if outage == Outage::Short || kind == RegistryKind::Mysql {
        assert!(
            outage_took < session,
            "the outage took {} ms, not less than the {} ms session timeout",
            ms(outage_took),
            ms(session)
        );
    }
    let after = owners_are_live(&cluster, true).await.unwrap();
    baseline.check_unchanged(&cluster, &after).unwrap();
    eventually("owned_apps add up to 12", LOAD_PUBLISHED, || {
        owned_apps_add_up(&cluster, 12)
    })
    .await;
    // A late failure would show within a few monitor intervals: watch that long.
    let window = cluster.monitor_interval() * 4;
    holds_for("every app RUNNING in its first process", window, || async {
        let apps = owners_are_live(&cluster, true).await?;
        baseline.check_unchanged(&cluster, &apps)
    })
    .await;
}

async fn short_registry_outage(kind: RegistryKind) {
    registry_outage(kind, Outage::Short).await;
}

both_registries!(short_registry_outage => zk_short_registry_outage_restarts_nothing, mysql_short_registry_outage_restarts_nothing);

async fn registry_outage_past_fence_bound(kind: RegistryKind) {
    registry_outage(kind, Outage::PastFenceBound).await;
}

both_registries!(registry_outage_past_fence_bound => zk_registry_outage_past_the_fence_bound_restarts_nothing, mysql_registry_outage_past_the_fence_bound_restarts_nothing);

/// The raw JSON of every app as node `api` lists it: the stored data, compared whole.
async fn stored_apps(api: &cluster_tests::Api) -> serde_json::Value {
    let answer = api.get("/api/v1/apps?page=1&size=500").await.unwrap();
    assert_eq!(answer.status, 200, "{answer}");
    answer.body
}

/// The token of test 7's cluster.
const TOKEN: &str = "cluster-test-token";

/// A call that must be refused with `expected`; sent with [`TOKEN`] unless told otherwise.
struct BadCall {
    what: &'static str,
    method: reqwest::Method,
    path: String,
    body: cluster_tests::Body,
    token: Option<String>,
    expected: u16,
}

impl BadCall {
    fn new(what: &'static str, method: reqwest::Method, path: &str, expected: u16) -> Self {
        Self {
            what,
            method,
            path: path.to_owned(),
            body: cluster_tests::Body::None,
            token: Some(TOKEN.to_owned()),
            expected,
        }
    }

    fn body(self, body: cluster_tests::Body) -> Self {
        Self { body, ..self }
    }

    fn token(self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self
        }
    }
}

/// 7. Bad input: each case answers its status with a JSON error body, and the stored apps are
///    unchanged afterwards. The cluster runs with `server.auth_token` set.
async fn bad_input_changes_nothing(kind: RegistryKind) {
    use cluster_tests::Body;
    use reqwest::Method;
    use serde_json::json;

    let cluster = Cluster::start(Options::new(kind, 2).auth_token(TOKEN)).await;
    let apps = cluster.create_marker_apps(2).await;
    let (idle, running) = (&apps[0], &apps[1]);
    cluster
        .start_and_wait_running(std::slice::from_ref(running), SETTLE)
        .await;
    let apis = cluster.live_apis();
    let before: Vec<serde_json::Value> = {
        let mut views = Vec::new();
        for (_, api) in &apis {
            views.push(stored_apps(api).await);
        }
        views
    };
    assert_eq!(before[0], before[1], "both nodes show the same apps");

    let valid_spec = cluster.marker_spec("never-created");
    let missing = "999999999";
    // Well over the API's 64 KiB body limit, small enough to be written before the answer.
    let too_large =
        json!({"name": "x".repeat(256 * 1024), "executor": "process", "spec": valid_spec})
            .to_string()
            .into_bytes();
    let create = |extra: serde_json::Value| {
        let mut body = json!({"name": "x", "executor": "process", "spec": valid_spec});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        Body::Json(body)
    };
    let app_path = |id: &dyn std::fmt::Display, action: &str| match action {
        "" => format!("/api/v1/apps/{id}"),
        action => format!("/api/v1/apps/{id}/{action}"),
    };
    use Method as M;
    let cases = [
        BadCall::new("malformed JSON", M::POST, "/api/v1/apps", 400)
            .body(Body::Raw(br#"{"name": "broken", "spec": "#.to_vec())),
        BadCall::new("an unknown field", M::POST, "/api/v1/apps", 400)
            .body(create(json!({"colour": "red"}))),
        BadCall::new("an unknown field in the spec", M::POST, "/api/v1/apps", 400).body(create(
            json!({"spec": {"command": ["true"], "colour": "red"}}),
        )),
        BadCall::new("a field of the wrong type", M::POST, "/api/v1/apps", 400)
            .body(create(json!({"name": 5}))),
        BadCall::new(
            "a non-numeric app id",
            M::GET,
            "/api/v1/apps/not-a-number",
            400,
        ),
        BadCall::new("a missing app", M::GET, &app_path(&missing, ""), 404),
        BadCall::new(
            "starting a missing app",
            M::POST,
            &app_path(&missing, "start"),
            404,
        ),
        BadCall::new(
            "deleting a missing app",
            M::DELETE,
            &app_path(&missing, ""),
            404,
        ),
        BadCall::new(
            "a missing task",
            M::GET,
            &format!("/api/v1/tasks/{missing}"),
            404,
        ),
        BadCall::new(
            "stopping a CREATED app",
            M::POST,
            &app_path(&idle.id, "stop"),
            409,
        ),
        BadCall::new(
            "restarting a CREATED app",
            M::POST,
            &app_path(&idle.id, "restart"),
            409,
        ),
        BadCall::new(
            "starting a RUNNING app",
            M::POST,
            &app_path(&running.id, "start"),
            409,
        ),
        BadCall::new(
            "deleting a RUNNING app",
            M::DELETE,
            &app_path(&running.id, ""),
            409,
        ),
        BadCall::new("a body over the limit", M::POST, "/api/v1/apps", 413)
            .body(Body::Raw(too_large)),
        BadCall::new("a wrong token", M::GET, "/api/v1/apps", 401).token(Some("wrong-token")),
        BadCall::new("no token", M::GET, "/api/v1/apps", 401).token(None),
        BadCall::new(
            "a wrong token on a valid create",
            M::POST,
            "/api/v1/apps",
            401,
        )
        .body(create(json!({})))
        .token(Some("wrong-token")),
        BadCall::new(
            "a wrong token on a legal stop",
            M::POST,
            &app_path(&running.id, "stop"),
            401,
        )
        .token(Some("wrong-token")),
    ];
    let mut failures = Vec::new();
    for (index, case) in cases.into_iter().enumerate() {
        let BadCall {
            what,
            method,
            path,
            body,
            token,
            expected,
        } = case;
        // Alternate between the nodes: any node answers any call.
        let (node, api) = &apis[index % apis.len()];
        let api = api.with_token(token.as_deref());
        let answer = match api.call(method.clone(), &path, body).await {
            Ok(answer) => answer,
            Err(error) => {
                failures.push(format!("{what} ({method} {path} via {node}): {error}"));
                continue;
            }
        };
        let code = answer.error_code();
        eprintln!(
            "{} test 7: {what}: {method} {path} via {node} -> {} {:?}",
            label(kind),
            answer.status,
            code
        );
        if answer.status != expected {
            failures.push(format!(
                "{what} ({method} {path} via {node}): expected {expected}, got {answer}"
            ));
        } else if let Err(error) = code {
            failures.push(format!("{what} ({method} {path} via {node}): {error}"));
        }
    }
    for (index, (node, api)) in apis.iter().enumerate() {
        let after = stored_apps(api).await;
        assert_eq!(
            after, before[index],
            "the stored apps changed, as node {node} shows them"
        );
    }
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );
    assert_eq!(cluster.marker_lines(&running.name), 1);
    assert_eq!(cluster.marker_lines(&idle.name), 0);
}

both_registries!(bad_input_changes_nothing => zk_bad_input_is_refused_and_changes_nothing, mysql_bad_input_is_refused_and_changes_nothing);

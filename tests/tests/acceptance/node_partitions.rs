//! Issue 12, "Also": partitions that cut one node from one service. Every node reaches its
//! registry and the task database through proxies of its own (`Options::node_proxies`); the test
//! black-holes one of them (packets swallowed, nothing closed: how a partition looks).
//!
//! - **Registry only**: the node still reaches the database, so nothing but its own fencing
//!   keeps it from acting on apps its peers take over. It must stop acting before any peer
//!   adopts one of its apps (with ZooKeeper, whose client cannot say when it last heard from
//!   the server, the peers' lock delay is what makes this hold), and rejoin after the heal.
//! - **Database only**: the node keeps its registry session and so its apps; nobody else may
//!   take them. A stop of one of them, queued through a peer meanwhile, waits and runs once
//!   after the heal; nothing else changes.
//!
//! In both, every poll checks from `/proc` that no app has two copies.

use std::collections::BTreeMap;

use cluster_tests::{App, Cluster, Options, RegistryKind, processes};
use test_support::wait;
use tokio::time::Instant;

use crate::{SETTLE, ms};

/// Remembers the most copies of each app seen at any poll.
fn record_copies(cluster: &Cluster, apps: &[App], seen: &mut BTreeMap<String, usize>) {
    for app in apps {
        let copies = cluster.app_processes(&app.id.0).len();
        let worst = seen.entry(app.name.clone()).or_default();
        *worst = (*worst).max(copies);
    }
}

fn assert_single_copies(copies: &BTreeMap<String, usize>) {
    let doubled: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "apps seen with more than one copy: {doubled:?}"
    );
}

async fn node_cut_from_its_registry_only_stops_before_its_apps_are_taken(kind: RegistryKind) {
    let (mut cluster, apps, baseline) =
        crate::checks::cluster_with_running_apps(Options::new(kind, 3).node_proxies(), 12).await;
    let victim = 1;
    let victim_id = cluster.node(victim).id.clone();
    let held: Vec<String> = crate::checks::owned_by(&apps, &victim_id)
        .iter()
        .map(|app| app.id.0.clone())
        .collect();
    assert!(!held.is_empty(), "{victim_id} owns no app");
    let survivor = cluster.api(0);
    let victim_api = cluster.api(victim);
    let mut copies = BTreeMap::new();

    cluster.node_proxies(victim).registry.black_hole();
    let cut = Instant::now();
    let mut stopped: Option<Instant> = None;
    let mut first_taken: Option<Instant> = None;
    loop {
        record_copies(&cluster, &apps, &mut copies);
        if stopped.is_none() && matches!(victim_api.ready().await, Ok(false)) {
            stopped = Some(Instant::now());
        }
        let now = survivor.apps().await.unwrap_or_default();
        let adopted_by_peers = now
            .iter()
            .filter(|app| held.contains(&app.id.0))
            .filter(|app| {
                app.adopted_by
                    .as_deref()
                    .is_some_and(|node| node != victim_id)
            })
            .count();
        if adopted_by_peers > 0 && first_taken.is_none() {
            first_taken = Some(Instant::now());
        }
        if stopped.is_some() && adopted_by_peers == held.len() {
            break;
        }
        assert!(
            cut.elapsed() < SETTLE,
            "{victim_id} cut from its registry: stopped {stopped:?}, {adopted_by_peers} of {} apps taken",
            held.len()
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    let (stopped, first_taken) = (stopped.unwrap(), first_taken.unwrap());
    assert!(
        stopped < first_taken,
        "{victim_id} still acted {} ms after a peer adopted one of its apps",
        ms(stopped - first_taken)
    );

    cluster.node_proxies(victim).registry.pass();
    let healed = Instant::now();
    loop {
        record_copies(&cluster, &apps, &mut copies);
        if matches!(victim_api.ready().await, Ok(true))
            && crate::checks::owners_are_live(&cluster, true).await.is_ok()
        {
            break;
        }
        assert!(
            healed.elapsed() < SETTLE,
            "{victim_id} did not come back after the heal"
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }
    cluster.wait_converged(SETTLE).await;
    record_copies(&cluster, &apps, &mut copies);
    eprintln!(
        "measured: {kind:?} {victim_id} cut from its registry only ({} apps): stopped acting {} ms into the cut, first app adopted by a peer {} ms into it ({} ms later); back {} ms after the heal; most copies of any app: {}",
        held.len(),
        ms(stopped - cut),
        ms(first_taken - cut),
        ms(first_taken - stopped),
        ms(healed.elapsed()),
        copies.values().max().copied().unwrap_or(0)
    );
    assert_single_copies(&copies);
    let settled = survivor.apps().await.unwrap();
    baseline
        .check_unchanged(&cluster, &settled)
        .unwrap_or_else(|error| panic!("after the cut: {error}"));
}

each_registry!(node_cut_from_its_registry_only_stops_before_its_apps_are_taken => zk_node_cut_from_its_registry_only_stops_before_its_apps_are_taken, mysql_node_cut_from_its_registry_only_stops_before_its_apps_are_taken, etcd_node_cut_from_its_registry_only_stops_before_its_apps_are_taken);

async fn node_cut_from_its_database_only_keeps_its_apps(kind: RegistryKind) {
    let options = Options::new(kind, 3).node_proxies();
    let session = options.session_timeout;
    let (cluster, apps, baseline) = crate::checks::cluster_with_running_apps(options, 12).await;
    let victim = 1;
    let victim_id = cluster.node(victim).id.clone();
    let held = crate::checks::owned_by(&apps, &victim_id);
    let target = (*held
        .first()
        .unwrap_or_else(|| panic!("{victim_id} owns no app")))
    .clone();
    let survivor = cluster.api(0);
    let mut copies = BTreeMap::new();

    cluster.node_proxies(victim).database.black_hole();
    let cut = Instant::now();
    let stop = survivor
        .submit(&target.id, "stop")
        .await
        .expect("a peer queues the stop");
    // Two session timeouts: the victim keeps its session and its apps, nobody takes them, and
    // the queued stop waits for it.
    let until = Instant::now() + session * 2;
    while Instant::now() < until {
        record_copies(&cluster, &apps, &mut copies);
        let now = survivor
            .apps()
            .await
            .unwrap_or_else(|error| panic!("listing apps: {error}"));
        let changed: Vec<String> = now
            .iter()
            .filter(|app| held.iter().any(|held| held.id.0 == app.id.0))
            .filter(|app| app.owner.as_deref() != Some(&victim_id) || app.state != "RUNNING")
            .map(|app| format!("{} {} owner {:?}", app.name, app.state, app.owner))
            .collect();
        let target_alive = target.pid().is_some_and(processes::is_alive);
        assert!(
            changed.is_empty() && target_alive,
            "while {victim_id} was cut from the database: changed {changed:?}, target process alive {target_alive}\n{}",
            cluster.log_reports(30)
        );
        tokio::time::sleep(wait::POLL_INTERVAL).await;
    }

    cluster.node_proxies(victim).database.pass();
    let healed = Instant::now();
    crate::checks::task_succeeds(&survivor, &stop.task_id, "the stop queued during the cut").await;
    let stopped_after = healed.elapsed();
    let settled = survivor.apps().await.unwrap();
    record_copies(&cluster, &apps, &mut copies);
    let target_now = settled
        .iter()
        .find(|app| app.id.0 == target.id.0)
        .expect("the target is listed");
    assert_eq!(target_now.state, "STOPPED", "{target_now:?}");
    assert!(
        !target.pid().is_some_and(processes::is_alive),
        "the stopped app's process is gone"
    );
    let mut others = baseline.clone();
    others.apps.remove(&target.id.0);
    let rest: Vec<App> = settled
        .into_iter()
        .filter(|app| app.id.0 != target.id.0)
        .collect();
    others
        .check_unchanged(&cluster, &rest)
        .unwrap_or_else(|error| panic!("after the heal: {error}"));
    assert_single_copies(&copies);
    eprintln!(
        "measured: {kind:?} {victim_id} cut from the database only for {} ms: kept its {} apps, no peer took one; the stop queued meanwhile ran {} ms after the heal",
        ms(healed - cut),
        held.len(),
        ms(stopped_after)
    );
}

each_registry!(node_cut_from_its_database_only_keeps_its_apps => zk_node_cut_from_its_database_only_keeps_its_apps, mysql_node_cut_from_its_database_only_keeps_its_apps, etcd_node_cut_from_its_database_only_keeps_its_apps);

//! Issue 16: the bounded-load assignment in a real cluster. Three nodes under
//! `dispatch.assignment: bounded` (ε = 0.1), the third of `node.capacity` 2; 60 RUNNING
//! `process` apps of weights 1, 1, 2, 4, 8, 16 (total W = 320). Every node must own at most
//! ⌊1.1 × W × capacity / total capacity⌋ (the bound is guaranteed here: ε·W = 32 ≥ (N − 1) ×
//! the largest weight), every node's API must name the same owner for every app, that owner
//! must hold the app's lease, and each node must publish the weight it owns. Then a node of
//! capacity 1 is SIGKILLed: the same must hold for the two survivors, with every app still on
//! its first process.

use std::collections::BTreeMap;

use cluster_tests::{App, Cluster, Options, RegistryKind};
use serde_json::json;
use test_support::wait::eventually;

use crate::checks::{Baseline, owners_are_live};
use crate::{SETTLE, label};

/// ε of the test cluster (`dispatch.epsilon`'s default).
const EPSILON: f64 = 0.1;
/// The apps' weights, in turn.
const WEIGHTS: [u64; 6] = [1, 1, 2, 4, 8, 16];
const APPS: usize = 60;

async fn bounded_assignment_holds_through_a_failover(kind: RegistryKind) {
    let options = Options::new(kind, 2).env("CONSOLE__DISPATCH__ASSIGNMENT", "bounded");
    let mut cluster = Cluster::start(options).await;
    let big = cluster
        .add_node_with_env(&[("CONSOLE__NODE__CAPACITY", "2")])
        .await;
    let mut capacities: BTreeMap<String, u64> =
        cluster.live_ids().into_iter().map(|id| (id, 1)).collect();
    capacities.insert(cluster.node(big).id.clone(), 2);

    let apis = cluster.live_apis();
    let mut created = Vec::with_capacity(APPS);
    for index in 0..APPS {
        let name = format!("weighted-{index:02}");
        let weight = WEIGHTS[index % WEIGHTS.len()];
        let (node, api) = &apis[index % apis.len()];
        let body = json!({
            "name": name, "executor": "process", "spec": cluster.marker_spec(&name),
            "weight": weight,
        });
        let app = api
            .create_app_with(body)
            .await
            .unwrap_or_else(|error| panic!("creating {name} on {node}: {error}"));
        assert_eq!(app.weight, weight, "{app:?}");
        created.push(app);
    }
    let running = cluster.start_and_wait_running(&created, SETTLE).await;
    let baseline = Baseline::of(&running);
    let total: u64 = running.iter().map(|app| app.weight).sum();

    let before = eventually(
        "three nodes own weights within the bound, agree on owners and publish them",
        SETTLE,
        || within_bound(&cluster, &capacities, total),
    )
    .await;
    eprintln!(
        "measured: {} bounded: owned weights {before:?} of {total}, capacities {capacities:?}",
        label(kind)
    );

    let victim = (0..cluster.len())
        .find(|&index| index != big)
        .expect("a node of capacity 1");
    let victim_id = cluster.node(victim).id.clone();
    assert!(
        before.get(&victim_id).is_some_and(|&weight| weight > 0),
        "{victim_id} owns nothing to fail over: {before:?}"
    );
    cluster.kill(victim).await;
    capacities.remove(&victim_id);
    let after = eventually(
        "the survivors own weights within the bound after the SIGKILL",
        SETTLE,
        || within_bound(&cluster, &capacities, total),
    )
    .await;
    eprintln!(
        "measured: {} bounded after SIGKILL of {victim_id}: owned weights {after:?} of {total}",
        label(kind)
    );
    let apps = owners_are_live(&cluster, true)
        .await
        .unwrap_or_else(|error| panic!("after the failover: {error}"));
    baseline
        .check_unchanged(&cluster, &apps)
        .unwrap_or_else(|error| panic!("after the failover: {error}"));
    for app in &apps {
        assert_eq!(
            cluster.app_processes(&app.id.0).len(),
            1,
            "one copy of {}",
            app.name
        );
    }
}

/// Every live node agrees on every app's owner, which holds its lease; each owner's weight is
/// within ⌊(1+ε) × total × capacity / total capacity⌋; every node lists the live nodes with
/// their capacities and the weight each publishes equals what its apps add up to. Answers the
/// owned weight by node.
async fn within_bound(
    cluster: &Cluster,
    capacities: &BTreeMap<String, u64>,
    total: u64,
) -> Result<BTreeMap<String, u64>, String> {
    let apps: Vec<App> = owners_are_live(cluster, true).await?;
    let mut owned: BTreeMap<String, u64> = capacities.keys().map(|id| (id.clone(), 0)).collect();
    for app in &apps {
        let owner = app.owner.clone().unwrap_or_default();
        if app.adopted_by.as_ref() != Some(&owner) {
            return Err(format!(
                "{} is owned by {owner} but adopted by {:?}",
                app.name, app.adopted_by
            ));
        }
        *owned.entry(owner).or_default() += app.weight;
    }
    let total_capacity: u64 = capacities.values().sum();
    for (node, &weight) in &owned {
        let capacity = capacities.get(node).copied().unwrap_or(0);
        let limit = ((1.0 + EPSILON) * (total * capacity) as f64 / total_capacity as f64).floor();
        if weight as f64 > limit {
            return Err(format!(
                "{node} (capacity {capacity}) owns weight {weight}, over its limit {limit}: {owned:?}"
            ));
        }
    }
    for (node, list) in cluster.node_lists().await? {
        let seen: BTreeMap<String, (u64, u64)> = list
            .iter()
            .map(|info| (info.id.clone(), (info.capacity, info.owned_weight)))
            .collect();
        let expected: BTreeMap<String, (u64, u64)> = owned
            .iter()
            .map(|(id, &weight)| (id.clone(), (capacities[id], weight)))
            .collect();
        if seen != expected {
            return Err(format!(
                "node {node} lists (capacity, owned weight) {seen:?}, expected {expected:?}"
            ));
        }
    }
    Ok(owned)
}

#[tokio::test]
async fn mysql_bounded_assignment_holds_through_a_failover() {
    crate::timed(
        "mysql_bounded_assignment_holds_through_a_failover",
        bounded_assignment_holds_through_a_failover(RegistryKind::Mysql),
    )
    .await;
}

#[tokio::test]
async fn zk_bounded_assignment_holds_through_a_failover() {
    crate::timed(
        "zk_bounded_assignment_holds_through_a_failover",
        bounded_assignment_holds_through_a_failover(RegistryKind::Zookeeper),
    )
    .await;
}

/// Nodes configured to split the apps differently compute different owners: each says so in its
/// log, at error level, naming the keys, and each lists what its peers say.
#[tokio::test]
async fn mysql_a_node_that_splits_the_apps_otherwise_is_reported() {
    crate::timed(
        "mysql_a_node_that_splits_the_apps_otherwise_is_reported",
        async {
            let options = Options::new(RegistryKind::Mysql, 1)
                .env("CONSOLE__DISPATCH__ASSIGNMENT", "bounded");
            let mut cluster = Cluster::start(options).await;
            let other = cluster
                .add_node_with_env(&[("CONSOLE__DISPATCH__ASSIGNMENT", "rendezvous")])
                .await;
            let said = |index: usize| {
                std::fs::read_to_string(cluster.node(index).log_path()).is_ok_and(|log| {
                    log.contains("live nodes split the apps otherwise")
                        && log.contains("dispatch.assignment")
                })
            };
            eventually("both nodes log the other's assignment", SETTLE, || async {
                said(0) && said(other)
            })
            .await;
            let listed: BTreeMap<String, Option<String>> = cluster
                .api(0)
                .nodes()
                .await
                .unwrap()
                .into_iter()
                .map(|node| (node.id, node.assignment))
                .collect();
            assert_eq!(
                listed.values().cloned().collect::<Vec<_>>(),
                [
                    Some("bounded(epsilon=0.1)".to_owned()),
                    Some("rendezvous".to_owned())
                ],
                "{listed:?}"
            );
        },
    )
    .await;
}

//! Memory: RSS of each node right after start ([`rss_all`], before the other scenarios), of
//! the node owning the most apps with `--apps` apps RUNNING, and of one node left owning all.

use std::collections::BTreeMap;

use cluster_tests::eventually;
use serde_json::json;

use crate::measure::{round3, rss_mib};
use crate::report::Figures;
use crate::setup::{Bench, EXIT_TIMEOUT, MOVE_TIMEOUT};

/// VmRSS of every running node, by node id, in MiB.
pub fn rss_all(bench: &Bench) -> BTreeMap<String, f64> {
    let cluster = &bench.cluster;
    cluster
        .live()
        .into_iter()
        .filter_map(|index| {
            let node = cluster.node(index);
            let rss = rss_mib(node.pid()?)?;
            Some((node.id.clone(), rss))
        })
        .collect()
}

/// The loaded part; `idle` is [`rss_all`] right after the cluster started. The last scenario
/// of its cluster: it stops all nodes but one.
pub async fn run(bench: &mut Bench, idle: &BTreeMap<String, f64>, figures: &mut Figures) {
    let count = bench.args.apps;
    let ids = bench.apps(count).await;
    bench.ensure_state(&ids, "start").await;
    let nodes = bench
        .first_api()
        .nodes()
        .await
        .unwrap_or_else(|error| panic!("listing nodes: {error}"));
    let Some(busiest) = nodes.iter().max_by_key(|node| node.owned_apps) else {
        panic!("no node listed");
    };
    let loaded = rss_all(bench);
    let busiest_rss = loaded.get(&busiest.id).copied().unwrap_or(0.0);
    let idle_mean = if idle.is_empty() {
        0.0
    } else {
        round3(idle.values().sum::<f64>() / idle.len() as f64)
    };
    figures.insert("memory_idle_rss_mib", idle_mean);
    figures.insert("memory_loaded_rss_mib", busiest_rss);
    // The other nodes leave (SIGTERM), so that one node owns and monitors every app.
    let sole = bench.cluster.live()[0];
    for index in bench.cluster.live() {
        if index != sole {
            bench.cluster.terminate(index, EXIT_TIMEOUT).await;
        }
    }
    let sole_api = bench.cluster.api(sole);
    bench.wait_settled(&ids, Some(sole_api.clone())).await;
    // `owned_apps` is the load the node publishes (refreshed every second).
    let sole_owned = eventually(
        "the one node left lists every app as its own",
        MOVE_TIMEOUT,
        || {
            let api = sole_api.clone();
            async move {
                let nodes = api.nodes().await?;
                match nodes.as_slice() {
                    [node] if node.owned_apps == count as u64 => Ok(node.owned_apps),
                    other => Err(format!("nodes listed: {other:?}")),
                }
            }
        },
    )
    .await;
    let sole_id = bench.cluster.node(sole).id.clone();
    let sole_rss = rss_all(bench).get(&sole_id).copied().unwrap_or(0.0);
    figures.insert("memory_sole_rss_mib", sole_rss);
    bench.emit(
        "memory",
        json!({
            "idle_rss_mib": idle,
            "idle_rss_mib_mean": idle_mean,
            "loaded_node": busiest.id,
            "loaded_node_owned_apps": busiest.owned_apps,
            "loaded_rss_mib": busiest_rss,
            "loaded_rss_mib_all": loaded,
            "sole_node": sole_id,
            "sole_node_owned_apps": sole_owned,
            "sole_rss_mib": sole_rss,
            "apps_running": count,
            "measured": "VmRSS of /proc/<pid>/status: every node right after start (0 apps); \
                the node with the most owned_apps once all apps are RUNNING (after the other \
                scenarios of this cluster ran); then the one node left after the others were \
                SIGTERMed, owning and monitoring every app",
        }),
    );
}

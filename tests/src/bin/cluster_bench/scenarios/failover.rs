//! Failover: SIGKILL of the node holding the most apps; the time until every app is adopted by
//! a live owner.

use cluster_tests::Id;
use serde_json::json;
use tokio::time::Instant;

use super::moves::{ADOPTED_BY, busiest_node, watch_moves};
use crate::measure::ms;
use crate::report::Figures;
use crate::setup::Bench;

/// Answers the victim's index (the caller restarts it).
pub async fn run(bench: &mut Bench, ids: &[Id], figures: &mut Figures) -> usize {
    let victim = busiest_node(bench, ids, "failover", "SIGKILL").await;
    let killed = Instant::now();
    let gone = bench.cluster.kill(victim.index).await;
    let (owners_live, adopted) = watch_moves(&victim, ids, killed).await;
    let failover_ms = ms(adopted.duration_since(killed));
    figures.insert("failover_ms", failover_ms);
    bench.emit_with_registry_timings(
        "failover",
        json!({
            "apps": ids.len(),
            "victim": victim.id,
            "victim_apps": victim.holds,
            "failover_ms": failover_ms,
            "owners_live_ms": owners_live.map(|at| ms(at.duration_since(killed))),
            "process_gone_ms": ms(gone.duration_since(killed)),
            "measured": "SIGKILL sent -> every app shows owner = a live node and adopted_by = \
                that owner (GET /api/v1/apps of a survivor, polled every 25 ms)",
            "adopted_by": ADOPTED_BY,
        }),
    );
    victim.index
}

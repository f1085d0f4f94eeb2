//! Handoff: SIGTERM of the node holding the most apps; the time until every app is adopted by
//! a remaining node, and until the process exits.

use cluster_tests::Id;
use serde_json::json;
use tokio::time::Instant;

use super::moves::{ADOPTED_BY, busiest_node, watch_moves};
use crate::measure::ms;
use crate::report::Figures;
use crate::setup::{Bench, EXIT_TIMEOUT};

pub async fn run(bench: &mut Bench, ids: &[Id], figures: &mut Figures) {
    let leaving = busiest_node(bench, ids, "handoff", "SIGTERM").await;
    let node = bench.cluster.node_mut(leaving.index);
    let signalled = Instant::now();
    node.terminate();
    let ((status, exited), (owners_live, adopted)) = tokio::join!(
        node.wait_exit(EXIT_TIMEOUT),
        watch_moves(&leaving, ids, signalled)
    );
    let handoff_ms = ms(adopted.duration_since(signalled));
    let exit_ms = ms(exited.duration_since(signalled));
    figures.insert("handoff_ms", handoff_ms);
    figures.insert("handoff_exit_ms", exit_ms);
    bench.emit_with_registry_timings(
        "handoff",
        json!({
            "apps": ids.len(),
            "leaving": leaving.id,
            "leaving_apps": leaving.holds,
            "handoff_ms": handoff_ms,
            "owners_live_ms": owners_live.map(|at| ms(at.duration_since(signalled))),
            "exit_ms": exit_ms,
            "exit_status": status.code(),
            "measured": "SIGTERM sent -> every app shows owner = a remaining node and \
                adopted_by = that owner (GET /api/v1/apps of a remaining node, polled every \
                25 ms); exit_ms: SIGTERM sent -> process exit seen",
            "adopted_by": ADOPTED_BY,
        }),
    );
}

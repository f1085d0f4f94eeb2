//! Throughput: `start` of `--apps` apps as fast as `--concurrency` requests in flight allow,
//! until every task finished; then `stop` of all of them.

use cluster_tests::wait;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::load::LoadMeter;
use crate::measure::{counter_sum, ms, round3};
use crate::report::Figures;
use crate::setup::{Bench, wait_no_unfinished};

pub async fn run(bench: &mut Bench, figures: &mut Figures) {
    let count = bench.args.apps;
    let ids = bench.apps(count).await;
    bench.ensure_state(&ids, "stop").await;
    let mut fields = serde_json::Map::new();
    fields.insert("apps".into(), json!(count));
    fields.insert("concurrency".into(), json!(bench.args.concurrency));
    for (action, figure, statements_figure, mariadb_figure, nodes_figure) in [
        (
            "start",
            "throughput_start_tasks_per_s",
            "throughput_start_statements_per_task",
            "throughput_start_mariadb_cpu_pct",
            "throughput_start_nodes_cpu_pct",
        ),
        (
            "stop",
            "throughput_stop_tasks_per_s",
            "throughput_stop_statements_per_task",
            "throughput_stop_mariadb_cpu_pct",
            "throughput_stop_nodes_cpu_pct",
        ),
    ] {
        eprintln!("throughput: {action} of {count} apps");
        let failed_before = counter_sum(&bench.apis(), "console_tasks_failed").await;
        let succeeded_before = counter_sum(&bench.apis(), "console_tasks_succeeded").await;
        let meter = LoadMeter::start(bench).await;
        let started = Instant::now();
        let batch = bench.submit_all(&ids, action).await;
        wait_no_unfinished(&bench.first_api()).await;
        let elapsed = started.elapsed();
        let load = meter.finish().await;
        eprintln!(
            "throughput: {action}: {:.0} tasks/s, {} statements per task, CPU {}",
            count as f64 / elapsed.as_secs_f64(),
            load.statements_per(count)
                .map_or_else(|| "?".to_owned(), |per| per.to_string()),
            load.cpu_line()
        );
        fields.insert(format!("{action}_load"), load.json(count));
        if let Some(per_task) = load.statements_per(count) {
            figures.insert(statements_figure, per_task);
        }
        if let Some(pct) = load.cpu_pct.get("mariadb") {
            figures.insert(mariadb_figure, *pct);
        }
        figures.insert(nodes_figure, load.nodes_cpu_pct());
        let failed = counter_sum(&bench.apis(), "console_tasks_failed").await - failed_before;
        let succeeded =
            counter_sum(&bench.apis(), "console_tasks_succeeded").await - succeeded_before;
        let rate = round3(count as f64 / elapsed.as_secs_f64());
        figures.insert(figure, rate);
        fields.insert(format!("{action}_tasks_per_s"), json!(rate));
        fields.insert(format!("{action}_elapsed_ms"), json!(ms(elapsed)));
        fields.insert(
            format!("{action}_submitted_ms"),
            json!(ms(batch.submitted_in)),
        );
        fields.insert(format!("{action}_succeeded"), json!(succeeded));
        fields.insert(format!("{action}_failed"), json!(failed));
        fields.insert(format!("{action}_rejected"), json!(batch.errors.len()));
        if let Some(error) = batch.errors.first() {
            figures.warn(format!(
                "{} throughput: {} {action} submissions failed, e.g. {error}",
                bench.label(),
                batch.errors.len()
            ));
        }
        if failed > 0.0 {
            figures.warn(format!(
                "{} throughput: {failed} {action} tasks FAILED",
                bench.label()
            ));
        }
        // A check: every app got where the action leads.
        bench.ensure_state(&ids, action).await;
    }
    fields.insert(
        "measured".into(),
        json!(format!(
            "first submit -> no PENDING/RUNNING task left (console_tasks gauge of one node's \
             /metrics, polled every {} ms once all submissions were answered)",
            wait::POLL_INTERVAL.as_millis()
        )),
    );
    bench.emit("throughput", Value::Object(fields));
}

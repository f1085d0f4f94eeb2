//! What the bench prints: one JSON line per scenario on stdout, the markdown summary table at
//! the end, and (on stderr) the WARN/ERROR lines of the node logs.

use std::collections::{BTreeMap, BTreeSet};

use cluster_tests::{Cluster, RegistryKind};
use serde_json::{Value, json};

use crate::cli::Mode;

/// The rows of the summary table: figure name and label.
const SUMMARY: &[(&str, &str)] = &[
    ("latency_p50_ms", "latency p50 (ms)"),
    ("latency_p99_ms", "latency p99 (ms)"),
    ("latency_mean_ms", "latency mean (ms)"),
    ("latency_max_ms", "latency max (ms)"),
    ("throughput_start_tasks_per_s", "throughput start (tasks/s)"),
    ("throughput_stop_tasks_per_s", "throughput stop (tasks/s)"),
    (
        "throughput_start_statements_per_task",
        "throughput start: DB statements per task (Questions / tasks)",
    ),
    (
        "throughput_stop_statements_per_task",
        "throughput stop: DB statements per task (Questions / tasks)",
    ),
    (
        "throughput_start_mariadb_cpu_pct",
        "throughput start: MariaDB CPU (% of one core; 200 = the machine)",
    ),
    (
        "throughput_stop_mariadb_cpu_pct",
        "throughput stop: MariaDB CPU (% of one core)",
    ),
    (
        "throughput_start_nodes_cpu_pct",
        "throughput start: CPU of the 3 nodes together (% of one core)",
    ),
    (
        "throughput_stop_nodes_cpu_pct",
        "throughput stop: CPU of the 3 nodes together (% of one core)",
    ),
    (
        "idle_stopped_db_questions_per_node_s",
        "idle, apps STOPPED: DB statements (Questions/s per node)",
    ),
    (
        "idle_stopped_db_selects_per_node_s",
        "idle, apps STOPPED: DB selects (Com_select/s per node)",
    ),
    (
        "idle_stopped_db_rows_read_per_node_s",
        "idle, apps STOPPED: DB rows read (Rows_read/s per node)",
    ),
    (
        "idle_stopped_zk_packets_per_node_s",
        "idle, apps STOPPED: ZooKeeper packets (/s per node)",
    ),
    (
        "idle_db_questions_per_node_s",
        "idle, apps RUNNING: DB statements (Questions/s per node)",
    ),
    (
        "idle_db_selects_per_node_s",
        "idle, apps RUNNING: DB selects (Com_select/s per node)",
    ),
    (
        "idle_db_rows_read_per_node_s",
        "idle, apps RUNNING: DB rows read (Rows_read/s per node)",
    ),
    (
        "idle_zk_packets_per_node_s",
        "idle, apps RUNNING: ZooKeeper packets (/s per node)",
    ),
    ("failover_ms", "failover: SIGKILL to all adopted (ms)"),
    (
        "flink_latency_p50_ms",
        "flink: 202 to the job RUNNING on Flink, p50 (ms)",
    ),
    (
        "flink_latency_p99_ms",
        "flink: 202 to the job RUNNING on Flink, p99 (ms)",
    ),
    (
        "flink_overview_calls_per_tick_1_job",
        "flink: GET /jobs/overview per monitor tick, 1 job (all nodes)",
    ),
    (
        "flink_overview_calls_per_tick_many_jobs",
        "flink: GET /jobs/overview per monitor tick, --flink-jobs jobs (all nodes)",
    ),
    ("handoff_ms", "handoff: SIGTERM to all adopted (ms)"),
    ("handoff_exit_ms", "handoff: SIGTERM to process exit (ms)"),
    (
        "memory_idle_rss_mib",
        "RSS idle, 0 apps, mean of nodes (MiB)",
    ),
    (
        "memory_loaded_rss_mib",
        "RSS busiest node, all apps RUNNING (MiB)",
    ),
    (
        "memory_sole_rss_mib",
        "RSS of one node owning all apps RUNNING (MiB)",
    ),
];

/// The summary figures of one registry and mode, by figure name (a row of [`SUMMARY`]), and
/// what may have disturbed them.
#[derive(Debug, Default)]
pub struct Figures {
    values: BTreeMap<&'static str, f64>,
    warnings: Vec<String>,
}

impl Figures {
    pub fn insert(&mut self, name: &'static str, value: f64) {
        self.values.insert(name, value);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// Notes a disturbance (printed now, and listed under the summary table).
    pub fn warn(&mut self, warning: String) {
        eprintln!("WARNING: {warning}");
        self.warnings.push(warning);
    }
}

/// `registry`, `mode` and the scenario's own fields, as one JSON line on stdout.
pub fn emit(scenario: &str, registry: RegistryKind, mode: Mode, fields: Value) {
    let mut line = json!({
        "scenario": scenario,
        "registry": registry.config_name(),
        "mode": mode.name(),
    });
    if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    println!("{line}");
}

/// The markdown table of the figures, one row per figure and registry, with ours/baseline.
pub fn summary(results: &[(RegistryKind, Mode, Figures)]) -> String {
    let mut text = String::from(
        "\n## cluster-bench summary (3 nodes on one host; ratio = ours / baseline)\n\n\
         | registry | figure | ours | baseline | ours/baseline |\n|---|---|---:|---:|---:|\n",
    );
    let registries: BTreeSet<&str> = results
        .iter()
        .map(|(registry, _, _)| registry.config_name())
        .collect();
    let registries: Vec<&str> = ["zookeeper", "mysql"]
        .into_iter()
        .filter(|name| registries.contains(name))
        .collect();
    let find = |registry: &str, mode: Mode, figure: &str| {
        results
            .iter()
            .find(|(kind, m, _)| kind.config_name() == registry && *m == mode)
            .and_then(|(_, _, figures)| figures.get(figure))
    };
    let show =
        |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |value| format!("{value}"));
    for registry in registries {
        for (figure, label) in SUMMARY {
            let ours = find(registry, Mode::Ours, figure);
            let baseline = find(registry, Mode::Baseline, figure);
            if ours.is_none() && baseline.is_none() {
                continue;
            }
            let ratio = match (ours, baseline) {
                (Some(ours), Some(baseline)) if baseline != 0.0 => {
                    format!("{:.3}", ours / baseline)
                }
                _ => "-".to_owned(),
            };
            text.push_str(&format!(
                "| {registry} | {label} | {} | {} | {ratio} |\n",
                show(ours),
                show(baseline)
            ));
        }
    }
    let warnings: Vec<&String> = results
        .iter()
        .flat_map(|(_, _, figures)| &figures.warnings)
        .collect();
    if warnings.is_empty() {
        text.push_str(
            "\nNo disturbance noticed (background windows quiet, no other test databases).\n",
        );
    } else {
        text.push_str("\nWarnings:\n");
        for warning in warnings {
            text.push_str(&format!("- {warning}\n"));
        }
    }
    text
}

/// Prints, per node, how many WARN and ERROR lines its log has and the distinct messages
/// (digits folded), to stderr.
pub fn report_logs(cluster: &Cluster) {
    for index in 0..cluster.len() {
        let node = cluster.node(index);
        let Ok(text) = std::fs::read_to_string(node.log_path()) else {
            eprintln!("logs: cannot read {}", node.log_path().display());
            continue;
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let _timestamp = words.next();
            let Some(level @ ("WARN" | "ERROR")) = words.next() else {
                continue;
            };
            let message: String = words
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .take(160)
                .collect();
            *counts.entry(format!("{level} {message}")).or_default() += 1;
        }
        let total: usize = counts.values().sum();
        eprintln!("logs: node {}: {total} WARN/ERROR lines", node.id);
        for (message, count) in counts.iter().take(12) {
            eprintln!("logs:   {count:>5} x {message}");
        }
    }
}

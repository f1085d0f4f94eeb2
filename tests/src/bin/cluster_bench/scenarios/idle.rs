//! Idle: no requests for `--idle-seconds`, first with the `--apps` apps STOPPED (what dispatch
//! costs at rest), then with all of them RUNNING (what monitoring adds); MariaDB and ZooKeeper
//! counters less the background window measured before the cluster started.

use std::time::Duration;

use serde_json::{Value, json};

use crate::disturbance::{check_other_databases, is_quiet};
use crate::measure::{Window, count_rows, measure_window, round3};
use crate::report::Figures;
use crate::setup::Bench;

/// One idle window: the action that brings the apps there, their state, the prefix of its
/// JSON fields, and its summary figures (statements, selects, rows read, ZooKeeper packets).
struct Phase {
    action: &'static str,
    state: &'static str,
    prefix: &'static str,
    figures: [&'static str; 4],
}

const PHASES: [Phase; 2] = [
    Phase {
        action: "stop",
        state: "STOPPED",
        prefix: "stopped",
        figures: [
            "idle_stopped_db_questions_per_node_s",
            "idle_stopped_db_selects_per_node_s",
            "idle_stopped_db_rows_read_per_node_s",
            "idle_stopped_zk_packets_per_node_s",
        ],
    },
    Phase {
        action: "start",
        state: "RUNNING",
        prefix: "running",
        figures: [
            "idle_db_questions_per_node_s",
            "idle_db_selects_per_node_s",
            "idle_db_rows_read_per_node_s",
            "idle_zk_packets_per_node_s",
        ],
    },
];

pub async fn run(bench: &mut Bench, background: &Window, figures: &mut Figures) {
    let count = bench.args.apps;
    let ids = bench.apps(count).await;
    let mut fields = serde_json::Map::new();
    fields.insert("apps".into(), json!(count));
    fields.insert("nodes".into(), json!(bench.cluster.live().len()));
    fields.insert(
        "monitor_interval_ms".into(),
        json!(bench.cluster.monitor_interval().as_millis()),
    );
    fields.insert(
        "background_window_s".into(),
        json!(round3(background.seconds)),
    );
    fields.insert("background_questions".into(), json!(background.questions));
    fields.insert("background_selects".into(), json!(background.selects));
    fields.insert("background_rows_read".into(), json!(background.rows_read));
    if let Some(packets) = background.zk_packets {
        fields.insert("background_zk_packets".into(), json!(packets));
    }
    let mut other_test_databases = background.other_test_databases;
    for phase in &PHASES {
        bench.ensure_state(&ids, phase.action).await;
        let (window, task_rows) = idle_window(bench, count, phase.state).await;
        other_test_databases = other_test_databases.max(window.other_test_databases);
        let nodes = bench.cluster.live().len() as f64;
        let net = |cluster: f64, bg: f64| round3((cluster - bg) / nodes);
        let questions = net(window.questions_per_s(), background.questions_per_s());
        let selects = net(window.selects_per_s(), background.selects_per_s());
        let rows_read = net(window.rows_read_per_s(), background.rows_read_per_s());
        let mut add = |name: &str, value: Value| {
            fields.insert(format!("{}_{name}", phase.prefix), value);
        };
        add("window_s", json!(round3(window.seconds)));
        add("task_rows", json!(task_rows));
        add("db_questions_per_node_s", json!(questions));
        add("db_selects_per_node_s", json!(selects));
        add("raw_questions", json!(window.questions));
        add("raw_selects", json!(window.selects));
        add("db_rows_read_per_node_s", json!(rows_read));
        add("raw_rows_read", json!(window.rows_read));
        let [
            questions_figure,
            selects_figure,
            rows_read_figure,
            zk_figure,
        ] = phase.figures;
        figures.insert(questions_figure, questions);
        figures.insert(selects_figure, selects);
        figures.insert(rows_read_figure, rows_read);
        if let (Some(packets), Some(bg)) = (window.zk_packets, background.zk_packets) {
            let zk = net(
                packets as f64 / window.seconds,
                bg as f64 / background.seconds,
            );
            add("zk_packets_per_node_s", json!(zk));
            add("raw_zk_packets", json!(packets));
            figures.insert(zk_figure, zk);
        }
    }
    fields.insert("other_test_databases".into(), json!(other_test_databases));
    fields.insert("background_quiet".into(), json!(is_quiet(background)));
    check_other_databases(&bench.label(), other_test_databases, figures);
    fields.insert(
        "measured".into(),
        json!(
            "SHOW GLOBAL STATUS Questions/Com_select/Rows_read (and ZooKeeper mntr \
             zk_packets_received) \
             deltas over the window, minus the same deltas over a window of the same length \
             before the cluster started (which holds the bench's own reads), / nodes / \
             seconds; once with every app STOPPED, once with every app RUNNING"
        ),
    );
    bench.emit_with_registry_timings("idle", Value::Object(fields));
}

/// One idle window of the cluster (apps in `state`); answers it and the task rows.
async fn idle_window(bench: &Bench, count: usize, state: &str) -> (Window, i64) {
    let cluster = &bench.cluster;
    let ours: Vec<String> = [
        Some(cluster.store_database().to_owned()),
        cluster.registry_database().map(str::to_owned),
    ]
    .into_iter()
    .flatten()
    .collect();
    let task_rows = count_rows(cluster.mariadb(), cluster.store_database(), "tasks")
        .await
        .unwrap_or_else(|error| panic!("counting tasks: {error}"));
    let window = Duration::from_secs(bench.args.idle_seconds);
    eprintln!("idle: {window:?} window with {count} apps {state} ({task_rows} task rows)");
    let measured = measure_window(bench.registry, window, &ours)
        .await
        .unwrap_or_else(|error| panic!("idle window ({state}): {error}"));
    (measured, task_rows)
}

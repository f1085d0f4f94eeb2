//! `cluster-bench`: the cluster benchmark (issue 7). It runs real 3-node clusters of
//! `console-server` on loopback, once per registry (ZooKeeper, MySQL) and dispatch mode (`ours`,
//! and the StreamPark `baseline`), and measures them.
//!
//! ```text
//! cargo run --release -p cluster-tests --bin cluster-bench -- \
//!     --registry zookeeper|mysql|both --mode ours|baseline|both \
//!     [--scenario latency,throughput,idle,failover,handoff,memory] [--apps 1000]
//! ```
//!
//! Every node runs with `CONSOLE_BENCHMARK_EXECUTOR=noop` (apps are `noop` apps with spec `{}`:
//! the figures measure coordination, not `fork`/`exec`); `baseline` adds
//! `CONSOLE_BENCHMARK_DISPATCH=streampark` (every node reads the whole task table every 50 ms,
//! no wake-ups). Each scenario prints one JSON line to stdout; at the end a markdown table with
//! the ratio ours/baseline of every figure follows. Progress goes to stderr.
//!
//! Per registry and mode, one cluster runs `memory` (idle part), `latency`, `throughput`,
//! `idle` (a window with the apps STOPPED, then one with them RUNNING) and `memory` (loaded
//! part) in that order; a second, fresh cluster with
//! `--failover-apps` RUNNING apps runs `failover` (SIGKILL), then restarts the victim and runs
//! `handoff` (SIGTERM). Clusters are torn down (databases, namespace) between runs.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use cluster_tests::processes;
use cluster_tests::services::{self, MariaDb};
use cluster_tests::{Api, App, Cluster, Id, Options, RegistryKind, binary, eventually, wait};
use futures::FutureExt;
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long one app may take from its submission to RUNNING in the latency scenario.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a batch of tasks (throughput, set-up) may take to finish.
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);
/// How long failover and handoff may take.
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed node may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The size of the app pages the bench reads (the API's maximum).
const PAGE: usize = 500;
/// What `adopted_by` means, as printed with the failover and handoff figures.
const ADOPTED_BY: &str = "adopted_by is the node holding the app's lease in the store: the new \
    owner's worker takes it in Store::adopt_app (fencing the dead holder's epoch, or after the \
    leaving node released it) and then probes the RUNNING app at once (attach), never restarting it";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RegistryArg {
    Zookeeper,
    Mysql,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Ours,
    Baseline,
    Both,
}

/// How the nodes dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// This project: wake-ups, an indexed 1 s fallback poll.
    Ours,
    /// `CONSOLE_BENCHMARK_DISPATCH=streampark`.
    Baseline,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    Latency,
    Throughput,
    Idle,
    Failover,
    Handoff,
    Memory,
}

/// The command line.
#[derive(Debug, Clone, Parser)]
#[command(about = "Benchmarks 3-node console clusters: ours against the StreamPark baseline")]
struct Args {
    /// The registry (or both, one after the other).
    #[arg(long, value_enum, default_value = "both")]
    registry: RegistryArg,
    /// The dispatch mode (or both, one after the other).
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// The scenarios to run (they always run in the documented order).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latency,throughput,idle,failover,handoff,memory"
    )]
    scenario: Vec<Scenario>,
    /// Apps of the throughput, idle and memory scenarios.
    #[arg(long, default_value_t = 1000)]
    apps: usize,
    /// Sequential samples of the latency scenario (one fresh app each).
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Requests in flight in the throughput scenario and during set-up.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Length of the idle window (and of the background window before it), in seconds.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// RUNNING apps of the failover and handoff cluster.
    #[arg(long, default_value_t = 300)]
    failover_apps: usize,
    /// `registry.mysql.heartbeat_interval_ms` (the harness's short test timing by default;
    /// DESIGN.md's default is 1000).
    #[arg(long, default_value_t = 200)]
    mysql_heartbeat_ms: u64,
    /// `registry.mysql.session_timeout_ms` (DESIGN.md's default is 5000).
    #[arg(long, default_value_t = 1000)]
    mysql_session_ms: u64,
}

impl Args {
    fn runs(&self, scenario: Scenario) -> bool {
        self.scenario.contains(&scenario)
    }

    fn registries(&self) -> Vec<RegistryKind> {
        match self.registry {
            RegistryArg::Zookeeper => vec![RegistryKind::Zookeeper],
            RegistryArg::Mysql => vec![RegistryKind::Mysql],
            RegistryArg::Both => vec![RegistryKind::Zookeeper, RegistryKind::Mysql],
        }
    }

    fn modes(&self) -> Vec<Mode> {
        match self.mode {
            ModeArg::Ours => vec![Mode::Ours],
            ModeArg::Baseline => vec![Mode::Baseline],
            ModeArg::Both => vec![Mode::Ours, Mode::Baseline],
        }
    }
}

/// The summary figures of one registry and mode, by figure name, and what may have disturbed
/// them.
#[derive(Debug, Default)]
struct Figures {
    values: BTreeMap<&'static str, f64>,
    warnings: Vec<String>,
}

impl Figures {
    fn insert(&mut self, name: &'static str, value: f64) {
        self.values.insert(name, value);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// Notes a disturbance (printed now, and listed under the summary table).
    fn warn(&mut self, warning: String) {
        eprintln!("WARNING: {warning}");
        self.warnings.push(warning);
    }
}

/// A background window counts as quiet below this many statements per second (the bench's own
/// second `SHOW GLOBAL STATUS` is one per window).
const QUIET_QUESTIONS_PER_S: f64 = 0.5;
/// Background windows tried before the quietest one is taken anyway.
const BACKGROUND_ATTEMPTS: usize = 3;

/// The rows of the summary table: figure name and label.
const SUMMARY: &[(&str, &str)] = &[
    ("latency_p50_ms", "latency p50 (ms)"),
    ("latency_p99_ms", "latency p99 (ms)"),
    ("latency_mean_ms", "latency mean (ms)"),
    ("latency_max_ms", "latency max (ms)"),
    ("throughput_start_tasks_per_s", "throughput start (tasks/s)"),
    ("throughput_stop_tasks_per_s", "throughput stop (tasks/s)"),
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

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cluster-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    if cfg!(debug_assertions) {
        eprintln!(
            "cluster-bench: WARNING: built without --release; console-server is built in debug too"
        );
    }
    // Build (or find) console-server before any cluster starts, so no window includes it.
    let binary = match tokio::task::spawn_blocking(|| binary::console_server().to_path_buf()).await
    {
        Ok(path) => path,
        Err(error) => {
            eprintln!("cluster-bench: cannot build console-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("cluster-bench: console-server is {}", binary.display());
    let mut results: Vec<(RegistryKind, Mode, Figures)> = Vec::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    for registry in args.registries() {
        for mode in args.modes() {
            let label = format!("{} {}", registry.config_name(), mode.name());
            eprintln!("=== cluster-bench: {label} ===");
            // A panic (a wait that timed out) ends this run, tears its cluster down (the
            // harness keeps the run directory and prints the node logs) and the next runs.
            // (The harness's futures are not `Send`, so this catches the unwind in place.)
            match AssertUnwindSafe(run_one(registry, mode, args.clone()))
                .catch_unwind()
                .await
            {
                Ok(figures) => results.push((registry, mode, figures)),
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("a panic");
                    eprintln!("=== cluster-bench: {label} FAILED: {why} ===");
                    failures.push(label);
                }
            }
        }
    }
    println!("{}", summary(&results));
    eprintln!(
        "cluster-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("cluster-bench: failed runs: {failures:?}");
        ExitCode::FAILURE
    }
}

/// Every scenario of one registry and mode; answers the summary figures.
async fn run_one(registry: RegistryKind, mode: Mode, args: Args) -> Figures {
    let mut figures = Figures::default();
    let label = format!("{} {}", registry.config_name(), mode.name());
    let main_cluster = [
        Scenario::Latency,
        Scenario::Throughput,
        Scenario::Idle,
        Scenario::Memory,
    ]
    .iter()
    .any(|scenario| args.runs(*scenario));
    if main_cluster {
        let background = if args.runs(Scenario::Idle) {
            Some(quiet_background(registry, &args, &label, &mut figures).await)
        } else {
            None
        };
        let mut bench = Bench::start(registry, mode, &args).await;
        bench.run_main(background, &mut figures).await;
        bench.finish();
    }
    if args.runs(Scenario::Failover) || args.runs(Scenario::Handoff) {
        let mut bench = Bench::start(registry, mode, &args).await;
        bench.run_moves(&mut figures).await;
        bench.finish();
    }
    figures
}

/// Microseconds since the Unix epoch: the clock the noop executor's `started_at_us` reads.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

fn ms(duration: Duration) -> f64 {
    round3(duration.as_secs_f64() * 1000.0)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `registry`, `mode` and the scenario's own fields, as one JSON line on stdout.
fn emit(scenario: &str, registry: RegistryKind, mode: Mode, fields: Value) {
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

/// One cluster of the bench and the apps it created.
struct Bench {
    registry: RegistryKind,
    mode: Mode,
    args: Args,
    cluster: Cluster,
    /// Apps created so far, in creation order.
    apps: Vec<Id>,
}

impl Bench {
    async fn start(registry: RegistryKind, mode: Mode, args: &Args) -> Self {
        let mut options = Options::new(registry, 3).env("CONSOLE_BENCHMARK_EXECUTOR", "noop");
        if registry == RegistryKind::Mysql {
            options.heartbeat_interval = Duration::from_millis(args.mysql_heartbeat_ms);
            options.session_timeout = Duration::from_millis(args.mysql_session_ms);
        }
        if mode == Mode::Baseline {
            options = options.env("CONSOLE_BENCHMARK_DISPATCH", "streampark");
        }
        let started = Instant::now();
        let cluster = Cluster::start(options).await;
        eprintln!(
            "cluster of 3 nodes ({}, {}) ready in {} ms: run directory {}",
            registry.config_name(),
            mode.name(),
            ms(started.elapsed()),
            cluster.run_dir().display()
        );
        Self {
            registry,
            mode,
            args: args.clone(),
            cluster,
            apps: Vec::new(),
        }
    }

    fn emit(&self, scenario: &str, fields: Value) {
        emit(scenario, self.registry, self.mode, fields);
    }

    /// The running nodes' APIs, in node order (one client each, reused by every call).
    fn apis(&self) -> Vec<(String, Api)> {
        self.cluster.live_apis()
    }

    /// Reports the warnings and errors in the node logs, then tears the cluster down.
    fn finish(self) {
        report_logs(&self.cluster);
        drop(self.cluster);
    }

    /// memory (idle), latency, throughput, idle, memory (loaded).
    async fn run_main(&mut self, background: Option<Window>, figures: &mut Figures) {
        self.check_neighbours("before the scenarios", figures);
        let idle_rss = self.args.runs(Scenario::Memory).then(|| self.rss_all());
        if self.args.runs(Scenario::Latency) {
            self.latency(figures).await;
            self.check_neighbours("after latency", figures);
        }
        if self.args.runs(Scenario::Throughput) {
            self.throughput(figures).await;
            self.check_neighbours("after throughput", figures);
        }
        if let Some(background) = background {
            self.idle(&background, figures).await;
            self.check_neighbours("after idle", figures);
        }
        if let Some(idle_rss) = idle_rss {
            self.memory(&idle_rss, figures).await;
        }
    }

    /// failover, then (after restarting the victim) handoff.
    async fn run_moves(&mut self, figures: &mut Figures) {
        let count = self.args.failover_apps;
        self.ensure_apps(count).await;
        let ids = self.apps[..count].to_vec();
        self.ensure_state(&ids, "start").await;
        self.wait_settled(&ids, None).await;
        self.check_neighbours("before failover", figures);
        if self.args.runs(Scenario::Failover) {
            let victim = self.failover(&ids, figures).await;
            self.check_neighbours("after failover", figures);
            eprintln!("restarting {}", self.cluster.node(victim).id);
            self.cluster.restart(victim).await;
            self.wait_settled(&ids, None).await;
        }
        if self.args.runs(Scenario::Handoff) {
            self.handoff(&ids, figures).await;
            self.check_neighbours("after handoff", figures);
        }
    }

    /// Warns when processes of other test runs (their consoles and apps) or compilers run on
    /// the host: they take CPU from the cluster measured (a point sample from `/proc`).
    fn check_neighbours(&self, when: &str, figures: &mut Figures) {
        let tag = self.cluster.run_dir().display().to_string();
        let mut others = 0;
        let mut compilers = 0;
        for process in processes::all_processes() {
            if process
                .env(processes::RUN_TAG_VAR)
                .is_some_and(|other| other != tag)
            {
                others += 1;
            } else if process
                .cmdline
                .first()
                .is_some_and(|program| program.ends_with("rustc"))
            {
                compilers += 1;
            }
        }
        if others + compilers > 0 {
            figures.warn(format!(
                "{} {} {when}: {others} processes of other test runs and {compilers} rustc \
                 processes were running on this host; CPU-bound figures may be disturbed",
                self.registry.config_name(),
                self.mode.name()
            ));
        }
    }

    /// Creates apps until there are `count`.
    async fn ensure_apps(&mut self, count: usize) {
        if self.apps.len() >= count {
            return;
        }
        let apis = self.apis();
        let first = self.apps.len();
        let started = Instant::now();
        let created: Vec<Result<App, String>> = stream::iter(first..count)
            .map(|index| {
                let (_, api) = apis[index % apis.len()].clone();
                async move {
                    api.create_app(&format!("bench-{index:05}"), "noop", json!({}))
                        .await
                }
            })
            .buffered(self.args.concurrency)
            .collect()
            .await;
        for app in created {
            match app {
                Ok(app) => self.apps.push(app.id),
                Err(error) => panic!("creating an app: {error}"),
            }
        }
        eprintln!(
            "created {} noop apps in {} ms",
            count - first,
            ms(started.elapsed())
        );
    }

    /// Submits `action` (`start` or `stop`) for every app of `ids` that is not yet where the
    /// action leads (RUNNING; STOPPED or CREATED) and waits until all are there (set-up, not
    /// measured).
    async fn ensure_state(&self, ids: &[Id], action: &str) {
        let done = |state: &str| match action {
            "start" => state == "RUNNING",
            _ => matches!(state, "STOPPED" | "CREATED"),
        };
        let wanted_states = if action == "start" {
            "RUNNING"
        } else {
            "STOPPED or CREATED"
        };
        let api = self.apis()[0].1.clone();
        let apps = all_apps(&api)
            .await
            .unwrap_or_else(|error| panic!("listing apps: {error}"));
        let todo: Vec<Id> = ids
            .iter()
            .filter(|id| apps.get(*id).is_none_or(|app| !done(&app.state)))
            .cloned()
            .collect();
        if todo.is_empty() {
            return;
        }
        let started = Instant::now();
        let batch = self.submit_all(&todo, action).await;
        if !batch.errors.is_empty() {
            panic!(
                "set-up: {} of {} {action} submissions failed, e.g. {}",
                batch.errors.len(),
                todo.len(),
                batch.errors[0]
            );
        }
        wait_no_unfinished(&api).await;
        let wanted: BTreeSet<&Id> = ids.iter().collect();
        eventually(
            &format!("{} apps are {wanted_states}", ids.len()),
            BATCH_TIMEOUT,
            || {
                let api = api.clone();
                let wanted = &wanted;
                async move {
                    let apps = all_apps(&api).await?;
                    let wrong: Vec<String> = wanted
                        .iter()
                        .filter(|id| apps.get(**id).is_none_or(|app| !done(&app.state)))
                        .map(|id| {
                            format!(
                                "{id}={}",
                                apps.get(*id).map_or("missing", |app| app.state.as_str())
                            )
                        })
                        .take(10)
                        .collect();
                    if wrong.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("not {wanted_states}: {wrong:?}"))
                    }
                }
            },
        )
        .await;
        eprintln!(
            "set-up: {action} of {} apps done in {} ms",
            todo.len(),
            ms(started.elapsed())
        );
    }

    /// Submits `action` for every app in `ids`, `--concurrency` at a time, spread over the
    /// nodes in turn.
    async fn submit_all(&self, ids: &[Id], action: &str) -> Batch {
        let apis = self.apis();
        let started = Instant::now();
        let outcomes: Vec<Result<(), String>> = stream::iter(ids.iter().enumerate())
            .map(|(index, id)| {
                let (node, api) = apis[index % apis.len()].clone();
                async move {
                    api.submit(id, action)
                        .await
                        .map(|_| ())
                        .map_err(|error| format!("{action} of app {id} via {node}: {error}"))
                }
            })
            .buffer_unordered(self.args.concurrency)
            .collect()
            .await;
        Batch {
            submitted_in: started.elapsed(),
            errors: outcomes.into_iter().filter_map(Result::err).collect(),
        }
    }

    /// Sums a counter over the running nodes' `/metrics`.
    async fn counter_sum(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for (node, api) in self.apis() {
            let text = api
                .metrics()
                .await
                .unwrap_or_else(|error| panic!("scraping {node}: {error}"));
            sum += metric(&text, name).unwrap_or(0.0);
        }
        sum
    }

    /// Latency: `start` of `--latency-samples` fresh apps, one at a time, each through the
    /// next node in turn; from the 202 to the noop executor's `start` on the owner.
    async fn latency(&mut self, figures: &mut Figures) {
        let samples = self.args.latency_samples;
        eprintln!("latency: {samples} sequential starts");
        self.ensure_apps(samples).await;
        let apis = self.apis();
        let mut from_202 = Vec::with_capacity(samples);
        let mut from_send = Vec::with_capacity(samples);
        let mut local = Vec::new();
        let mut remote = Vec::new();
        for (index, id) in self.apps[..samples].iter().enumerate() {
            let (node, api) = &apis[index % apis.len()];
            let sent_us = now_us();
            if let Err(error) = api.submit(id, "start").await {
                panic!("latency: start of app {id} via {node}: {error}");
            }
            let answered_us = now_us();
            let (started_us, executed_by) = eventually(
                &format!("app {id} is RUNNING with a noop handle"),
                SAMPLE_TIMEOUT,
                || {
                    let api = api.clone();
                    async move {
                        let app = api.app(id).await?;
                        let started = app
                            .handle
                            .as_ref()
                            .and_then(|handle| handle.get("started_at_us"))
                            .and_then(Value::as_i64);
                        match (app.state.as_str(), started) {
                            ("RUNNING", Some(started)) => {
                                Ok((started, app.adopted_by.unwrap_or_default()))
                            }
                            _ => Err(format!("state {} handle {:?}", app.state, app.handle)),
                        }
                    }
                },
            )
            .await;
            let latency = (started_us - answered_us) as f64 / 1000.0;
            from_202.push(latency);
            from_send.push((started_us - sent_us) as f64 / 1000.0);
            if executed_by == *node {
                local.push(latency);
            } else {
                remote.push(latency);
            }
        }
        let stats = Stats::of(&from_202);
        let negative = from_202.iter().filter(|value| **value < 0.0).count();
        figures.insert("latency_p50_ms", stats.p50);
        figures.insert("latency_p99_ms", stats.p99);
        figures.insert("latency_mean_ms", stats.mean);
        figures.insert("latency_max_ms", stats.max);
        let send = Stats::of(&from_send);
        self.emit(
            "latency",
            json!({
                "samples": samples,
                "p50_ms": stats.p50,
                "p99_ms": stats.p99,
                "mean_ms": stats.mean,
                "max_ms": stats.max,
                "min_ms": stats.min,
                "negative_samples": negative,
                "owner_was_receiver": {"samples": local.len(), "p50_ms": Stats::of(&local).p50},
                "owner_was_other": {"samples": remote.len(), "p50_ms": Stats::of(&remote).p50},
                "from_send_p50_ms": send.p50,
                "from_send_p99_ms": send.p99,
                "measured": "client receives HTTP 202 -> NoopExecutor::start called on the owner \
                    (started_at_us in the app's handle, same host clock); fresh CREATED apps, \
                    submitted one at a time to nodes in turn",
            }),
        );
        // Throughput starts from stopped apps.
        let ids = self.apps[..samples].to_vec();
        self.ensure_state(&ids, "stop").await;
    }

    /// Throughput: `start` of `--apps` apps as fast as `--concurrency` requests in flight allow,
    /// until every task finished; then `stop` of all of them.
    async fn throughput(&mut self, figures: &mut Figures) {
        let count = self.args.apps;
        self.ensure_apps(count).await;
        let ids = self.apps[..count].to_vec();
        self.ensure_state(&ids, "stop").await;
        let mut fields = serde_json::Map::new();
        fields.insert("apps".into(), json!(count));
        fields.insert("concurrency".into(), json!(self.args.concurrency));
        for action in ["start", "stop"] {
            eprintln!("throughput: {action} of {count} apps");
            let failed_before = self.counter_sum("console_tasks_failed").await;
            let succeeded_before = self.counter_sum("console_tasks_succeeded").await;
            let started = Instant::now();
            let batch = self.submit_all(&ids, action).await;
            let api = self.apis()[0].1.clone();
            wait_no_unfinished(&api).await;
            let elapsed = started.elapsed();
            let failed = self.counter_sum("console_tasks_failed").await - failed_before;
            let succeeded = self.counter_sum("console_tasks_succeeded").await - succeeded_before;
            let rate = round3(count as f64 / elapsed.as_secs_f64());
            figures.insert(
                if action == "start" {
                    "throughput_start_tasks_per_s"
                } else {
                    "throughput_stop_tasks_per_s"
                },
                rate,
            );
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
                    "{} {} throughput: {} {action} submissions failed, e.g. {error}",
                    self.registry.config_name(),
                    self.mode.name(),
                    batch.errors.len()
                ));
            }
            if failed > 0.0 {
                figures.warn(format!(
                    "{} {} throughput: {failed} {action} tasks FAILED",
                    self.registry.config_name(),
                    self.mode.name()
                ));
            }
            // A check: every app got where the action leads.
            self.ensure_state(&ids, action).await;
        }
        fields.insert(
            "measured".into(),
            json!(format!(
                "first submit -> no PENDING/RUNNING task left (console_tasks gauge of one node's \
                 /metrics, polled every {} ms once all submissions were answered)",
                wait::POLL_INTERVAL.as_millis()
            )),
        );
        self.emit("throughput", Value::Object(fields));
    }

    /// Idle: no requests for `--idle-seconds`, first with the `--apps` apps STOPPED (what
    /// dispatch costs at rest), then with all of them RUNNING (what monitoring adds); MariaDB
    /// and ZooKeeper counters less the background window measured before the cluster started.
    async fn idle(&mut self, background: &Window, figures: &mut Figures) {
        let count = self.args.apps;
        self.ensure_apps(count).await;
        let ids = self.apps[..count].to_vec();
        let mut fields = serde_json::Map::new();
        fields.insert("apps".into(), json!(count));
        fields.insert("nodes".into(), json!(self.cluster.live().len()));
        fields.insert(
            "monitor_interval_ms".into(),
            json!(self.cluster.monitor_interval().as_millis()),
        );
        self.add_registry_timings(&mut fields);
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
        for (action, state, prefix) in [
            ("stop", "STOPPED", "stopped"),
            ("start", "RUNNING", "running"),
        ] {
            self.ensure_state(&ids, action).await;
            let (window, task_rows) = self.idle_window(count, state).await;
            other_test_databases = other_test_databases.max(window.other_test_databases);
            let nodes = self.cluster.live().len() as f64;
            let net = |cluster: f64, bg: f64| round3((cluster - bg) / nodes);
            let questions = net(window.questions_per_s(), background.questions_per_s());
            let selects = net(window.selects_per_s(), background.selects_per_s());
            let mut add = |name: &str, value: Value| {
                fields.insert(format!("{prefix}_{name}"), value);
            };
            add("window_s", json!(round3(window.seconds)));
            add("task_rows", json!(task_rows));
            add("db_questions_per_node_s", json!(questions));
            add("db_selects_per_node_s", json!(selects));
            add("raw_questions", json!(window.questions));
            add("raw_selects", json!(window.selects));
            let rows_read = net(window.rows_read_per_s(), background.rows_read_per_s());
            add("db_rows_read_per_node_s", json!(rows_read));
            add("raw_rows_read", json!(window.rows_read));
            let zk = match (window.zk_packets, background.zk_packets) {
                (Some(packets), Some(bg)) => {
                    let zk = net(
                        packets as f64 / window.seconds,
                        bg as f64 / background.seconds,
                    );
                    add("zk_packets_per_node_s", json!(zk));
                    add("raw_zk_packets", json!(packets));
                    Some(zk)
                }
                _ => None,
            };
            let names = if state == "RUNNING" {
                [
                    "idle_db_questions_per_node_s",
                    "idle_db_selects_per_node_s",
                    "idle_zk_packets_per_node_s",
                    "idle_db_rows_read_per_node_s",
                ]
            } else {
                [
                    "idle_stopped_db_questions_per_node_s",
                    "idle_stopped_db_selects_per_node_s",
                    "idle_stopped_zk_packets_per_node_s",
                    "idle_stopped_db_rows_read_per_node_s",
                ]
            };
            figures.insert(names[0], questions);
            figures.insert(names[1], selects);
            figures.insert(names[3], rows_read);
            if let Some(zk) = zk {
                figures.insert(names[2], zk);
            }
        }
        fields.insert("other_test_databases".into(), json!(other_test_databases));
        fields.insert("background_quiet".into(), json!(background.is_quiet()));
        if other_test_databases > 0 {
            figures.warn(format!(
                "{} {} idle: {other_test_databases} other cluster_test_* databases existed at the \
                 start or end of a window: another test run may have loaded MariaDB meanwhile",
                self.registry.config_name(),
                self.mode.name()
            ));
        }
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
        self.emit("idle", Value::Object(fields));
    }

    /// One idle window of this cluster (apps in `state`); answers it and the task rows.
    async fn idle_window(&self, count: usize, state: &str) -> (Window, i64) {
        let ours: Vec<String> = [
            Some(self.cluster.store_database().to_owned()),
            self.cluster.registry_database().map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        .collect();
        let task_rows = count_rows(
            self.cluster.mariadb(),
            self.cluster.store_database(),
            "tasks",
        )
        .await
        .unwrap_or_else(|error| panic!("counting tasks: {error}"));
        let window = Duration::from_secs(self.args.idle_seconds);
        eprintln!("idle: {window:?} window with {count} apps {state} ({task_rows} task rows)");
        let measured = measure_window(self.registry, window, &ours)
            .await
            .unwrap_or_else(|error| panic!("idle window ({state}): {error}"));
        (measured, task_rows)
    }

    /// VmRSS of every running node, by node id, in MiB.
    fn rss_all(&self) -> BTreeMap<String, f64> {
        self.cluster
            .live()
            .into_iter()
            .filter_map(|index| {
                let node = self.cluster.node(index);
                let rss = rss_mib(node.pid()?)?;
                Some((node.id.clone(), rss))
            })
            .collect()
    }

    /// Memory: RSS of each node right after start, and of the node owning the most apps with
    /// `--apps` apps RUNNING.
    async fn memory(&mut self, idle: &BTreeMap<String, f64>, figures: &mut Figures) {
        let count = self.args.apps;
        self.ensure_apps(count).await;
        let ids = self.apps[..count].to_vec();
        self.ensure_state(&ids, "start").await;
        let api = self.apis()[0].1.clone();
        let nodes = api
            .nodes()
            .await
            .unwrap_or_else(|error| panic!("listing nodes: {error}"));
        let Some(busiest) = nodes.iter().max_by_key(|node| node.owned_apps) else {
            panic!("no node listed");
        };
        let loaded = self.rss_all();
        let busiest_rss = loaded.get(&busiest.id).copied().unwrap_or(0.0);
        let idle_mean = if idle.is_empty() {
            0.0
        } else {
            round3(idle.values().sum::<f64>() / idle.len() as f64)
        };
        figures.insert("memory_idle_rss_mib", idle_mean);
        figures.insert("memory_loaded_rss_mib", busiest_rss);
        // Last scenario of this cluster: the other nodes leave (SIGTERM), so that one node
        // owns and monitors every app.
        let sole = self.cluster.live()[0];
        for index in self.cluster.live() {
            if index != sole {
                self.cluster.terminate(index, EXIT_TIMEOUT).await;
            }
        }
        let sole_api = self.cluster.api(sole);
        self.wait_settled(&ids, Some(sole_api.clone())).await;
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
        let sole_id = self.cluster.node(sole).id.clone();
        let sole_rss = self.rss_all().get(&sole_id).copied().unwrap_or(0.0);
        figures.insert("memory_sole_rss_mib", sole_rss);
        self.emit(
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

    /// Waits until every app of `ids` is RUNNING and adopted by its owner, the owner being a
    /// node in `live` (all running nodes if `None`).
    async fn wait_settled(&self, ids: &[Id], api: Option<Api>) {
        let api = api.unwrap_or_else(|| self.apis()[0].1.clone());
        let live = self.cluster.live_ids();
        let wanted: BTreeSet<Id> = ids.iter().cloned().collect();
        eventually(
            "every app is RUNNING and adopted by its (live) owner",
            MOVE_TIMEOUT,
            || settled(&api, &wanted, &live),
        )
        .await;
    }

    /// Failover: SIGKILL of the node holding the most apps; the time until every app is
    /// adopted by a live owner. Answers the victim's index.
    async fn failover(&mut self, ids: &[Id], figures: &mut Figures) -> usize {
        let (victim, moved) = self.busiest(ids).await;
        let victim_id = self.cluster.node(victim).id.clone();
        eprintln!(
            "failover: SIGKILL of {victim_id}, which holds {moved} of {} apps",
            ids.len()
        );
        let survivor = self.api_other_than(&victim_id);
        let killed = Instant::now();
        let gone = self.cluster.kill(victim).await;
        let live = self.cluster.live_ids();
        let (owners_live, adopted) = watch_moves(&survivor, ids, &live, &victim_id, killed).await;
        let failover_ms = ms(adopted.duration_since(killed));
        figures.insert("failover_ms", failover_ms);
        let mut fields = json!({
            "apps": ids.len(),
            "victim": victim_id,
            "victim_apps": moved,
            "failover_ms": failover_ms,
            "owners_live_ms": owners_live.map(|at| ms(at.duration_since(killed))),
            "process_gone_ms": ms(gone.duration_since(killed)),
            "measured": "SIGKILL sent -> every app shows owner = a live node and adopted_by = \
                that owner (GET /api/v1/apps of a survivor, polled every 25 ms)",
            "adopted_by": ADOPTED_BY,
        });
        if let Some(object) = fields.as_object_mut() {
            self.add_registry_timings(object);
        }
        self.emit("failover", fields);
        victim
    }

    /// Handoff: SIGTERM of the node holding the most apps; the time until every app is adopted
    /// by a live owner, and until the process exits.
    async fn handoff(&mut self, ids: &[Id], figures: &mut Figures) {
        let (leaving, moved) = self.busiest(ids).await;
        let leaving_id = self.cluster.node(leaving).id.clone();
        eprintln!(
            "handoff: SIGTERM of {leaving_id}, which holds {moved} of {} apps",
            ids.len()
        );
        let survivor = self.api_other_than(&leaving_id);
        let mut live = self.cluster.live_ids();
        live.remove(&leaving_id);
        let node = self.cluster.node_mut(leaving);
        let signalled = Instant::now();
        node.terminate();
        let ((status, exited), (owners_live, adopted)) = tokio::join!(
            node.wait_exit(EXIT_TIMEOUT),
            watch_moves(&survivor, ids, &live, &leaving_id, signalled)
        );
        let handoff_ms = ms(adopted.duration_since(signalled));
        let exit_ms = ms(exited.duration_since(signalled));
        figures.insert("handoff_ms", handoff_ms);
        figures.insert("handoff_exit_ms", exit_ms);
        let mut fields = json!({
            "apps": ids.len(),
            "leaving": leaving_id,
            "leaving_apps": moved,
            "handoff_ms": handoff_ms,
            "owners_live_ms": owners_live.map(|at| ms(at.duration_since(signalled))),
            "exit_ms": exit_ms,
            "exit_status": status.code(),
            "measured": "SIGTERM sent -> every app shows owner = a remaining node and \
                adopted_by = that owner (GET /api/v1/apps of a remaining node, polled every \
                25 ms); exit_ms: SIGTERM sent -> process exit seen",
            "adopted_by": ADOPTED_BY,
        });
        if let Some(object) = fields.as_object_mut() {
            self.add_registry_timings(object);
        }
        self.emit("handoff", fields);
    }

    /// The API of a running node other than `node_id`.
    fn api_other_than(&self, node_id: &str) -> Api {
        match self.apis().into_iter().find(|(id, _)| id != node_id) {
            Some((_, api)) => api,
            None => panic!("no running node other than {node_id}"),
        }
    }

    /// Adds the registry timings a figure depends on: the session timeout and, with MySQL,
    /// the heartbeat (the registry's own statements and its event latency scale with it).
    fn add_registry_timings(&self, fields: &mut serde_json::Map<String, Value>) {
        fields.insert(
            "session_timeout_ms".into(),
            json!(self.cluster.session_timeout().as_millis()),
        );
        if self.registry == RegistryKind::Mysql {
            fields.insert(
                "heartbeat_interval_ms".into(),
                json!(self.cluster.options().heartbeat_interval.as_millis()),
            );
        }
    }

    /// The index of the running node that holds the most apps of `ids`, and how many.
    async fn busiest(&self, ids: &[Id]) -> (usize, usize) {
        let api = self.apis()[0].1.clone();
        let apps = all_apps(&api)
            .await
            .unwrap_or_else(|error| panic!("listing apps: {error}"));
        let mut held: BTreeMap<String, usize> = BTreeMap::new();
        for id in ids {
            if let Some(holder) = apps.get(id).and_then(|app| app.adopted_by.clone()) {
                *held.entry(holder).or_default() += 1;
            }
        }
        eprintln!("apps held per node: {held:?}");
        let Some((holder, count)) = held.into_iter().max_by_key(|(_, count)| *count) else {
            panic!("no app is held by any node");
        };
        let Some(index) = self
            .cluster
            .live()
            .into_iter()
            .find(|index| self.cluster.node(*index).id == holder)
        else {
            panic!("{holder} holds apps but does not run");
        };
        (index, count)
    }
}

/// The outcome of a batch of submissions.
struct Batch {
    submitted_in: Duration,
    errors: Vec<String>,
}

/// Every app by id, read in pages of [`PAGE`].
async fn all_apps(api: &Api) -> Result<BTreeMap<Id, App>, String> {
    Ok(api
        .apps_paged(PAGE)
        .await?
        .into_iter()
        .map(|app| (app.id.clone(), app))
        .collect())
}

/// Whether every app of `wanted` is RUNNING with `owner` in `live` and `adopted_by == owner`.
async fn settled(api: &Api, wanted: &BTreeSet<Id>, live: &BTreeSet<String>) -> Result<(), String> {
    let apps = all_apps(api).await?;
    let mut wrong = Vec::new();
    for id in wanted {
        let Some(app) = apps.get(id) else {
            wrong.push(format!("{id} missing"));
            continue;
        };
        let owner_live = app.owner.as_ref().is_some_and(|owner| live.contains(owner));
        if app.state != "RUNNING" || !owner_live || app.adopted_by != app.owner {
            wrong.push(format!(
                "{id}: {} owner {:?} adopted_by {:?}",
                app.state, app.owner, app.adopted_by
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} apps not settled, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        ))
    }
}

/// Polls `api` after `leaving` went away until every app of `ids` is RUNNING and adopted by
/// its owner in `live`; answers when every owner was first seen live (if seen before the end)
/// and when all were adopted.
async fn watch_moves(
    api: &Api,
    ids: &[Id],
    live: &BTreeSet<String>,
    leaving: &str,
    since: Instant,
) -> (Option<Instant>, Instant) {
    let wanted: BTreeSet<Id> = ids.iter().cloned().collect();
    let owners_live: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (_, adopted) = wait::poll_until(MOVE_TIMEOUT, || {
        let owners_live = owners_live.clone();
        let wanted = &wanted;
        async move {
            let apps = all_apps(api).await?;
            let all_live = wanted.iter().all(|id| {
                apps.get(id)
                    .and_then(|app| app.owner.as_ref())
                    .is_some_and(|owner| live.contains(owner))
            });
            if all_live
                && let Ok(mut first) = owners_live.lock()
                && first.is_none()
            {
                *first = Some(Instant::now());
            }
            settled(api, wanted, live).await
        }
    })
    .await
    .unwrap_or_else(|timed_out| {
        panic!(
            "the apps of {leaving} were not all adopted by live owners {:?} after it went away; last seen: {}",
            since.elapsed(),
            timed_out.last
        )
    });
    let first = owners_live.lock().ok().and_then(|first| *first);
    (first, adopted)
}

/// Waits until one node's `/metrics` shows no PENDING or RUNNING task (cluster-wide).
async fn wait_no_unfinished(api: &Api) {
    eventually("no task is PENDING or RUNNING", BATCH_TIMEOUT, || async {
        let text = api.metrics().await?;
        let pending = metric(&text, "console_tasks{status=\"PENDING\"}")
            .ok_or_else(|| "no console_tasks{status=\"PENDING\"} in /metrics".to_owned())?;
        let running = metric(&text, "console_tasks{status=\"RUNNING\"}").unwrap_or(0.0);
        if pending + running == 0.0 {
            Ok(())
        } else {
            Err(format!("{pending} PENDING, {running} RUNNING"))
        }
    })
    .await;
}

/// The value of the sample `key` (a metric name, with its labels if it has any) in Prometheus
/// text; counters are also found under their `_total` name.
fn metric(text: &str, key: &str) -> Option<f64> {
    let total = format!("{key}_total");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == key || name == total)
                .then(|| value.trim().parse().ok())
                .flatten()
        })
}

/// p50/p99/mean/max/min in milliseconds (nearest rank), 0 when empty.
#[derive(Debug, Default)]
struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
    min: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            round3(sorted[index])
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            mean: round3(sorted.iter().sum::<f64>() / sorted.len() as f64),
            max: round3(sorted[sorted.len() - 1]),
            min: round3(sorted[0]),
        }
    }
}

/// Counter deltas over one measurement window.
#[derive(Debug, Clone)]
struct Window {
    seconds: f64,
    questions: u64,
    selects: u64,
    /// `Rows_read` (MariaDB): what the statements cost, not only how many there were.
    rows_read: u64,
    zk_packets: Option<u64>,
    /// `cluster_test_*` databases on the server that are not this cluster's.
    other_test_databases: u64,
}

impl Window {
    /// Nothing but the bench's own statements, and no other test database around.
    fn is_quiet(&self) -> bool {
        self.questions_per_s() < QUIET_QUESTIONS_PER_S && self.other_test_databases == 0
    }

    fn questions_per_s(&self) -> f64 {
        self.questions as f64 / self.seconds
    }

    fn selects_per_s(&self) -> f64 {
        self.selects as f64 / self.seconds
    }

    fn rows_read_per_s(&self) -> f64 {
        self.rows_read as f64 / self.seconds
    }
}

/// One reading of the counters.
struct Reading {
    questions: u64,
    selects: u64,
    rows_read: u64,
    zk_packets: Option<u64>,
    at: Instant,
}

/// The background window before a cluster starts: retried while it is not quiet (another
/// client loads MariaDB or ZooKeeper), up to [`BACKGROUND_ATTEMPTS`] times; the quietest is
/// taken, with a warning if none was quiet.
async fn quiet_background(
    registry: RegistryKind,
    args: &Args,
    label: &str,
    figures: &mut Figures,
) -> Window {
    let length = Duration::from_secs(args.idle_seconds);
    let mut quietest: Option<Window> = None;
    for attempt in 1..=BACKGROUND_ATTEMPTS {
        eprintln!(
            "background window {attempt}: {length:?} of MariaDB/ZooKeeper counters before the cluster starts"
        );
        let window = measure_window(registry, length, &[])
            .await
            .unwrap_or_else(|error| panic!("background window: {error}"));
        let quiet = window.is_quiet();
        if !quiet {
            eprintln!(
                "background window {attempt} is not quiet: {} statements, {} other test databases",
                window.questions, window.other_test_databases
            );
        }
        if quietest
            .as_ref()
            .is_none_or(|best| window.questions < best.questions)
        {
            quietest = Some(window);
        }
        if quiet {
            break;
        }
    }
    let Some(window) = quietest else {
        panic!("no background window was measured");
    };
    if !window.is_quiet() {
        figures.warn(format!(
            "{label} idle: no quiet background window in {BACKGROUND_ATTEMPTS} attempts; the \
             quietest had {} statements in {:.1} s and {} other test databases, so the idle \
             figures are off by about that much",
            window.questions, window.seconds, window.other_test_databases
        ));
    }
    window
}

/// Reads the counters, waits `window`, reads them again. The bench's own statements in between
/// are the second `SHOW GLOBAL STATUS` (and the `mntr` connection for ZooKeeper): the same in
/// every window, so subtracting the background window removes them.
async fn measure_window(
    registry: RegistryKind,
    window: Duration,
    ours: &[String],
) -> Result<Window, String> {
    let mariadb = MariaDb::from_env();
    let mut connection = mariadb.connect().await?;
    let others_before = other_test_databases(&mut connection, ours).await?;
    let zookeeper = (registry == RegistryKind::Zookeeper).then(|| {
        services::zookeeper_servers()
            .split(',')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let before = read_counters(&mut connection, zookeeper.as_deref()).await?;
    // The measurement window itself: nothing happens on purpose.
    tokio::time::sleep(window).await;
    let after = read_counters(&mut connection, zookeeper.as_deref()).await?;
    let others_after = other_test_databases(&mut connection, ours).await?;
    let _ = connection.close().await;
    Ok(Window {
        seconds: after.at.duration_since(before.at).as_secs_f64(),
        questions: after.questions.saturating_sub(before.questions),
        selects: after.selects.saturating_sub(before.selects),
        rows_read: after.rows_read.saturating_sub(before.rows_read),
        zk_packets: match (before.zk_packets, after.zk_packets) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        },
        other_test_databases: others_before.max(others_after),
    })
}

async fn read_counters(
    connection: &mut MySqlConnection,
    zookeeper: Option<&str>,
) -> Result<Reading, String> {
    let at = Instant::now();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_select', 'Rows_read')",
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| format!("SHOW GLOBAL STATUS: {error}"))?;
    let value = |name: &str| -> Result<u64, String> {
        rows.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| format!("SHOW GLOBAL STATUS has no {name}: {rows:?}"))
    };
    let zk_packets = match zookeeper {
        Some(server) => Some(zk_packets_received(server).await?),
        None => None,
    };
    Ok(Reading {
        questions: value("Questions")?,
        selects: value("Com_select")?,
        rows_read: value("Rows_read")?,
        zk_packets,
        at,
    })
}

/// `zk_packets_received` of ZooKeeper's `mntr` (whitelisted by `deploy/zookeeper.sh`).
async fn zk_packets_received(server: &str) -> Result<u64, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server).await?;
        stream.write_all(b"mntr").await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok::<_, std::io::Error>(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("mntr to {server} timed out"))?
        .map_err(|error| format!("mntr to {server}: {error}"))?;
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once('\t')?;
            (key == "zk_packets_received").then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| {
            format!(
                "mntr of {server} has no zk_packets_received (is mntr in 4lw.commands.whitelist?): {:?}",
                text.chars().take(200).collect::<String>()
            )
        })
}

async fn other_test_databases(
    connection: &mut MySqlConnection,
    ours: &[String],
) -> Result<u64, String> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'cluster\\_test\\_%'",
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| format!("listing databases: {error}"))?;
    Ok(names.iter().filter(|name| !ours.contains(name)).count() as u64)
}

async fn count_rows(mariadb: &MariaDb, database: &str, table: &str) -> Result<i64, String> {
    let mut connection = mariadb.connect().await?;
    let count = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM `{database}`.`{table}`"
    )))
    .fetch_one(&mut connection)
    .await
    .map_err(|error| format!("counting {database}.{table}: {error}"));
    let _ = connection.close().await;
    count
}

/// VmRSS of process `pid` in MiB.
fn rss_mib(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(round3(kib / 1024.0))
}

/// Prints, per node, how many WARN and ERROR lines its log has and the distinct messages
/// (digits folded), to stderr.
fn report_logs(cluster: &Cluster) {
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

/// The markdown table of the figures, one row per figure and registry, with ours/baseline.
fn summary(results: &[(RegistryKind, Mode, Figures)]) -> String {
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

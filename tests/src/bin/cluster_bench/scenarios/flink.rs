//! Flink (issue 13), on a cluster of its own with a private Flink session cluster of
//! `--flink-jobs` + 2 task slots (the shared one has 4) and the default monitor interval (1 s):
//!
//! 1. one job RUNNING: the `GET /jobs/overview` calls of all nodes
//!    (`console_flink_overview_calls_total`) over a window of `--flink-window-seconds`, per
//!    monitor tick;
//! 2. `--flink-samples` starts of fresh `flink` apps (the example job), one at a time through
//!    the nodes in turn: from the 202 to the job RUNNING on Flink (Flink's own
//!    `timestamps.RUNNING` of `GET /jobs/{id}`, the same host's clock);
//! 3. the other apps started at once, up to `--flink-jobs` RUNNING: the calls per tick again.
//!
//! The example job runs with `--rate 1` (one record a second) so that 50 jobs load the host
//! little. Apps are not stopped: the cluster is torn down, then the private Flink.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::{Api, Id, RegistryKind, eventually};
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use test_support::flink::PrivateFlink;
use tokio::time::Instant;

use crate::cli::{Args, Mode};
use crate::disturbance::check_neighbours;
use crate::measure::{Stats, metric, ms, now_us, round3};
use crate::report::Figures;
use crate::setup::{Bench, all_apps};

/// The monitor interval of the nodes: the console's default.
const MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// How long one start may take to show its job RUNNING.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the jobs started at once may take to run.
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);
const OVERVIEW_CALLS: &str = "console_flink_overview_calls";

pub async fn run(registry: RegistryKind, mode: Mode, args: &Args, figures: &mut Figures) {
    let jobs = args.flink_jobs.max(args.flink_samples + 1);
    let slots = u32::try_from(jobs + 2).unwrap_or(u32::MAX);
    let cold = Instant::now();
    let flink = PrivateFlink::start(slots).await;
    eprintln!(
        "flink: private session cluster with {slots} slots on {} ready in {} ms",
        flink.rest_url(),
        ms(cold.elapsed())
    );
    let output = tempfile::tempdir().unwrap_or_else(|error| panic!("flink: {error}"));
    let rest_url = flink.rest_url();
    let savepoints = output.path().join("savepoints").display().to_string();
    let bench = Bench::start_with(registry, mode, args, |mut options| {
        options.monitor_interval = MONITOR_INTERVAL;
        options
            .env("CONSOLE__EXECUTORS__FLINK__REST_URL", &rest_url)
            .env("CONSOLE__EXECUTORS__FLINK__SAVEPOINT_DIR", &savepoints)
    })
    .await;
    let ids = create_apps(&bench, jobs, output.path()).await;
    let http = reqwest::Client::new();

    // 1. One job.
    bench.ensure_state(&ids[..1], "start").await;
    until_jobs_running(&http, &rest_url, 1).await;
    check_neighbours(&bench, "before flink 1 job", figures);
    let one = overview_window(&bench, args.flink_window_seconds).await;

    // 2. Sequential starts.
    let samples = &ids[1..=args.flink_samples];
    eprintln!("flink: {} sequential starts", samples.len());
    let apis = bench.apis();
    let mut latencies = Vec::with_capacity(samples.len());
    for (index, id) in samples.iter().enumerate() {
        let (node, api) = &apis[index % apis.len()];
        if let Err(error) = api.submit(id, "start").await {
            panic!("flink: start of app {id} via {node}: {error}");
        }
        let answered_ms = now_us() as f64 / 1000.0;
        let running_ms = job_running_at(api, &http, &rest_url, id).await;
        latencies.push(running_ms - answered_ms);
    }
    let stats = Stats::of(&latencies);
    figures.insert("flink_latency_p50_ms", stats.p50);
    figures.insert("flink_latency_p99_ms", stats.p99);
    check_neighbours(&bench, "after flink latency", figures);

    // 3. All jobs.
    bench.ensure_state(&ids, "start").await;
    until_jobs_running(&http, &rest_url, ids.len()).await;
    check_neighbours(&bench, "before flink many jobs", figures);
    let many = overview_window(&bench, args.flink_window_seconds).await;
    figures.insert("flink_overview_calls_per_tick_1_job", one.per_tick());
    figures.insert("flink_overview_calls_per_tick_many_jobs", many.per_tick());
    bench.emit(
        "flink",
        json!({
            "samples": samples.len(),
            "p50_ms": stats.p50,
            "p99_ms": stats.p99,
            "mean_ms": stats.mean,
            "max_ms": stats.max,
            "min_ms": stats.min,
            "monitor_interval_ms": MONITOR_INTERVAL.as_millis(),
            "overview_1_job": one.to_json(1),
            "overview_many_jobs": many.to_json(ids.len()),
            "measured": "client receives HTTP 202 of a start -> Flink's timestamps.RUNNING of \
                the app's job (GET /jobs/{id}; fresh CREATED apps, one at a time, nodes in \
                turn, with 1 to samples jobs already running); and the increase of \
                console_flink_overview_calls_total of all nodes over a window, divided by \
                window / monitor interval, with 1 and with all jobs RUNNING",
        }),
    );
    bench.finish();
    drop(flink);
}

/// `count` `flink` apps of the example job, each writing to its own file under `dir`.
async fn create_apps(bench: &Bench, count: usize, dir: &std::path::Path) -> Vec<Id> {
    let jar = test_support::flink::example_jar();
    let apis = bench.apis();
    let created: Vec<Result<Id, String>> = stream::iter(0..count)
        .map(|index| {
            let (_, api) = apis[index % apis.len()].clone();
            let spec = json!({
                "jar": jar,
                "args": ["--output", dir.join(format!("{index}.txt")), "--rate", "1"],
                "parallelism": 1,
            });
            async move {
                api.create_app(&format!("flink-{index:03}"), "flink", spec)
                    .await
                    .map(|app| app.id)
            }
        })
        .buffered(bench.args.concurrency)
        .collect()
        .await;
    created
        .into_iter()
        .map(|id| id.unwrap_or_else(|error| panic!("flink: creating an app: {error}")))
        .collect()
}

/// Flink's `timestamps.RUNNING` (ms since the epoch) of the job of app `id`, once the app
/// records its job and Flink shows it RUNNING.
async fn job_running_at(api: &Api, http: &reqwest::Client, rest_url: &str, id: &Id) -> f64 {
    eventually(
        &format!("the job of app {id} is RUNNING on Flink"),
        SAMPLE_TIMEOUT,
        || async {
            let app = api.app(id).await?;
            let job = app
                .handle
                .as_ref()
                .and_then(|handle| handle["job_id"].as_str())
                .ok_or_else(|| format!("no job yet: {} {:?}", app.state, app.handle))?
                .to_owned();
            let body = get_json(http, &format!("{rest_url}/jobs/{job}")).await?;
            match (
                body["state"].as_str(),
                body["timestamps"]["RUNNING"].as_f64(),
            ) {
                (Some("RUNNING"), Some(at)) if at > 0.0 => Ok(at),
                _ => Err(format!("job {job}: {}", body["state"])),
            }
        },
    )
    .await
}

/// Waits until Flink runs `count` jobs (`GET /overview`).
async fn until_jobs_running(http: &reqwest::Client, rest_url: &str, count: usize) {
    eventually(
        &format!("Flink runs {count} jobs"),
        BATCH_TIMEOUT,
        || async {
            let overview = get_json(http, &format!("{rest_url}/overview")).await?;
            match overview["jobs-running"].as_u64() {
                Some(running) if running == count as u64 => Ok(()),
                _ => Err(overview.to_string()),
            }
        },
    )
    .await;
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    http.get(url)
        .send()
        .await
        .map_err(|error| format!("{url}: {error}"))?
        .json()
        .await
        .map_err(|error| format!("{url}: {error}"))
}

/// `console_flink_overview_calls_total` of every node over one window.
struct OverviewWindow {
    seconds: f64,
    /// Calls in the window, by node.
    calls: BTreeMap<String, f64>,
    /// Apps each node owned at the end of the window.
    owned: BTreeMap<String, usize>,
}

impl OverviewWindow {
    fn total(&self) -> f64 {
        self.calls.values().sum()
    }

    fn ticks(&self) -> f64 {
        self.seconds / MONITOR_INTERVAL.as_secs_f64()
    }

    /// Calls of all nodes per monitor tick.
    fn per_tick(&self) -> f64 {
        round3(self.total() / self.ticks())
    }

    fn to_json(&self, jobs: usize) -> Value {
        let owning = self.owned.values().filter(|owned| **owned > 0).count();
        json!({
            "jobs": jobs,
            "window_s": round3(self.seconds),
            "calls": self.total(),
            "calls_per_tick": self.per_tick(),
            "calls_per_tick_per_owning_node": round3(self.per_tick() / owning.max(1) as f64),
            "calls_by_node": self.calls,
            "apps_by_owner": self.owned,
            "probes_per_tick": jobs,
        })
    }
}

/// Reads every node's overview calls, waits `seconds`, reads them again.
async fn overview_window(bench: &Bench, seconds: u64) -> OverviewWindow {
    let apis = bench.apis();
    let before = overview_calls(&apis).await;
    let started = Instant::now();
    eprintln!("flink: {seconds} s window of /jobs/overview calls");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = overview_calls(&apis).await;
    let seconds = started.elapsed().as_secs_f64();
    let calls = after
        .iter()
        .map(|(node, now)| (node.clone(), now - before.get(node).copied().unwrap_or(0.0)))
        .collect();
    let apps = all_apps(&bench.first_api())
        .await
        .unwrap_or_else(|error| panic!("flink: listing apps: {error}"));
    let mut owned: BTreeMap<String, usize> =
        apis.iter().map(|(node, _)| (node.clone(), 0)).collect();
    for app in apps.values().filter(|app| app.state == "RUNNING") {
        if let Some(owner) = &app.owner {
            *owned.entry(owner.clone()).or_default() += 1;
        }
    }
    OverviewWindow {
        seconds,
        calls,
        owned,
    }
}

async fn overview_calls(apis: &[(String, Api)]) -> BTreeMap<String, f64> {
    let mut calls = BTreeMap::new();
    for (node, api) in apis {
        let text = api
            .metrics()
            .await
            .unwrap_or_else(|error| panic!("flink: /metrics of {node}: {error}"));
        let value = metric(&text, OVERVIEW_CALLS)
            .unwrap_or_else(|| panic!("flink: no {OVERVIEW_CALLS} in /metrics of {node}"));
        calls.insert(node.clone(), value);
    }
    calls
}

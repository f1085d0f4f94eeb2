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
//!
//! Modules: [`cli`] (the options), [`setup`] (a cluster of the bench, its apps brought to a
//! state), [`scenarios`] (one module per scenario, and their order), [`measure`] (MariaDB
//! status, ZooKeeper `mntr`, `/metrics`, RSS), [`report`] (the JSON lines, the summary table,
//! the node logs), [`disturbance`] (other test runs, compilers, a background that is not quiet).

mod cli;
mod disturbance;
mod load;
mod measure;
mod report;
mod scenarios;
mod setup;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use clap::Parser;
use cluster_tests::{RegistryKind, binary};
use futures::FutureExt;
use tokio::time::Instant;

use crate::cli::{Args, Mode, run_label};
use crate::report::{Figures, summary};

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
            let label = run_label(registry, mode);
            eprintln!("=== cluster-bench: {label} ===");
            // A panic (a wait that timed out) ends this run, tears its cluster down (the
            // harness keeps the run directory and prints the node logs) and the next runs.
            // (The harness's futures are not `Send`, so this catches the unwind in place.)
            match AssertUnwindSafe(scenarios::run_all(registry, mode, args.clone()))
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

//! The scenarios, one module each, and the order they run in. Each prints its JSON line and
//! adds its summary figures to [`Figures`].

mod failover;
mod flink;
mod handoff;
mod idle;
mod latency;
mod memory;
mod moves;
mod throughput;

use std::time::Duration;

use cluster_tests::RegistryKind;

use crate::cli::{Args, Mode, Scenario, run_label};
use crate::disturbance::{check_neighbours, quiet_background};
use crate::measure::Window;
use crate::report::Figures;
use crate::setup::Bench;

/// Every scenario of one registry and mode; answers the summary figures.
pub async fn run_all(registry: RegistryKind, mode: Mode, args: Args) -> Figures {
    let mut figures = Figures::default();
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
            let length = Duration::from_secs(args.idle_seconds);
            let label = run_label(registry, mode);
            Some(quiet_background(registry, length, &label, &mut figures).await)
        } else {
            None
        };
        let mut bench = Bench::start(registry, mode, &args).await;
        run_main(&mut bench, background, &mut figures).await;
        bench.finish();
    }
    if args.runs(Scenario::Failover) || args.runs(Scenario::Handoff) {
        let mut bench = Bench::start(registry, mode, &args).await;
        run_moves(&mut bench, &mut figures).await;
        bench.finish();
    }
    if args.runs(Scenario::Flink) {
        flink::run(registry, mode, &args, &mut figures).await;
    }
    figures
}

/// memory (idle), latency, throughput, idle (when a `background` window was measured), memory
/// (loaded).
async fn run_main(bench: &mut Bench, background: Option<Window>, figures: &mut Figures) {
    check_neighbours(bench, "before the scenarios", figures);
    let idle_rss = bench
        .args
        .runs(Scenario::Memory)
        .then(|| memory::rss_all(bench));
    if bench.args.runs(Scenario::Latency) {
        latency::run(bench, figures).await;
        check_neighbours(bench, "after latency", figures);
    }
    if bench.args.runs(Scenario::Throughput) {
        throughput::run(bench, figures).await;
        check_neighbours(bench, "after throughput", figures);
    }
    if let Some(background) = background {
        idle::run(bench, &background, figures).await;
        check_neighbours(bench, "after idle", figures);
    }
    if let Some(idle_rss) = idle_rss {
        memory::run(bench, &idle_rss, figures).await;
    }
}

/// failover, then (after restarting the victim) handoff, with `--failover-apps` apps RUNNING.
async fn run_moves(bench: &mut Bench, figures: &mut Figures) {
    let ids = bench.apps(bench.args.failover_apps).await;
    bench.ensure_state(&ids, "start").await;
    bench.wait_settled(&ids, None).await;
    check_neighbours(bench, "before failover", figures);
    if bench.args.runs(Scenario::Failover) {
        let victim = failover::run(bench, &ids, figures).await;
        check_neighbours(bench, "after failover", figures);
        eprintln!("restarting {}", bench.cluster.node(victim).id);
        bench.cluster.restart(victim).await;
        bench.wait_settled(&ids, None).await;
    }
    if bench.args.runs(Scenario::Handoff) {
        handoff::run(bench, &ids, figures).await;
        check_neighbours(bench, "after handoff", figures);
    }
}

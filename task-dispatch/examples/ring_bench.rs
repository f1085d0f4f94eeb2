//! The ring benchmark of DESIGN.md ("Ring benchmark").
//!
//! ```text
//! cargo run --release -p task-dispatch --example ring_bench -- --nodes 10 --keys 1000000 [--impl streampark|default]
//! ```
//!
//! Prints one JSON line:
//! `{"impl","nodes","keys","build_ms","lookup_ns","ring_bytes","max_over_mean","moved_over_ideal"}`.
//!
//! - node ids are `10.0.{i/250}.{i%250+1}:10000` for i in 0..N;
//! - keys are the decimal strings of K random non-negative i64s (app ids; fixed seed, `--seed`);
//! - `build_ms`: building the ring from the node ids (best of a few runs for fast rings);
//! - `lookup_ns`: mean time of one lookup over all keys (best of three passes), hashing the key
//!   string included;
//! - `ring_bytes`: heap bytes the built ring holds, counted by a counting global allocator;
//! - `max_over_mean`: the busiest node's key count over the mean;
//! - `moved_over_ideal`: the fraction of keys whose owner changes when `10.9.9.9:10000` joins,
//!   over the ideal 1/(N+1).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use task_dispatch::{Ring, RingKind};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::live_bytes;

#[derive(Debug, Parser)]
#[command(about = "Measure a hash ring: build time, lookup time, memory, balance and churn")]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Number of keys.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Ring implementation: `default` (rendezvous) or `streampark`.
    #[arg(long = "impl", default_value = "default")]
    implementation: String,
    /// Seed of the random keys.
    #[arg(long, default_value_t = 20_240_601)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let kind: RingKind = match args.implementation.parse() {
        Ok(kind) => kind,
        Err(err) => {
            eprintln!("ring_bench: --impl: {err}");
            return ExitCode::from(2);
        }
    };
    if args.nodes == 0 || args.keys == 0 {
        eprintln!("ring_bench: --nodes and --keys must be at least 1");
        return ExitCode::from(2);
    }
    match run(&args, kind) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ring_bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, kind: RingKind) -> Result<String, task_dispatch::TooManyNodes> {
    let nodes: Vec<String> = (0..args.nodes)
        .map(|i| format!("10.0.{}.{}:10000", i / 250, i % 250 + 1))
        .collect();
    let keys = random_keys(args.seed, args.keys);

    // Build: the ring kept for the rest of the run is the measured one; a fast ring is built a
    // few more times (up to ~200 ms) and the best time is kept, so timer resolution does not
    // dominate a microsecond build.
    let before = live_bytes();
    let started = Instant::now();
    let ring = Ring::new(kind, nodes.iter().cloned())?;
    let mut build = started.elapsed();
    let ring_bytes = live_bytes().saturating_sub(before);
    let budget = Instant::now();
    while budget.elapsed() < Duration::from_millis(200) && build < Duration::from_millis(20) {
        let started = Instant::now();
        let again = Ring::new(kind, nodes.iter().cloned())?;
        build = build.min(started.elapsed());
        drop(black_box(again));
    }

    // Lookup: one pass to warm up (it records the owners), then the best of three timed passes,
    // so that a neighbour's burst of CPU on a shared machine does not decide the figure.
    let mut owners = vec![0u32; keys.len()];
    for (slot, key) in owners.iter_mut().zip(&keys) {
        *slot = ring
            .owner_index(black_box(key))
            .map_or(u32::MAX, |i| i as u32);
    }
    let mut lookup = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut checksum = 0usize;
        for key in &keys {
            checksum = checksum.wrapping_add(ring.owner_index(black_box(key)).unwrap_or(0));
        }
        lookup = lookup.min(started.elapsed());
        black_box(checksum);
    }

    // Balance.
    let mut counts = vec![0usize; nodes.len()];
    for &owner in &owners {
        if let Some(count) = counts.get_mut(owner as usize) {
            *count += 1;
        }
    }
    let mean = keys.len() as f64 / nodes.len() as f64;
    let max = counts.iter().copied().max().unwrap_or(0) as f64;

    // Churn: owners by name before and after one node joins.
    let joined = Ring::new(
        kind,
        nodes.iter().cloned().chain(["10.9.9.9:10000".to_owned()]),
    )?;
    let moved = keys
        .iter()
        .zip(&owners)
        .filter(|(key, owner)| {
            let before = ring.nodes().get(**owner as usize).map(String::as_str);
            joined.owner(key) != before
        })
        .count();
    let ideal = 1.0 / (nodes.len() as f64 + 1.0);
    let moved_over_ideal = moved as f64 / keys.len() as f64 / ideal;

    Ok(format!(
        "{{\"impl\":\"{}\",\"nodes\":{},\"keys\":{},\"build_ms\":{:.4},\"lookup_ns\":{:.1},\"ring_bytes\":{},\"max_over_mean\":{:.4},\"moved_over_ideal\":{:.4}}}",
        args.implementation,
        nodes.len(),
        keys.len(),
        build.as_secs_f64() * 1e3,
        lookup.as_secs_f64() * 1e9 / keys.len() as f64,
        ring_bytes,
        max / mean,
        moved_over_ideal,
    ))
}

/// Decimal strings of `count` random non-negative i64s (splitmix64 from `seed`).
fn random_keys(seed: u64, count: usize) -> Vec<String> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 1).to_string()
        })
        .collect()
}

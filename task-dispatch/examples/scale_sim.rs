//! The scale simulation of issue 16: bounded-load assignment (or the plain rendezvous ring) over
//! N nodes and M weighted apps, one join and one leave.
//!
//! ```text
//! cargo run --release -p task-dispatch --example scale_sim -- --nodes 1000 --apps 1000000 \
//!     --epsilon 0.1 --weights zipf [--assignment bounded|rendezvous] [--seed S]
//! ```
//!
//! Prints one JSON line:
//! `{"assignment","weights","nodes","apps","epsilon","seed","build_ms","build_cpu_ms",
//! "recompute_join_ms","recompute_join_cpu_ms","recompute_leave_ms","recompute_leave_cpu_ms",
//! "max_over_fair","moved_weight_over_ideal_join",
//! "moved_weight_over_ideal_leave","bytes","bytes_per_app","lookup_ns","overflowed",
//! "bound_guaranteed","matches_rebuild"}`.
//!
//! - Nodes are `10.0.{i/250}.{i%250+1}:10000` for i in 0..N, all of capacity 1; apps are the ids
//!   1..=M (as the database numbers them). Weights: `uniform` all 1; `zipf` integers 1..=64 with
//!   P(w) ∝ 1/w (mean 13.5), drawn with splitmix64 from `--seed`.
//! - The join is of `10.9.9.9:10000` (capacity 1); the leave, after it, of `10.0.0.1:10000`.
//! - `build_ms`: building from the two sets. For `rendezvous`: building the ring and computing
//!   every app's owner (what the membership does to know what it owns).
//! - `recompute_join_ms`, `recompute_leave_ms`: applying the change and having every app's new
//!   owner (best of 3 runs, each on a copy of the state before the change). One thread.
//! - `build_cpu_ms`, `recompute_join_cpu_ms`, `recompute_leave_cpu_ms`: the same, in CPU time of
//!   the thread, which a neighbour's load on a shared machine does not inflate.
//! - `max_over_fair`: the largest owned weight over fair share (total weight × capacity / total
//!   capacity), the worst of the three states (built, after the join, after the leave).
//! - `moved_weight_over_ideal_join`: weight of the apps whose owner changed on the join, over
//!   the **minimum any balanced assignment must move**: the new node's fair share
//!   (W × c_new / C after the join), since an assignment that gives every node its fair share
//!   must move that much onto the new node. (Nothing less is "ideal": a node that receives less
//!   than its share leaves the others above theirs.)
//! - `moved_weight_over_ideal_leave`: weight that changed owner on the leave over the weight the
//!   leaver owned, which every assignment must move.
//! - `bytes`: heap bytes the structure holds after the build (counted by the allocator): for
//!   `bounded` the whole `Assignment` (per-app tables and the current placement), for
//!   `rendezvous` the ring alone (it keeps nothing per app). `bytes_per_app` = bytes / M.
//! - `lookup_ns`: the mean time of `owner_of(app)` over every app, hashing the id included.
//! - `overflowed` (apps that found no node within the limit; 0 when `bound_guaranteed`, the
//!   precondition ε·W ≥ (N−1)·w_max) and `matches_rebuild` (the incremental results equal a
//!   build from scratch of the same sets) are `null` for `rendezvous`.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use counting_alloc::live_bytes;
use task_dispatch::{
    AppId, Assignment, AssignmentError, AssignmentKind, Epsilon, LoadBound, Placement, Ring,
    RingKind,
};

#[derive(Debug, Parser)]
#[command(about = "Bounded-load assignment at scale: build, one join, one leave")]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Number of apps.
    #[arg(long, default_value_t = 10_000)]
    apps: usize,
    /// The slack of the bound (1+ε) × fair share.
    #[arg(long, default_value_t = 0.1)]
    epsilon: f64,
    /// The weight law.
    #[arg(long, value_enum, default_value_t = Weights::Uniform)]
    weights: Weights,
    /// `bounded`, or `rendezvous` (the plain ring, for comparison).
    #[arg(long, default_value = "bounded")]
    assignment: String,
    /// Seed of the weights.
    #[arg(long, default_value_t = 20_240_601)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Weights {
    Uniform,
    Zipf,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Figures {
    build: Timing,
    join: Timing,
    leave: Timing,
    max_over_fair: f64,
    moved_join: f64,
    moved_leave: f64,
    bytes: usize,
    lookup_ns: f64,
    overflowed: Option<usize>,
    bound_guaranteed: Option<bool>,
    matches_rebuild: Option<bool>,
}

/// Elapsed wall-clock time, and CPU time of this thread (what the work costs on one core,
/// whatever else the shared machine runs).
#[derive(Debug, Clone, Copy, Default)]
struct Timing {
    wall: Duration,
    cpu: Duration,
}

impl Timing {
    /// The better of two measurements, figure by figure.
    fn min(self, other: Self) -> Self {
        Self {
            wall: self.wall.min(other.wall),
            cpu: self.cpu.min(other.cpu),
        }
    }

    const MAX: Self = Self {
        wall: Duration::MAX,
        cpu: Duration::MAX,
    };
}

#[derive(Debug, Clone, Copy)]
struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: thread_cpu(),
        }
    }

    fn elapsed(&self) -> Timing {
        Timing {
            wall: self.wall.elapsed(),
            cpu: thread_cpu().saturating_sub(self.cpu),
        }
    }
}

fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut now) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

const JOINER: &str = "10.9.9.9:10000";
const LEAVER: &str = "10.0.0.1:10000";
const RUNS: usize = 3;

fn main() -> ExitCode {
    let args = Args::parse();
    let kind: AssignmentKind = match args.assignment.parse() {
        Ok(kind) => kind,
        Err(err) => {
            eprintln!("scale_sim: --assignment: {err}");
            return ExitCode::from(2);
        }
    };
    let epsilon = match Epsilon::new(args.epsilon) {
        Ok(epsilon) => epsilon,
        Err(err) => {
            eprintln!("scale_sim: --epsilon: {err}");
            return ExitCode::from(2);
        }
    };
    if args.nodes == 0 || args.apps == 0 {
        eprintln!("scale_sim: --nodes and --apps must be at least 1");
        return ExitCode::from(2);
    }
    let nodes: Vec<String> = (0..args.nodes)
        .map(|i| format!("10.0.{}.{}:10000", i / 250, i % 250 + 1))
        .collect();
    let weights = weights(args.weights, args.seed, args.apps);
    let figures = match kind {
        AssignmentKind::Bounded => bounded(&nodes, &weights, epsilon),
        AssignmentKind::Rendezvous => Ok(rendezvous(&nodes, &weights)),
    };
    let figures = match figures {
        Ok(figures) => figures,
        Err(err) => {
            eprintln!("scale_sim: {err}");
            return ExitCode::FAILURE;
        }
    };
    let json = |value: Option<String>| value.unwrap_or_else(|| "null".to_owned());
    println!(
        "{{\"assignment\":\"{}\",\"weights\":\"{}\",\"nodes\":{},\"apps\":{},\"epsilon\":{},\"seed\":{},\"build_ms\":{:.1},\"build_cpu_ms\":{:.1},\"recompute_join_ms\":{:.2},\"recompute_join_cpu_ms\":{:.2},\"recompute_leave_ms\":{:.2},\"recompute_leave_cpu_ms\":{:.2},\"max_over_fair\":{:.4},\"moved_weight_over_ideal_join\":{:.4},\"moved_weight_over_ideal_leave\":{:.4},\"bytes\":{},\"bytes_per_app\":{:.1},\"lookup_ns\":{:.1},\"overflowed\":{},\"bound_guaranteed\":{},\"matches_rebuild\":{}}}",
        kind,
        match args.weights {
            Weights::Uniform => "uniform",
            Weights::Zipf => "zipf",
        },
        args.nodes,
        args.apps,
        epsilon,
        args.seed,
        ms(figures.build.wall),
        ms(figures.build.cpu),
        ms(figures.join.wall),
        ms(figures.join.cpu),
        ms(figures.leave.wall),
        ms(figures.leave.cpu),
        figures.max_over_fair,
        figures.moved_join,
        figures.moved_leave,
        figures.bytes,
        figures.bytes as f64 / args.apps as f64,
        figures.lookup_ns,
        json(figures.overflowed.map(|n| n.to_string())),
        json(figures.bound_guaranteed.map(|b| b.to_string())),
        json(figures.matches_rebuild.map(|b| b.to_string())),
    );
    if figures.matches_rebuild == Some(false) {
        eprintln!("scale_sim: the incremental result differs from a rebuild");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The weight of app `id` (ids are 1..=M).
fn weight_of(weights: &[u32], id: AppId) -> u64 {
    u64::from(weights[(id - 1) as usize])
}

fn bounded(
    nodes: &[String],
    weights: &[u32],
    epsilon: Epsilon,
) -> Result<Figures, AssignmentError> {
    let bound = LoadBound::Within(epsilon);
    let node_set = |ids: &[&str]| {
        ids.iter()
            .map(|id| ((*id).to_owned(), 1))
            .collect::<Vec<_>>()
    };
    let apps: Vec<(AppId, u32)> = (1..).zip(weights.iter().copied()).collect();
    let mut figures = Figures::default();

    let before = live_bytes();
    let started = Stopwatch::start();
    let built = Assignment::build(
        nodes.iter().map(|id| (id.as_str(), 1)),
        apps.iter().copied(),
        bound,
    )?;
    figures.build = started.elapsed();
    figures.bytes = live_bytes().saturating_sub(before);

    let (joined, join) = best_of(&built, |a| a.node_joined(JOINER, 1))?;
    let (left, leave) = best_of(&joined, |a| a.node_left(LEAVER))?;
    figures.join = join;
    figures.leave = leave;

    let states = [built.placement(), joined.placement(), left.placement()];
    figures.max_over_fair = states.iter().map(|p| p.max_over_fair()).fold(0.0, f64::max);
    let ideal_join = joined.placement().fair_share(JOINER).unwrap_or(0.0);
    let ideal_leave = joined.placement().owned_weight(LEAVER).unwrap_or(0) as f64;
    figures.moved_join = moved(built.placement(), joined.placement(), weights) as f64 / ideal_join;
    figures.moved_leave = moved(joined.placement(), left.placement(), weights) as f64 / ideal_leave;
    figures.overflowed = states.iter().map(|p| p.overflowed()).max();
    figures.bound_guaranteed = Some(states.iter().all(|p| p.bound_guaranteed()));

    let mut checksum = 0usize;
    let started = Instant::now();
    for id in 1..=weights.len() as AppId {
        checksum += built
            .placement()
            .owner_of(black_box(id))
            .map_or(0, str::len);
    }
    figures.lookup_ns = started.elapsed().as_secs_f64() * 1e9 / weights.len() as f64;
    black_box(checksum);

    // Incremental == from scratch, for both changed states.
    let mut after_join: Vec<&str> = nodes.iter().map(String::as_str).collect();
    after_join.push(JOINER);
    let after_leave: Vec<&str> = after_join
        .iter()
        .copied()
        .filter(|id| *id != LEAVER)
        .collect();
    let mut matches = true;
    for (ids, state) in [(&after_join, &joined), (&after_leave, &left)] {
        let fresh = Assignment::build(node_set(ids), apps.iter().copied(), bound)?;
        matches &= fresh.placement().owners().eq(state.placement().owners());
    }
    figures.matches_rebuild = Some(matches);
    Ok(figures)
}

/// Applies `change` to copies of `state` [`RUNS`] times; the last result and the best time.
fn best_of(
    state: &Assignment,
    change: impl Fn(&mut Assignment) -> Result<std::sync::Arc<Placement>, AssignmentError>,
) -> Result<(Assignment, Timing), AssignmentError> {
    let mut best = Timing::MAX;
    let mut result = state.clone();
    for _ in 0..RUNS {
        let mut copy = state.clone();
        let started = Stopwatch::start();
        change(&mut copy)?;
        best = best.min(started.elapsed());
        result = copy;
    }
    Ok((result, best))
}

/// The weight of the apps whose owner differs between two placements of the same apps.
fn moved(before: &Placement, after: &Placement, weights: &[u32]) -> u64 {
    before
        .owners()
        .zip(after.owners())
        .filter(|((_, old), (_, new))| old != new)
        .map(|((id, _), _)| weight_of(weights, id))
        .sum()
}

fn rendezvous(nodes: &[String], weights: &[u32]) -> Figures {
    let mut figures = Figures::default();
    let owners_of = |ring: &Ring| -> Vec<u32> {
        (1..=weights.len() as AppId)
            .map(|id| {
                ring.owner_of_app(id)
                    .map_or(u32::MAX, |owner| index_of(ring, owner))
            })
            .collect()
    };
    let before = live_bytes();
    let started = Stopwatch::start();
    let ring = Ring::new(RingKind::Rendezvous, nodes.iter().cloned())
        .unwrap_or_else(|_| Ring::empty(RingKind::Rendezvous));
    figures.bytes = live_bytes().saturating_sub(before);
    let owners = owners_of(&ring);
    figures.build = started.elapsed();

    let rebuilt = |ids: Vec<String>| {
        let mut best = Timing::MAX;
        let mut result = (Ring::empty(RingKind::Rendezvous), Vec::new());
        for _ in 0..RUNS {
            let started = Stopwatch::start();
            let ring = Ring::new(RingKind::Rendezvous, ids.iter().cloned())
                .unwrap_or_else(|_| Ring::empty(RingKind::Rendezvous));
            let owners = owners_of(&ring);
            best = best.min(started.elapsed());
            result = (ring, owners);
        }
        (result, best)
    };
    let joined_ids: Vec<String> = nodes.iter().cloned().chain([JOINER.to_owned()]).collect();
    let left_ids: Vec<String> = joined_ids
        .iter()
        .filter(|id| *id != LEAVER)
        .cloned()
        .collect();
    let ((joined_ring, joined), join) = rebuilt(joined_ids);
    let ((left_ring, left), leave) = rebuilt(left_ids);
    figures.join = join;
    figures.leave = leave;

    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let loads = |ring: &Ring, owners: &[u32]| {
        let mut loads = vec![0u64; ring.nodes().len()];
        for (&owner, &w) in owners.iter().zip(weights) {
            loads[owner as usize] += u64::from(w);
        }
        loads
    };
    let max_over_fair = |ring: &Ring, owners: &[u32]| {
        let fair = total as f64 / ring.nodes().len() as f64;
        loads(ring, owners).into_iter().max().unwrap_or(0) as f64 / fair
    };
    figures.max_over_fair = max_over_fair(&ring, &owners)
        .max(max_over_fair(&joined_ring, &joined))
        .max(max_over_fair(&left_ring, &left));
    let moved = |a: (&Ring, &[u32]), b: (&Ring, &[u32])| -> u64 {
        a.1.iter()
            .zip(b.1)
            .zip(weights)
            .filter(|((x, y), _)| a.0.nodes()[**x as usize] != b.0.nodes()[**y as usize])
            .map(|(_, &w)| u64::from(w))
            .sum()
    };
    let ideal_join = total as f64 / joined_ring.nodes().len() as f64;
    let leaver = index_of(&joined_ring, LEAVER) as usize;
    let ideal_leave = loads(&joined_ring, &joined)[leaver] as f64;
    figures.moved_join = moved((&ring, &owners), (&joined_ring, &joined)) as f64 / ideal_join;
    figures.moved_leave = moved((&joined_ring, &joined), (&left_ring, &left)) as f64 / ideal_leave;

    let mut checksum = 0usize;
    let started = Instant::now();
    for id in 1..=weights.len() as AppId {
        checksum += ring.owner_of_app(black_box(id)).map_or(0, str::len);
    }
    figures.lookup_ns = started.elapsed().as_secs_f64() * 1e9 / weights.len() as f64;
    black_box(checksum);
    figures
}

fn index_of(ring: &Ring, node: &str) -> u32 {
    ring.nodes()
        .binary_search_by(|n| n.as_str().cmp(node))
        .map_or(u32::MAX, |i| i as u32)
}

/// `count` weights: all 1, or 1..=64 with P(w) ∝ 1/w (splitmix64 from `seed`).
fn weights(law: Weights, seed: u64, count: usize) -> Vec<u32> {
    if law == Weights::Uniform {
        return vec![1; count];
    }
    let harmonic: f64 = (1..=64).map(|w| 1.0 / f64::from(w)).sum();
    let mut cumulative = Vec::with_capacity(64);
    let mut sum = 0.0;
    for w in 1..=64 {
        sum += 1.0 / f64::from(w) / harmonic;
        cumulative.push(sum);
    }
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            cumulative.partition_point(|&c| c <= u).min(63) as u32 + 1
        })
        .collect()
}

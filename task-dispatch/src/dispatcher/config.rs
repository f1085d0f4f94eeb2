//! How a dispatcher is configured, and what it counts.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::affinity::HostId;
use crate::assignment::{AssignmentKind, Epsilon};
use crate::error::{Error, Result};
use crate::ring::RingKind;

/// How a dispatcher behaves. [`DispatcherConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's id, as registered in the registry (by default `host:port`).
    pub node_id: String,
    /// The host this node runs on, the same it publishes in the live set. An app whose
    /// executor ties it to its host ([`AppActions::is_host_bound`]) is pinned to it when it is
    /// started here (see `App::host`). `None` (the default): this node pins nothing, and owns
    /// no app that is pinned.
    ///
    /// [`AppActions::is_host_bound`]: crate::AppActions::is_host_bound
    pub host: Option<HostId>,
    /// The ring implementation (every node of a cluster must use the same).
    pub ring: RingKind,
    /// How apps are placed on the live nodes (`dispatch.assignment`; every node of a cluster
    /// must use the same, with the same `epsilon`): plain rendezvous (the default) or the
    /// bounded-load assignment over app weights and node capacities (issue 16).
    pub assignment: AssignmentKind,
    /// ε of the bounded-load assignment: no node owns more than `(1+ε) ×` its fair share.
    /// Default 0.1.
    pub epsilon: Epsilon,
    /// The fallback poll for tasks whose wake-up signal was lost. Default 1 s.
    pub poll_interval: Duration,
    /// What the poll reads. Default [`PollStrategy::Indexed`].
    pub poll_strategy: PollStrategy,
    /// How often each owned RUNNING app is probed (`monitor.interval_ms`). Default 1 s.
    pub monitor_interval: Duration,
    /// Tasks claimed and running at once on this node, so at most as many executor calls
    /// (start/stop). A worker takes one of these permits before it claims a task. Default 16.
    pub max_parallel_actions: usize,
    /// Claims of one task before it is failed as abandoned (its owners kept dying). Default 3.
    pub max_attempts: i64,
    /// How often a new owner retries taking a lease that a live node still holds. Default
    /// 500 ms (a release also wakes it through the poll).
    pub lease_retry_interval: Duration,
    /// Group commit (issue 15): submissions arriving together share one transaction, and the
    /// app workers' queue reads, adoptions, claims and outcomes arriving together share one
    /// statement of each kind; every caller still gets the answer of its own single call.
    /// Default on. Off: one transaction per submission and one statement per owner write, as
    /// the StreamPark design did (the benchmark baseline).
    pub group_commit: bool,
}

impl DispatcherConfig {
    /// The defaults for node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            host: None,
            ring: RingKind::default(),
            assignment: AssignmentKind::default(),
            epsilon: Epsilon::default(),
            poll_interval: Duration::from_secs(1),
            poll_strategy: PollStrategy::Indexed,
            monitor_interval: Duration::from_secs(1),
            max_parallel_actions: 16,
            max_attempts: 3,
            lease_retry_interval: Duration::from_millis(500),
            group_commit: true,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        let zero = [
            ("poll_interval", self.poll_interval),
            ("monitor_interval", self.monitor_interval),
            ("lease_retry_interval", self.lease_retry_interval),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::InvalidInput(format!("{name} must be above zero")));
        }
        if self.max_parallel_actions == 0 || self.max_attempts < 1 {
            return Err(Error::InvalidInput(
                "max_parallel_actions and max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What the dispatcher's poll reads to find apps with work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollStrategy {
    /// Only the PENDING and RUNNING rows, through the status index.
    #[default]
    Indexed,
    /// The whole task table, every column, filtered in memory: what the StreamPark design did
    /// every 50 ms on every node. No wake-ups either, not even of a local owner: a task is found
    /// by the scan alone, as there. Kept only as the baseline of the cluster benchmark; never
    /// use it in production.
    FullTableScan,
}

/// Counters for `/metrics` (monotonic since start, except the in-flight gauge).
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Executor calls running now (a gauge).
    pub actions_in_flight: AtomicU64,
    /// Tasks this node finished SUCCEEDED.
    pub tasks_succeeded: AtomicU64,
    /// Tasks this node finished FAILED (executor errors, refusals, abandoned).
    pub tasks_failed: AtomicU64,
    /// Reads of the unfinished-task index: fallback polls, and checks of woken apps that the
    /// node does not own (a batch of ids per read).
    pub polls: AtomicU64,
    /// Reads of one app's task queue by its worker: one per task run (each read also tells
    /// whether another task waits behind, so an empty queue needs no read of its own), plus one
    /// for a wake that finds nothing. Monitoring a running app reads none.
    pub task_queue_reads: AtomicU64,
    /// App leases taken.
    pub adoptions: AtomicU64,
    /// Apps found dead by a probe and marked FAILED.
    pub apps_found_dead: AtomicU64,
    /// App workers started: one per app gained, one more each time a worker is replaced. Each
    /// one reads its app at least once (to take the lease).
    pub workers_started: AtomicU64,
    /// Transactions that queued submissions (one per batch of group commit; issue 15).
    pub submission_batches: AtomicU64,
}

//! The clustered console as a library: `main.rs` loads a [`ConsoleConfig`] and calls [`run`];
//! tests start a [`Console`] and drive its router.
//!
//! Composition only: the registry comes from `registry-all`, ownership and tasks from
//! `task-dispatch`, apps run through executors (`executor/`). This crate holds no SQL and no
//! ZooKeeper calls. Its modules are private; the items below are what the binary and the tests
//! use.

mod actions;
mod config;
mod data_lock;
mod executor;
mod http;
mod metrics;
mod node;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use registry_api::{LeaderElection, LeaderRetrieval, Registry, RegistryError, Secret};
use task_dispatch::{
    Dispatcher, DispatcherConfig, OwnerNotifier, PollOnly, PollStrategy, Store, redact_url,
    unix_millis,
};

use crate::actions::{ConsoleActions, Executors};
pub use crate::config::{ConfigError, ConsoleConfig};
use crate::data_lock::{DATA_DIR_LOCK, DataLocks, LockError};
/// The typed client of Flink's REST API that the `flink` executor is built on (public for its
/// integration tests against a real session cluster).
pub use crate::executor::flink;
use crate::executor::flink_job::FlinkExecutor;
use crate::executor::{NoopExecutor, ProcessExecutor};
use crate::metrics::Metrics;
use crate::node::leader::{LEADER_PATH, LeaderDuties};
use crate::node::peers::{NodeInfo, NodeLoad, Peers};
use crate::node::signing::NodeKey;
use crate::node::wake::HttpNudge;
use crate::node::{ClusterNode, JoinError, host};

/// Why the node could not start or stopped with an error. `Display` is the line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("cannot connect the {kind} registry: {source}")]
    Registry { kind: String, source: RegistryError },
    #[error("cannot open the database {url}: {source}")]
    Database {
        url: String,
        source: task_dispatch::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot set up the process executor: {0}")]
    Executor(#[from] executor::ExecutorError),
    #[error("cannot tell which machine this node runs on: {0}")]
    HostIdentity(String),
    #[error("cannot start the dispatcher: {0}")]
    Dispatcher(task_dispatch::Error),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("leader election: {0}")]
    Election(RegistryError),
    #[error("cannot build the HTTP client for node-to-node calls: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// Runs one node until SIGTERM or SIGINT, then stops gracefully: finishes the actions in
/// flight, hands its apps back, deregisters and returns. Apps keep running.
pub async fn run(config: ConsoleConfig, hooks: BenchmarkHooks) -> Result<(), StartupError> {
    let addr = format!("{}:{}", config.server.host, config.server.port);
    if !config.server.is_loopback() && config.server.auth_token.is_empty() {
        tracing::warn!(
            host = %config.server.host,
            "server.allow_unauthenticated is set: anyone who reaches {addr} can create apps, which run commands; set server.auth_token"
        );
    }
    let listener = tokio::net::TcpListener::bind((config.server.host.as_str(), config.server.port))
        .await
        .map_err(|source| StartupError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let bound: SocketAddr = listener
        .local_addr()
        .map_err(|source| StartupError::Listen { addr, source })?;
    let console = Console::start_with(&config, bound.port(), hooks).await?;
    tracing::info!(node = %console.node_id(), %bound, registry = config.registry.kind, database = %redact_url(&config.database.url), "console-server serving");
    let limits = http::listener::Limits {
        header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
        max_connections: http::listener::connection_cap(config.server.max_connections),
    };
    let events = console.state.events.clone();
    http::listener::serve(listener, console.router(), limits, async move {
        shutdown_signal().await;
        // Open event streams never end by themselves; graceful shutdown waits for them.
        events.close();
    })
    .await;
    console.shutdown().await;
    Ok(())
}

/// One running node without its listener: registry session, store, dispatcher, cluster
/// membership, leader election and the HTTP router. [`run`] serves it on a socket; tests drive
/// [`Console::router`] directly.
#[derive(Debug)]
pub struct Console {
    registry: Arc<dyn Registry>,
    store: Store,
    dispatcher: Dispatcher,
    node: Arc<ClusterNode>,
    election: LeaderElection,
    state: http::ApiState,
    auth_token: Secret,
    /// Node-to-node calls; used here for the departure notice on shutdown.
    peer_calls: HttpNudge,
    /// This node's exclusive hold on its data directory (and SQLite file), until it is dropped.
    _locks: DataLocks,
}

impl Console {
    /// Connects everything and joins the cluster as the node reachable on `port`.
    ///
    /// # Notable errors
    /// A [`StartupError`] naming the part that failed (registry, database, duplicate node id).
    pub async fn start(config: &ConsoleConfig, port: u16) -> Result<Self, StartupError> {
        Self::start_with(config, port, BenchmarkHooks::default()).await
    }

    /// Like [`Console::start`], with the benchmark's hooks.
    pub async fn start_with(
        config: &ConsoleConfig,
        port: u16,
        hooks: BenchmarkHooks,
    ) -> Result<Self, StartupError> {
        let locks = lock_local_files(config)?;
        let registry: Arc<dyn Registry> = registry_all::connect(&config.registry)
            .await
            .map_err(|source| StartupError::Registry {
                kind: config.registry.kind.clone(),
                source,
            })?
            .into();
        let store = Store::connect(&config.database.url)
            .await
            .map_err(|source| StartupError::Database {
                url: redact_url(&config.database.url),
                source,
            })?;
        let node_id = config.node_id(port);
        let host_id = host::host_identity().map_err(StartupError::HostIdentity)?;
        let shared = store
            .cluster_settings()
            .await
            .map_err(|source| StartupError::Database {
                url: redact_url(&config.database.url),
                source,
            })?;
        let node_key = NodeKey::new(&config.cluster.secret, &shared.node_key);
        let process = ProcessExecutor::new(config.node.data_dir.join("apps"), &shared.cluster_id)?;
        let logs = process.app_logs();
        let mut executors = Executors::default().with(Arc::new(process));
        let metrics = Metrics::new();
        if !config.executors.flink.rest_url.is_empty() {
            let flink = FlinkExecutor::new(&config.executors.flink, &shared.cluster_id)?
                .with_overview_counter(metrics.flink_overview_calls.clone());
            tracing::info!(rest_url = %config.executors.flink.rest_url, "flink executor on");
            executors = executors.with(Arc::new(flink));
        }
        if hooks.noop_executor {
            tracing::warn!("benchmark hook: the noop executor is enabled");
            executors = executors.with(Arc::new(NoopExecutor));
        }
        let peers = Peers::default();
        let mut dispatch_config = DispatcherConfig::new(node_id.clone());
        dispatch_config.monitor_interval = config.monitor.interval();
        dispatch_config.host = Some(host_id.clone());
        // Checked at start-up (`ConsoleConfig::load`).
        dispatch_config.assignment = config.dispatch.kind().unwrap_or_default();
        dispatch_config.epsilon = config.dispatch.epsilon().unwrap_or_default();
        let peer_calls = HttpNudge::new(peers.clone(), node_key.clone(), node_id.clone())?;
        let notifier: Arc<dyn OwnerNotifier> = if hooks.streampark_baseline {
            tracing::warn!(
                "benchmark hook: StreamPark baseline dispatch (full task-table scan every 50 ms, no wake-ups, no group commit)"
            );
            dispatch_config.poll_strategy = PollStrategy::FullTableScan;
            dispatch_config.poll_interval = STREAMPARK_SCAN_INTERVAL;
            // StreamPark wrote each submission and each claim on its own.
            dispatch_config.group_commit = false;
            Arc::new(PollOnly)
        } else {
            Arc::new(peer_calls.clone())
        };
        let actions = ConsoleActions::new(executors.clone(), metrics.dispatch_latency.clone());
        let dispatcher =
            Dispatcher::start(dispatch_config, store.clone(), Arc::new(actions), notifier)
                .await
                .map_err(StartupError::Dispatcher)?;
        let metrics = Arc::new(metrics.with_dispatcher(dispatcher.clone()));
        let info = NodeInfo {
            id: node_id.clone(),
            host: config.server.advertised_host.clone(),
            port,
            pid: std::process::id(),
            mac: host::main_mac_address(),
            host_id: Some(host_id),
            started_at: unix_millis(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capacity: config.node.capacity,
            assignment: Some(config.dispatch.describe()),
            load: NodeLoad::default(),
        };
        let node = ClusterNode::join(
            registry.clone(),
            dispatcher.clone(),
            info,
            metrics.clone(),
            peers,
        )
        .await?;
        let duties = Arc::new(LeaderDuties::new(store.clone()));
        let election = LeaderElection::start(registry.clone(), LEADER_PATH, node_id, duties)
            .map_err(StartupError::Election)?;
        let leader = retry_transient("reading the leader", || {
            LeaderRetrieval::start(registry.clone(), LEADER_PATH)
        })
        .await
        .map_err(StartupError::Election)?;
        let events =
            http::events::EventHub::new(metrics.event_streams.clone(), metrics.event_feeds.clone());
        let state = http::ApiState {
            dispatcher: dispatcher.clone(),
            node: node.clone(),
            executors,
            metrics,
            leader: Arc::new(leader),
            registry_kind: config.registry.kind.as_str().into(),
            events,
            logs,
            node_key,
            request_timeout: Duration::from_millis(config.server.request_timeout_ms),
            savepoint_dir: http::savepoints::SavepointDir(
                (!config.executors.flink.savepoint_dir.is_empty())
                    .then(|| config.executors.flink.savepoint_dir.clone().into()),
            ),
        };
        Ok(Self {
            registry,
            store,
            dispatcher,
            node,
            election,
            state,
            auth_token: config.server.auth_token.clone(),
            peer_calls,
            _locks: locks,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        self.node.id()
    }

    /// The HTTP API of this node.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone(), self.auth_token.clone())
    }

    /// Hands over and leaves: no new claims, the actions in flight finish (up to
    /// [`SHUTDOWN_GRACE`]), every app is released, the registry entry is removed and the peers
    /// are told (`/internal/v1/left`) so that they adopt at once rather than after the session
    /// timeout or the registry's next event, and the registry is closed.
    pub async fn shutdown(self) {
        let node_id = self.node.id().to_owned();
        tracing::info!(node = %node_id, "shutting down: handing apps over");
        let started = std::time::Instant::now();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.dispatcher.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "actions still running after the grace period; leaving anyway, their tasks will be re-claimed");
        }
        self.node.leave().await;
        // Peers would learn of the departure from the registry too, but only at its next event
        // (a heartbeat interval with the MySQL registry); the notice lets them adopt now.
        self.peer_calls
            .announce_departure(&self.node.departure())
            .await;
        self.election.stop().await;
        drop(self.state);
        if let Err(error) = self.registry.close().await {
            tracing::warn!(%error, "closing the registry failed");
        }
        self.store.close().await;
        tracing::info!(node = %node_id, took = ?started.elapsed(), "console-server stopped");
    }
}

/// Takes the exclusive locks on `node.data_dir` and on the SQLite store file (if that is the
/// store): a second console on either exits here instead of fencing the first in a loop.
fn lock_local_files(config: &ConsoleConfig) -> Result<DataLocks, LockError> {
    let mut locks = DataLocks::default();
    let data_dir = &config.node.data_dir;
    locks.acquire(
        &format!("node.data_dir {}", data_dir.display()),
        &data_dir.join(DATA_DIR_LOCK),
    )?;
    if let Some(file) = data_lock::sqlite_file(&config.database.url) {
        let mut lock = file.clone().into_os_string();
        lock.push(".lock");
        locks.acquire(
            &format!("the SQLite store {}", file.display()),
            std::path::Path::new(&lock),
        )?;
    }
    Ok(locks)
}

/// Switches that only the cluster benchmark uses (`docs/BENCHMARKS.md`), read from the
/// environment by `main`, never from the configuration file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BenchmarkHooks {
    /// `CONSOLE_BENCHMARK_EXECUTOR=noop`: register the `noop` executor, so that figures measure
    /// coordination rather than process start-up.
    pub noop_executor: bool,
    /// `CONSOLE_BENCHMARK_DISPATCH=streampark`: dispatch the way the StreamPark design did
    /// (every node reads the whole task table every 50 ms; no wake-up signals), as the baseline.
    pub streampark_baseline: bool,
}

impl BenchmarkHooks {
    /// Reads the hooks from the process environment.
    ///
    /// # Notable errors
    /// A message naming the variable whose value is not understood.
    pub fn from_env() -> Result<Self, String> {
        let read = |name: &str, wanted: &str| match std::env::var(name) {
            Err(_) => Ok(false),
            Ok(value) if value == wanted => Ok(true),
            Ok(value) => Err(format!(
                "{name}={value:?} is not understood; the only value is {wanted:?}"
            )),
        };
        Ok(Self {
            noop_executor: read("CONSOLE_BENCHMARK_EXECUTOR", "noop")?,
            streampark_baseline: read("CONSOLE_BENCHMARK_DISPATCH", "streampark")?,
        })
    }
}

/// The StreamPark design's scan period.
const STREAMPARK_SCAN_INTERVAL: Duration = Duration::from_millis(50);

/// How long a start-up registry call is retried while it fails with transient errors.
const STARTUP_RETRY: Duration = Duration::from_secs(30);

/// Runs a start-up registry `call` again while it fails with a transient error (a session
/// wavering on a loaded machine), for at most [`STARTUP_RETRY`]; any other error at once.
async fn retry_transient<T, F, Fut>(what: &str, mut call: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(error) if error.is_transient() && started.elapsed() < STARTUP_RETRY => {
                tracing::warn!(%error, ?pause, "{what} at start-up failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// How long a graceful shutdown waits for actions in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

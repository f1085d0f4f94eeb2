//! The clustered console as a library: `main.rs` parses the command line and calls [`run`];
//! tests build the same pieces directly.
//!
//! Composition only: the registry comes from `registry-all`, ownership and tasks from
//! `task-dispatch`, apps run through [`executor`]s. This crate holds no SQL and no ZooKeeper
//! calls.

pub mod actions;
pub mod config;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod node;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use registry_api::{LeaderElection, LeaderRetrieval, Registry, RegistryError};
use task_dispatch::{Dispatcher, DispatcherConfig, Store};

use crate::actions::{ConsoleActions, Executors};
use crate::config::{ConsoleConfig, redact_url};
use crate::executor::ProcessExecutor;
use crate::metrics::Metrics;
use crate::node::leader::{LEADER_PATH, LeaderDuties};
use crate::node::peers::{NodeInfo, NodeLoad, Peers};
use crate::node::wake::HttpNudge;
use crate::node::{ClusterNode, JoinError, host};

/// Why the node could not start or stopped with an error. `Display` is the line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
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
    #[error("cannot prepare the app log directory: {0}")]
    Executor(#[from] executor::ExecutorError),
    #[error("cannot start the dispatcher: {0}")]
    Dispatcher(task_dispatch::Error),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("leader election: {0}")]
    Election(RegistryError),
    #[error("cannot build the HTTP client for node-to-node calls: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Runs one node until SIGTERM or SIGINT, then stops gracefully: finishes the actions in
/// flight, hands its apps back, deregisters and returns. Apps keep running.
pub async fn run(config: ConsoleConfig) -> Result<(), StartupError> {
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
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartupError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let bound: SocketAddr = listener
        .local_addr()
        .map_err(|source| StartupError::Listen { addr, source })?;
    let node_id = config.node_id(bound.port());

    let executors = Executors::default().with(Arc::new(ProcessExecutor::new(
        config.node.data_dir.join("apps"),
    )?));
    let peers = Peers::default();
    let nudge = HttpNudge::new(peers.clone(), config.server.auth_token.clone())?;
    let mut dispatch_config = DispatcherConfig::new(node_id.clone());
    dispatch_config.monitor_interval = config.monitor.interval();
    let metrics = Metrics::new();
    let actions = ConsoleActions::new(executors.clone(), metrics.dispatch_latency.clone());
    let dispatcher = Dispatcher::start(
        dispatch_config,
        store.clone(),
        Arc::new(actions),
        Arc::new(nudge),
    )
    .await
    .map_err(StartupError::Dispatcher)?;
    let metrics = Arc::new(metrics.with_dispatcher(dispatcher.clone()));
    let info = NodeInfo {
        id: node_id.clone(),
        host: config.server.host.clone(),
        port: bound.port(),
        pid: std::process::id(),
        mac: host::main_mac_address(),
        started_at: unix_millis(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
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
    let election = LeaderElection::start(registry.clone(), LEADER_PATH, node_id.clone(), duties)
        .map_err(StartupError::Election)?;
    let leader = LeaderRetrieval::start(registry.clone(), LEADER_PATH)
        .await
        .map_err(StartupError::Election)?;

    let state = http::ApiState {
        dispatcher: dispatcher.clone(),
        node: node.clone(),
        executors,
        metrics,
        leader: leader.watch(),
    };
    let app = http::router(state, config.server.auth_token.clone());
    tracing::info!(node = %node_id, %bound, registry = registry.backend(), database = %redact_url(&config.database.url), "console-server serving");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;

    // Hand over: no new claims, finish what runs, release every app, then leave the cluster
    // so that peers adopt at once rather than after the session timeout.
    tracing::info!(node = %node_id, "shutting down: handing apps over");
    let started = std::time::Instant::now();
    tokio::time::timeout(SHUTDOWN_GRACE, dispatcher.shutdown()).await.unwrap_or_else(|_| {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "actions still running after the grace period; leaving anyway, their tasks will be re-claimed");
    });
    node.leave().await;
    election.stop().await;
    drop(leader);
    if let Err(error) = registry.close().await {
        tracing::warn!(%error, "closing the registry failed");
    }
    store.close().await;
    tracing::info!(node = %node_id, took = ?started.elapsed(), "console-server stopped");
    served.map_err(StartupError::Serve)
}

/// How long a graceful shutdown waits for actions in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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

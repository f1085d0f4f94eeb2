//! `GET /api/v1/cluster` (added, issue 17): the cluster at a glance, as this node sees it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use registry_api::ConnectionState;
use serde::Serialize;
use task_dispatch::Backend;

use super::ApiState;
use super::error::ApiError;

/// The answer of `GET /api/v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterSummary {
    /// The node that answered.
    pub node: String,
    /// `registry.type`: `standalone`, `zookeeper`, `mysql`, ...
    pub registry: String,
    /// The answering node's registry connection: `connected`, `suspended`, `reconnected`,
    /// `session_lost`, or `unknown` before the first report.
    pub session: &'static str,
    /// Whether the answering node acts (executes and monitors) now.
    pub acting: bool,
    /// The task store: `mysql` or `sqlite`.
    pub database: &'static str,
    /// The leader's node id, if one is known.
    pub leader: Option<String>,
    /// How many nodes are live.
    pub nodes: usize,
    /// How many apps exist, in all and by state (states without apps left out).
    pub apps: AppCounts,
    /// How many apps each node holds the lease of, read from the task store (nodes holding
    /// none left out). A node that is no longer live appears here until its apps are adopted.
    pub held_by_node: BTreeMap<String, i64>,
    /// The answering node's version.
    pub version: &'static str,
}

/// App counts of [`ClusterSummary`].
#[derive(Debug, Serialize)]
pub struct AppCounts {
    pub total: i64,
    pub by_state: BTreeMap<&'static str, i64>,
}

/// `GET /api/v1/cluster`.
pub async fn cluster_show(State(state): State<ApiState>) -> Result<Json<ClusterSummary>, ApiError> {
    let store = state.dispatcher.store();
    let by_state: BTreeMap<&'static str, i64> = store
        .count_apps_by_state()
        .await?
        .into_iter()
        .map(|(app_state, count)| (app_state.as_str(), count))
        .collect();
    let held_by_node = store.count_apps_by_owner().await?.into_iter().collect();
    Ok(Json(ClusterSummary {
        node: state.node.id().to_owned(),
        registry: state.registry_kind.to_string(),
        session: session_name(state.node.registry_state()),
        acting: state.node.is_acting(),
        database: match store.backend() {
            Backend::MySql => "mysql",
            Backend::Sqlite => "sqlite",
        },
        leader: state.leader.current().map(|info| info.address),
        nodes: state.node.peers().ids().len(),
        apps: AppCounts {
            total: by_state.values().sum(),
            by_state,
        },
        held_by_node,
        version: env!("CARGO_PKG_VERSION"),
    }))
}

fn session_name(state: Option<ConnectionState>) -> &'static str {
    match state {
        None => "unknown",
        Some(ConnectionState::Connected) => "connected",
        Some(ConnectionState::Suspended) => "suspended",
        Some(ConnectionState::Reconnected) => "reconnected",
        Some(ConnectionState::SessionLost) => "session_lost",
    }
}

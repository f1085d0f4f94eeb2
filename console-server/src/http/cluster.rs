//! `/api/v1/cluster/nodes` and the node-to-node calls (wake-up, departure notice).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use task_dispatch::{AppId, TaskId};

use super::ApiState;
use super::extract::ApiJson;
use crate::node::Departure;

/// A live node as the API shows it.
#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    pub leader: bool,
    /// The apps the node owns, as it last published.
    pub owned_apps: usize,
    pub running_tasks: usize,
    pub pid: u32,
    pub mac: Option<String>,
    /// The machine the node runs on (`<host name>/<machine id>`), for host affinity.
    pub host_id: Option<String>,
    pub version: String,
}

/// `GET /api/v1/cluster/nodes`: the live nodes, sorted by id.
pub async fn nodes_index(State(state): State<ApiState>) -> Json<Vec<NodeView>> {
    Json(node_views(&state))
}

/// The live nodes as this node sees them, sorted by id.
pub fn node_views(state: &ApiState) -> Vec<NodeView> {
    let leader = state.leader.current().map(|info| info.address);
    state
        .node
        .peers()
        .list()
        .into_iter()
        .map(|info| NodeView {
            leader: leader.as_deref() == Some(info.id.as_str()),
            id: info.id,
            host: info.host,
            port: info.port,
            started_at: info.started_at,
            owned_apps: info.load.owned_apps,
            running_tasks: info.load.running_tasks,
            pid: info.pid,
            mac: info.mac,
            host_id: info.host_id.map(|host| host.to_string()),
            version: info.version,
        })
        .collect()
}

/// The body of a wake-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wake {
    pub app_id: AppId,
    #[serde(default)]
    pub task_id: Option<TaskId>,
}

/// `POST /internal/v1/wake`: another node queued a task for an app this node owns.
pub async fn wake(State(state): State<ApiState>, ApiJson(body): ApiJson<Wake>) -> StatusCode {
    tracing::debug!(app_id = body.app_id, task_id = ?body.task_id, "woken by a peer");
    state.dispatcher.wake(body.app_id);
    StatusCode::NO_CONTENT
}

/// `POST /internal/v1/left`: a peer shut down gracefully and released its apps. 204 whether
/// or not it changed this node's view (a stale or unknown notice is ignored).
pub async fn left(State(state): State<ApiState>, ApiJson(body): ApiJson<Departure>) -> StatusCode {
    tracing::debug!(node = %body.node_id, "departure notice");
    state.node.peer_left(body);
    StatusCode::NO_CONTENT
}

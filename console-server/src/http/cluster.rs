//! `/api/v1/cluster/nodes` and the node-to-node calls (wake-up, departure notice).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use task_dispatch::{AppId, TaskId};

use super::ApiState;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::node::Departure;
use crate::node::wake::MAX_WAKE_IDS;

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
    /// The node's `node.capacity` (issue 16).
    pub capacity: u32,
    /// The weight the node owns, as it last published: under `dispatch.assignment: bounded`
    /// its share of every app's weight in the placement, otherwise the weight of the active
    /// apps and apps with tasks that it owns (issue 16).
    pub owned_weight: u64,
    /// How the node splits the apps (`rendezvous` or `bounded(epsilon=<ε>)`; issue 16).
    pub assignment: Option<String>,
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
            capacity: info.capacity,
            owned_weight: info.load.owned_weight,
            assignment: info.assignment,
            pid: info.pid,
            mac: info.mac,
            host_id: info.host_id.map(|host| host.to_string()),
            version: info.version,
        })
        .collect()
}

/// The body of a wake-up: one app (`app_id`, with the optional `task_id` it got), or several
/// (`app_ids`, at most [`MAX_WAKE_IDS`]; issue 15).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wake {
    #[serde(default)]
    pub app_id: Option<AppId>,
    #[serde(default)]
    pub task_id: Option<TaskId>,
    #[serde(default)]
    pub app_ids: Vec<AppId>,
}

/// `POST /internal/v1/wake`: another node queued tasks for apps this node owns. 204; 400 if
/// the body names no app or more than [`MAX_WAKE_IDS`].
pub async fn wake(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<Wake>,
) -> Result<StatusCode, ApiError> {
    let count = body.app_ids.len() + usize::from(body.app_id.is_some());
    if count == 0 || count > MAX_WAKE_IDS {
        return Err(ApiError::bad_request(
            "invalid_wake",
            format!("a wake-up names 1 to {MAX_WAKE_IDS} apps (app_id or app_ids)"),
        ));
    }
    tracing::debug!(app_id = ?body.app_id, task_id = ?body.task_id, apps = count, "woken by a peer");
    for app_id in body.app_id.into_iter().chain(body.app_ids) {
        state.dispatcher.wake(app_id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /internal/v1/left`: a peer shut down gracefully and released its apps. 204 whether
/// or not it changed this node's view (a stale or unknown notice is ignored).
pub async fn left(State(state): State<ApiState>, ApiJson(body): ApiJson<Departure>) -> StatusCode {
    tracing::debug!(node = %body.node_id, "departure notice");
    state.node.peer_left(body);
    StatusCode::NO_CONTENT
}

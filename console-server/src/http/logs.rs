//! `GET /api/v1/apps/{id}/log?tail=N`: the last lines of an app's log (added, issue 17).
//!
//! Served by a node that can read the file: any node on the host of a running `process` app
//! (its handle names the file), or the node that started a stopped one. Another node answers
//! 409 `log_on_other_node` / `log_on_other_host` naming the node to ask instead. It does not
//! forward the call: node-to-node calls must not carry the user's token, and the cluster's own
//! credential carries hints only, never data a user reads.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use task_dispatch::{Action, App, AppId};

use super::ApiState;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use crate::executor::{LogPlace, read_tail};

/// Lines returned when `tail` is not given.
const DEFAULT_TAIL: usize = 100;
/// The most lines one call returns.
pub const MAX_TAIL: usize = 5000;

/// Query of `GET /api/v1/apps/{id}/log`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    #[serde(default)]
    pub tail: Option<usize>,
}

/// The answer: the lines, oldest first.
#[derive(Debug, Serialize)]
pub struct LogTail {
    pub app_id: AppId,
    /// The node that read the file.
    pub node: String,
    pub lines: Vec<String>,
    /// The log holds more than these lines.
    pub truncated: bool,
}

/// `GET /api/v1/apps/{id}/log?tail=N` (N from 1 to [`MAX_TAIL`], default 100).
pub async fn apps_log(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<AppId>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<LogTail>, ApiError> {
    let tail = query.tail.unwrap_or(DEFAULT_TAIL);
    if !(1..=MAX_TAIL).contains(&tail) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("tail is the number of lines, 1 to {MAX_TAIL}"),
        ));
    }
    let app = state.dispatcher.store().get_app(id).await?;
    if app.executor != "process" {
        return Err(no_log(format!(
            "app {id} runs on the {} executor, which keeps no log on the console's hosts",
            app.executor
        )));
    }
    let path = match state.logs.locate(id, app.handle.as_ref()) {
        LogPlace::Here(path) => path,
        LogPlace::OtherHost { host } => {
            let node = app.lease.as_ref().map(|lease| lease.node_id.as_str());
            return Err(ApiError::conflict(
                "log_on_other_host",
                format!(
                    "the log of app {id} is on host {host:?}; ask the node that runs it{}",
                    node.map(|n| format!(" ({})", node_address(&state, n)))
                        .unwrap_or_default()
                ),
            ));
        }
        LogPlace::NotHere => return Err(elsewhere(&state, &app).await?),
    };
    let (lines, truncated) = tokio::task::spawn_blocking(move || read_tail(&path, tail))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| no_log(format!("the log of app {id} cannot be read: {error}")))?;
    Ok(Json(LogTail {
        app_id: id,
        node: state.node.id().to_owned(),
        lines,
        truncated,
    }))
}

/// The error for a log this node does not have: which node started the app last, if any.
async fn elsewhere(state: &ApiState, app: &App) -> Result<ApiError, ApiError> {
    let history = state.dispatcher.store().tasks_of_app(app.id, 1, 50).await?;
    let starter = history
        .items
        .iter()
        .filter(|task| matches!(task.action, Action::Start | Action::Restart))
        .find_map(|task| task.claimed_by.clone());
    let id = app.id;
    Ok(match starter {
        None => no_log(format!(
            "app {id} has never been started, so it has no log yet"
        )),
        Some(node) if node == state.node.id() => no_log(format!(
            "app {id} has no log on this node ({node}); it was removed"
        )),
        Some(node) if state.node.peers().get(&node).is_some() => ApiError::conflict(
            "log_on_other_node",
            format!(
                "the log of app {id} is on node {}, which started it; ask that node",
                node_address(state, &node)
            ),
        ),
        Some(node) => no_log(format!(
            "the log of app {id} is on node {node}, which started it and is not live now"
        )),
    })
}

/// `id (http://host:port/...)` for a live node, `id` otherwise.
fn node_address(state: &ApiState, id: &str) -> String {
    match state.node.peers().get(id) {
        Some(info) => format!("{id} at {}", info.base_url()),
        None => id.to_owned(),
    }
}

fn no_log(message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "no_log", message)
}

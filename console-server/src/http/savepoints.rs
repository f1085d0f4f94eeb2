//! `GET /api/v1/apps/{id}/savepoints` (added, issue 13): a `flink` app's savepoints, newest
//! first, as the `flink` executor keeps them under `executors.flink.savepoint_dir`.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::ApiError;
use super::extract::ApiPath;
use crate::executor::flink_job::savepoints::{self, Savepoint};
use task_dispatch::AppId;

/// Where this node's `flink` executor keeps savepoints, if it does.
#[derive(Debug, Clone, Default)]
pub struct SavepointDir(pub Option<PathBuf>);

/// `GET /api/v1/apps/{id}/savepoints`: 200 `[{"location", "kind", "created_at", "job_id"}]`,
/// newest first; an app of another executor, or a node without `savepoint_dir`, has none. 404
/// for an unknown app.
pub async fn apps_savepoints(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<AppId>,
) -> Result<Json<Vec<Savepoint>>, ApiError> {
    let app = state.dispatcher.store().get_app(id).await?;
    let listed = match (&state.savepoint_dir.0, app.executor.as_str()) {
        (Some(dir), "flink") => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || savepoints::list(&dir, id))
                .await
                .map_err(ApiError::internal)?
        }
        _ => Vec::new(),
    };
    Ok(Json(listed))
}

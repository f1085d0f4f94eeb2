//! A `flink` app's savepoints (added, issue 13): `GET /api/v1/apps/{id}/savepoints` lists them,
//! newest first, as the `flink` executor keeps them under `executors.flink.savepoint_dir`;
//! `POST /api/v1/apps/{id}/savepoint` takes one of the running job.

use std::path::PathBuf;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::ApiState;
use super::apps::{Accepted, submit};
use super::error::ApiError;
use super::extract::ApiPath;
use crate::executor::flink_job::savepoints::{self, Savepoint};
use task_dispatch::{Action, AppId};

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

/// `POST /api/v1/apps/{id}/savepoint`: 202 with the queued `savepoint` task, like the other
/// actions (`Idempotency-Key` included). The owner takes a savepoint of the running job, which
/// runs on; it is then listed with `kind` `manual`. 404 for an unknown app; 400
/// `savepoint_unsupported` for an app whose executor takes no savepoints (only `flink` does);
/// 409 `illegal_transition` unless the app is RUNNING (or will be once its queued tasks ran);
/// 400 `invalid_body` for a body other than none or `{}`.
pub async fn apps_savepoint(
    state: State<ApiState>,
    id: ApiPath<AppId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let app = state.dispatcher.store().get_app(id.0).await?;
    if !state.executors.takes_savepoints(&app.executor) {
        return Err(ApiError::bad_request(
            "savepoint_unsupported",
            format!(
                "app {} runs on the {:?} executor, which takes no savepoints; savepoints apply to flink apps",
                app.id, app.executor
            ),
        ));
    }
    submit(state, id, headers, Action::Savepoint, body).await
}

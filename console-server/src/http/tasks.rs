//! `/api/v1/tasks/{id}`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use task_dispatch::{Action, AppId, TaskId, TaskStatus};

use super::ApiState;
use super::error::ApiError;
use super::extract::ApiPath;

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: TaskId,
    pub app_id: AppId,
    pub action: Action,
    pub status: TaskStatus,
    /// The node that claimed it last.
    pub owner: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// `GET /api/v1/tasks/{id}`.
pub async fn tasks_show(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<Json<TaskView>, ApiError> {
    let task = state.dispatcher.store().get_task(id).await?;
    Ok(Json(TaskView {
        id: task.id,
        app_id: task.app_id,
        action: task.action,
        status: task.status,
        owner: task.claimed_by,
        attempts: task.attempts,
        error: task.error,
        created_at: task.created_at,
        updated_at: task.updated_at,
        started_at: task.started_at,
        finished_at: task.finished_at,
    }))
}

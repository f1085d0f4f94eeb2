//! `/api/v1/tasks/{id}`, and an app's task history `/api/v1/apps/{id}/tasks`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use task_dispatch::{Action, AppId, MAX_TASK_PAGE_SIZE, Task, TaskId, TaskStatus};

use super::ApiState;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};

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

impl From<Task> for TaskView {
    fn from(task: Task) -> Self {
        Self {
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
        }
    }
}

/// `GET /api/v1/tasks/{id}`.
pub async fn tasks_show(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<Json<TaskView>, ApiError> {
    let task = state.dispatcher.store().get_task(id).await?;
    Ok(Json(TaskView::from(task)))
}

/// Query of `GET /api/v1/apps/{id}/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPaging {
    #[serde(default = "first_page")]
    pub page: u32,
    #[serde(default = "default_history_size")]
    pub size: u32,
}

fn first_page() -> u32 {
    1
}

fn default_history_size() -> u32 {
    20
}

/// `GET /api/v1/apps/{id}/tasks?page=1&size=20` (added, issue 17): the app's tasks, newest
/// first, `{"items": [task...], "total": n}`; 404 for an unknown app.
pub async fn apps_tasks(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<AppId>,
    ApiQuery(paging): ApiQuery<HistoryPaging>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if paging.page == 0 || paging.size == 0 || paging.size > MAX_TASK_PAGE_SIZE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("page starts at 1 and size is 1 to {MAX_TASK_PAGE_SIZE}"),
        ));
    }
    let store = state.dispatcher.store();
    store.get_app(id).await?;
    let page = store.tasks_of_app(id, paging.page, paging.size).await?;
    let items: Vec<TaskView> = page.items.into_iter().map(TaskView::from).collect();
    Ok(Json(
        serde_json::json!({ "items": items, "total": page.total }),
    ))
}

//! `POST /api/v1/apps/actions` (added, issue 15): one action on many apps in one request, for
//! an operator restarting every job after an upgrade or a scheduler starting hundreds at once.
//!
//! Body `{"action": "start" | "stop" | "restart", "ids": [..]}` (1 to [`MAX_IDS`] ids; an id
//! may repeat). Answer 200 `{"results": [..]}`, one result per id in the order given: `{"id",
//! "status": 202, "task": {..}}` as a single action answers, or `{"id", "status": 404 | 409 |
//! 400 | 503, "error": {"code", "message"}}`. Each id is checked as a single request would be,
//! in order, against the state the earlier ones project; the tasks are queued in transactions
//! of up to 256 ids.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use task_dispatch::{Action, AppId, Submission};

use super::ApiState;
use super::apps::Accepted;
use super::error::ApiError;
use super::extract::ApiJson;

/// The most ids one request may name.
pub const MAX_IDS: usize = 10_000;

/// The body of `POST /api/v1/apps/actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkAction {
    pub action: Action,
    pub ids: Vec<AppId>,
}

/// One id's result.
#[derive(Debug, Serialize)]
pub struct BulkResult {
    pub id: AppId,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Accepted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// The answer of `POST /api/v1/apps/actions`.
#[derive(Debug, Serialize)]
pub struct BulkResults {
    pub results: Vec<BulkResult>,
}

/// `POST /api/v1/apps/actions`.
pub async fn apps_actions(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<BulkAction>,
) -> Result<Json<BulkResults>, ApiError> {
    if body.action == Action::Savepoint {
        return Err(ApiError::bad_request(
            "invalid_body",
            "action must be start, stop or restart; a savepoint is taken per app (POST /api/v1/apps/{id}/savepoint)",
        ));
    }
    if body.ids.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "ids must name at least one app",
        ));
    }
    if body.ids.len() > MAX_IDS {
        return Err(ApiError::bad_request(
            "too_many_ids",
            format!("at most {MAX_IDS} ids per request, got {}", body.ids.len()),
        ));
    }
    let submissions: Vec<Submission> = body
        .ids
        .iter()
        .map(|&app_id| Submission {
            app_id,
            action: body.action,
            idempotency_key: None,
            params: None,
        })
        .collect();
    let answers = state.dispatcher.submit_many(&submissions).await;
    let results = body
        .ids
        .iter()
        .zip(answers)
        .map(|(&id, answer)| match answer {
            Ok(submitted) => BulkResult {
                id,
                status: 202,
                task: Some(Accepted::from(&submitted.task)),
                error: None,
            },
            Err(error) => {
                let error = ApiError::from(error);
                BulkResult {
                    id,
                    status: error.status.as_u16(),
                    task: None,
                    error: Some(serde_json::json!({"code": error.code, "message": error.message})),
                }
            }
        })
        .collect();
    Ok(Json(BulkResults { results }))
}

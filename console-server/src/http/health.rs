//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use crate::metrics::StatusLabels;

/// `GET /healthz`: 200 while the process lives.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once the node is registered, its session is good and it has taken its
/// share of the apps; 503 with the reason otherwise.
pub async fn readyz(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let not_ready = |reason: &str| {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            reason,
        ))
    };
    if !state.node.is_acting() {
        return not_ready("the registry session is lost or suspended; not acting until it is back");
    }
    if state.node.peers().get(state.node.id()).is_none() {
        return not_ready("this node is not (yet) in the registry's live set");
    }
    if !state.dispatcher.is_ready() {
        return not_ready("taking over this node's share of the apps");
    }
    Ok(Json(json!({ "status": "ready", "node": state.node.id() })))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    // Unfinished tasks are counted at scrape time, through the status index.
    match state.dispatcher.store().count_unfinished_tasks().await {
        Ok(counts) => {
            for (status, count) in counts {
                state
                    .metrics
                    .tasks
                    .get_or_create(&StatusLabels {
                        status: status.as_str().to_owned(),
                    })
                    .set(count);
            }
        }
        Err(error) => tracing::warn!(%error, "counting tasks for /metrics failed"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

//! The one error type of the HTTP API: `{"error": {"code", "message"}}` with a status.
//!
//! Crate errors are converted into [`ApiError`] here, once; handlers use `?`. Details of 5xx
//! errors are logged, not sent: the client gets a generic message and the request id.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable code such as `not_found` or `illegal_transition`.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A server-side failure: `error` is logged, the client sees a generic message.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error while serving a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log for this request id",
        )
    }

    /// The JSON body of an error with this status, code and message.
    pub fn body(code: &str, message: &str) -> serde_json::Value {
        json!({ "error": { "code": code, "message": message } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Self::body(self.code, &self.message))).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl From<task_dispatch::Error> for ApiError {
    fn from(error: task_dispatch::Error) -> Self {
        use task_dispatch::Error as E;
        match error {
            E::NotFound { .. } => Self::not_found(error.to_string()),
            E::InvalidInput(_) => Self::bad_request("invalid_input", error.to_string()),
            E::IllegalTransition { .. } => Self::conflict("illegal_transition", error.to_string()),
            E::AppActive { .. } => Self::conflict("app_active", error.to_string()),
            E::MayStillRun { .. } => Self::conflict("app_may_still_run", error.to_string()),
            E::HostUnreachable { .. } => Self::conflict("host_unreachable", error.to_string()),
            E::Conflict(_) => Self::conflict("conflict", error.to_string()),
            E::NotOwner { .. } | E::Fenced { .. } | E::Stopped => {
                Self::unavailable(error.to_string())
            }
            _ if error.is_transient() => {
                tracing::warn!(%error, "database busy or unreachable while serving a request");
                Self::unavailable("the database is busy or unreachable; retry later")
            }
            _ => Self::internal(error),
        }
    }
}

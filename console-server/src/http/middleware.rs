//! Middleware of the HTTP API: bearer-token auth, JSON bodies for every error, panics as 500s.

use std::any::Any;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use registry_api::Secret;
use task_dispatch::unix_millis;

use super::BODY_LIMIT;
use super::error::ApiError;
use crate::node::signing::{NodeKey, SIGNATURE_HEADER};

/// Rejects a request without `Authorization: Bearer <token>` matching `token` (when set).
pub async fn require_bearer(State(token): State<Secret>, request: Request, next: Next) -> Response {
    if token.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this call needs an Authorization: Bearer <token> header",
        )
        .into_response(),
    }
}

/// Rejects a node-to-node call (`/internal/*`) whose signature does not prove the cluster's key
/// (see `node/signing.rs`). The user's bearer token does not open these routes.
pub async fn require_signature(
    State(key): State<NodeKey>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
        .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |path| path.as_str());
    let header = parts
        .headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    match key.verify(header, parts.method.as_str(), path, &body, unix_millis()) {
        Ok(sender) => {
            tracing::trace!(sender, path, "signed node-to-node call");
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
        Err(refused) => {
            tracing::debug!(path, %refused, "unsigned or badly signed node-to-node call refused");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                refused.to_string(),
            )
            .into_response()
        }
    }
}

/// Compares without an early exit, so response timing does not reveal a token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Gives every error answer the API's JSON shape, including those made by layers and the router
/// (unknown route 404, wrong method 405, body limit 413, timeout 503) that answer in plain text.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
            ("timeout", "the request took too long")
        }
        _ if status.is_client_error() => ("bad_request", "the request was rejected"),
        _ => (
            "internal",
            "internal error; see the server log for this request id",
        ),
    };
    let mut json = ApiError::new(status, code, message).into_response();
    for name in [
        header::ALLOW,
        header::RETRY_AFTER,
        header::HeaderName::from_static("x-request-id"),
    ] {
        if let Some(value) = response.headers().get(&name) {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}

/// The answer to a panicking handler: a JSON 500; the panic message goes to the log only.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = detail, "a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server log for this request id",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}

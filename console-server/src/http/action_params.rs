//! The optional JSON body of `POST /api/v1/apps/{id}/start`, `/stop` and `/restart` (added,
//! issue 13): what the request asks beyond the action, stored with the task and given to the
//! executor. `stop` takes `{"savepoint": false}` (cancel without a savepoint); `start` and
//! `restart` take `{"restore": "none" | "<savepoint location>"}`. Both apply to `flink` apps
//! only. No body, or `{}`, asks nothing.

use axum::body::Bytes;
use serde_json::Value;
use task_dispatch::{Action, AppId};

use super::ApiState;
use super::error::ApiError;

/// The parameters of `action` on app `id` from `body`, checked.
///
/// # Notable errors
/// 400 `invalid_body` naming the key (unknown for this action, wrong type, an app of another
/// executor), `malformed_json`; 404 when the app does not exist and a body was given.
pub async fn params_of(
    state: &ApiState,
    id: AppId,
    action: Action,
    body: &Bytes,
) -> Result<Option<Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request("malformed_json", error.to_string()))?;
    let Value::Object(fields) = &value else {
        return Err(invalid("the body must be a JSON object"));
    };
    if fields.is_empty() {
        return Ok(None);
    }
    for (key, field) in fields {
        match (action, key.as_str()) {
            (Action::Stop, "savepoint") if field.is_boolean() => {}
            (Action::Stop, "savepoint") => return Err(invalid("savepoint must be true or false")),
            (Action::Start | Action::Restart, "restore") => match field.as_str() {
                Some(location)
                    if !location.is_empty()
                        && location.len() <= 4096
                        && !location.chars().any(char::is_control) => {}
                _ => {
                    return Err(invalid(
                        "restore must be \"none\" or a savepoint location (1 to 4096 characters)",
                    ));
                }
            },
            (_, other) => {
                return Err(invalid(format!(
                    "unknown field {other:?} for {action} (stop takes \"savepoint\", start and restart take \"restore\", savepoint takes none)"
                )));
            }
        }
    }
    let app = state.dispatcher.store().get_app(id).await?;
    if app.executor != "flink" {
        return Err(invalid(format!(
            "savepoint and restore apply to flink apps; app {id} runs on {:?}",
            app.executor
        )));
    }
    Ok(Some(value))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_body", message)
}

//! `/api/v1/apps`: create, list, show, delete, and queue start/stop/restart (the savepoint
//! action is in [`super::savepoints`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use task_dispatch::{
    Action, App, AppFilter, AppId, AppState, MAX_APP_WEIGHT, NewApp, Submission, Task,
};

use super::ApiState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};

/// The executor used when a new app names none.
const DEFAULT_EXECUTOR: &str = "process";
/// The largest page `GET /api/v1/apps` returns.
const MAX_PAGE_SIZE: u32 = 500;

/// The body of `POST /api/v1/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: String,
    #[serde(default)]
    pub executor: Option<String>,
    pub spec: Value,
    /// What the app reserves of its owner (issue 16): 1 to 1,000,000. Default 1, or a `flink`
    /// app's `spec.parallelism`.
    #[serde(default)]
    pub weight: Option<u32>,
}

/// An app as the API shows it.
#[derive(Debug, Serialize)]
pub struct AppView {
    pub id: AppId,
    pub name: String,
    pub executor: String,
    pub spec: Value,
    pub state: AppState,
    /// The node that owns the app now, in the answering node's view of the cluster.
    pub owner: Option<String>,
    /// Where the app may run: the host its copy may be running on, and why it has no owner
    /// when `owner` is null.
    pub placement: PlacementView,
    /// The node that has taken the app over (holds its lease): the owner once it has adopted
    /// the app, the previous owner while it hands over.
    pub adopted_by: Option<String>,
    pub last_error: Option<String>,
    /// The executor's record of the running app (pid and start time for `process`).
    pub handle: Option<Value>,
    pub version: i64,
    /// What the app reserves of its owner's capacity (issue 16).
    pub weight: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The `placement` of an app.
#[derive(Debug, Serialize)]
pub struct PlacementView {
    /// The host a copy of the app may be running on (a started `process` app): only console
    /// nodes on that host may own it. Null: any node may.
    pub host: Option<String>,
    /// Why the app has no owner; null when it has one.
    pub unowned: Option<String>,
}

impl AppView {
    /// The app as the API shows it, with its owner in this node's view of the cluster.
    pub fn new(state: &ApiState, app: App) -> Self {
        let owner = state.dispatcher.owner(&app);
        Self {
            placement: PlacementView {
                host: app.host.as_ref().map(ToString::to_string),
                unowned: owner.as_ref().err().map(ToString::to_string),
            },
            owner: owner.ok(),
            adopted_by: app.lease.map(|lease| lease.node_id),
            id: app.id,
            name: app.name,
            executor: app.executor,
            spec: app.spec,
            state: app.state,
            last_error: app.last_error,
            handle: app.handle,
            version: app.version,
            weight: app.weight,
            created_at: app.created_at,
            updated_at: app.updated_at,
        }
    }
}

/// `POST /api/v1/apps`: 201 with the app.
pub async fn apps_create(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<CreateApp>,
) -> Result<impl IntoResponse, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name must have 1 to 255 characters",
        ));
    }
    // A NUL cannot be passed to a process (the app could never start) and other control
    // characters garble logs and terminals that show the name.
    if let Some(control) = name.chars().find(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "name must not contain control characters, found U+{:04X}",
                u32::from(control)
            ),
        ));
    }
    let executor = body.executor.as_deref().unwrap_or(DEFAULT_EXECUTOR);
    state
        .executors
        .validate(executor, &body.spec)
        .map_err(|message| ApiError::bad_request("invalid_spec", message))?;
    let weight = match body.weight {
        Some(weight) => weight,
        // A Flink job's slots are its load.
        None if executor == "flink" => body
            .spec
            .get("parallelism")
            .and_then(Value::as_u64)
            .and_then(|parallelism| u32::try_from(parallelism).ok())
            .unwrap_or(1)
            .clamp(1, MAX_APP_WEIGHT),
        None => 1,
    };
    check_weight(weight)?;
    let app = state
        .dispatcher
        .store()
        .create_app(NewApp {
            name: name.to_owned(),
            executor: executor.to_owned(),
            spec: body.spec,
            weight,
        })
        .await?;
    let location = format!("/api/v1/apps/{}", app.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(AppView::new(&state, app)),
    ))
}

/// Query of `GET /api/v1/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    #[serde(default = "first_page")]
    pub page: u32,
    #[serde(default = "default_size")]
    pub size: u32,
    /// Added (issue 17): keep apps in these states, comma-separated (`RUNNING,FAILED`).
    #[serde(default)]
    pub state: Option<String>,
    /// Added (issue 17): keep apps whose name contains this text (ASCII case ignored).
    #[serde(default)]
    pub name: Option<String>,
}

impl Paging {
    fn filter(&self) -> Result<AppFilter, ApiError> {
        let states = match self.state.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|name| {
                    name.trim().to_ascii_uppercase().parse().map_err(|_| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!(
                                "unknown state {:?}; states are CREATED, STARTING, RUNNING, STOPPING, STOPPED, FAILED",
                                name.trim()
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(AppFilter {
            states,
            name_contains: self.name.clone(),
        })
    }
}

fn first_page() -> u32 {
    1
}

fn default_size() -> u32 {
    50
}

/// `GET /api/v1/apps?page=1&size=50[&state=RUNNING,FAILED][&name=text]`:
/// `{"items": [...], "total": n}`, `total` counting the apps the filters keep.
pub async fn apps_index(
    State(state): State<ApiState>,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<Value>, ApiError> {
    if paging.page == 0 || paging.size == 0 || paging.size > MAX_PAGE_SIZE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("page starts at 1 and size is 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    let filter = paging.filter()?;
    let page = state
        .dispatcher
        .store()
        .list_apps_where(&filter, paging.page, paging.size)
        .await?;
    let items: Vec<AppView> = page
        .items
        .into_iter()
        .map(|app| AppView::new(&state, app))
        .collect();
    Ok(Json(
        serde_json::json!({ "items": items, "total": page.total }),
    ))
}

/// `GET /api/v1/apps/{id}`.
pub async fn apps_show(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<AppId>,
) -> Result<Json<AppView>, ApiError> {
    let app = state.dispatcher.store().get_app(id).await?;
    Ok(Json(AppView::new(&state, app)))
}

/// The body of `PUT /api/v1/apps/{id}/weight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetWeight {
    pub weight: u32,
}

/// `PUT /api/v1/apps/{id}/weight` (issue 16): 200 with the app; 400 `invalid_weight`; 404; 409
/// while the app is active or has unfinished tasks.
pub async fn apps_set_weight(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<AppId>,
    ApiJson(body): ApiJson<SetWeight>,
) -> Result<Json<AppView>, ApiError> {
    check_weight(body.weight)?;
    let app = state
        .dispatcher
        .store()
        .set_app_weight(id, body.weight)
        .await?;
    Ok(Json(AppView::new(&state, app)))
}

fn check_weight(weight: u32) -> Result<(), ApiError> {
    if (1..=MAX_APP_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_weight",
            format!("weight must be 1 to {MAX_APP_WEIGHT}, got {weight}"),
        ))
    }
}

/// `DELETE /api/v1/apps/{id}`: 204; 409 while the app is active, has unfinished tasks, or may
/// still run on its host.
pub async fn apps_delete(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<AppId>,
) -> Result<StatusCode, ApiError> {
    state.dispatcher.store().delete_app(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to an action: the queued task.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub task_id: i64,
    pub app_id: AppId,
    pub action: Action,
    pub status: task_dispatch::TaskStatus,
}

impl From<&Task> for Accepted {
    fn from(task: &Task) -> Self {
        Self {
            task_id: task.id,
            app_id: task.app_id,
            action: task.action,
            status: task.status,
        }
    }
}

/// `POST /api/v1/apps/{id}/start`.
pub async fn apps_start(
    state: State<ApiState>,
    id: ApiPath<AppId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    submit(state, id, headers, Action::Start, body).await
}

/// `POST /api/v1/apps/{id}/stop`.
pub async fn apps_stop(
    state: State<ApiState>,
    id: ApiPath<AppId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    submit(state, id, headers, Action::Stop, body).await
}

/// `POST /api/v1/apps/{id}/restart`.
pub async fn apps_restart(
    state: State<ApiState>,
    id: ApiPath<AppId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    submit(state, id, headers, Action::Restart, body).await
}

/// Queues `action`: 202 with the task at once; the owner runs it. A repeated
/// `Idempotency-Key` answers with the first task. The optional body: see
/// [`super::action_params`].
pub(super) async fn submit(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<AppId>,
    headers: HeaderMap,
    action: Action,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be visible ASCII",
            )
        })?),
    };
    let params = super::action_params::params_of(&state, id, action, &body).await?;
    let submitted = state
        .dispatcher
        .submit_with(Submission {
            app_id: id,
            action,
            idempotency_key: key.map(str::to_owned),
            params,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted::from(&submitted.task))))
}

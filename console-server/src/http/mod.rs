//! The HTTP API of DESIGN.md ("HTTP API"). Every node answers every call.
//!
//! | route | handler |
//! |---|---|
//! | `GET /healthz` | [`health::healthz`] |
//! | `GET /readyz` | [`health::readyz`] |
//! | `GET /metrics` | [`health::metrics`] |
//! | `GET /api/v1/cluster/nodes` | [`cluster::nodes_index`] |
//! | `POST /api/v1/apps`, `GET /api/v1/apps?page=&size=` | [`apps::apps_create`], [`apps::apps_index`] |
//! | `GET`, `DELETE /api/v1/apps/{id}` | [`apps::apps_show`], [`apps::apps_delete`] |
//! | `POST /api/v1/apps/{id}/start`, `/stop`, `/restart` | [`apps::apps_start`], ... |
//! | `POST /api/v1/apps/actions` (one action, many apps) | [`bulk::apps_actions`] |
//! | `GET /api/v1/apps/{id}/savepoints` | [`savepoints::apps_savepoints`] |
//! | `POST /api/v1/apps/{id}/savepoint` | [`savepoints::apps_savepoint`] |
//! | `GET /api/v1/tasks/{id}` | [`tasks::tasks_show`] |
//! | `POST /internal/v1/wake` | [`cluster::wake`] (node to node) |
//! | `POST /internal/v1/left` | [`cluster::left`] (node to node) |
//! | the web console's page and calls (issue 17) | listed in [`web`] |
//!
//! With `server.auth_token` set, `/api` calls need `Authorization: Bearer`. `/internal` calls
//! (node to node) need a signature made with the cluster's key (`node/signing.rs`), whatever the
//! user token: a user token never opens them.
//! Every error is `{"error": {"code", "message"}}` (see [`error::ApiError`]).

pub mod action_params;
pub mod apps;
pub mod bulk;
pub mod cluster;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod listener;
pub mod logs;
pub mod middleware;
pub mod savepoints;
pub mod summary;
pub mod tasks;
pub mod ui;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post, put};
use registry_api::{LeaderRetrieval, Secret};
use task_dispatch::Dispatcher;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::actions::Executors;
use crate::executor::AppLogs;
use crate::metrics::{Metrics, RequestLabels};
use crate::node::ClusterNode;
use crate::node::signing::NodeKey;
use crate::node::wake::{LEFT_ROUTE, WAKE_ROUTE};

/// The largest request body accepted (an app spec is small).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub dispatcher: Dispatcher,
    pub node: Arc<ClusterNode>,
    pub executors: Executors,
    pub metrics: Arc<Metrics>,
    /// Who leads the cluster, from the registry.
    pub leader: Arc<LeaderRetrieval>,
    /// `registry.type`, for `GET /api/v1/cluster`.
    pub registry_kind: Arc<str>,
    /// The streams of `GET /api/v1/events`.
    pub events: events::EventHub,
    /// Where this node finds `process` apps' logs.
    pub logs: AppLogs,
    /// Checks the signatures of node-to-node calls.
    pub node_key: NodeKey,
    /// Where `flink` apps' savepoints are (`executors.flink.savepoint_dir`).
    pub savepoint_dir: savepoints::SavepointDir,
    /// `server.request_timeout_ms`: how long a request other than an action may take before
    /// it is answered 503.
    pub request_timeout: Duration,
}

/// The whole API as a router; tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: ApiState, auth_token: Secret) -> Router {
    let bearer = from_fn_with_state(auth_token, middleware::require_bearer);
    let api = Router::new()
        .route("/api/v1/cluster/nodes", get(cluster::nodes_index))
        .route(
            "/api/v1/apps",
            post(apps::apps_create).get(apps::apps_index),
        )
        .route(
            "/api/v1/apps/{id}",
            get(apps::apps_show).delete(apps::apps_delete),
        )
        .route(
            "/api/v1/apps/{id}/savepoints",
            get(savepoints::apps_savepoints),
        )
        .route("/api/v1/apps/{id}/weight", put(apps::apps_set_weight))
        .route("/api/v1/tasks/{id}", get(tasks::tasks_show))
        .merge(web::api_routes())
        .route_layer(bearer.clone());
    // The actions queue tasks. Once a task may be inserted the answer must say which, so these
    // are not cut by the request timeout (a 503 after the insert would hide a queued task:
    // issue 12, finding 16); the database pool's acquire timeout bounds their wait instead.
    let actions = Router::new()
        .route("/api/v1/apps/actions", post(bulk::apps_actions))
        .route("/api/v1/apps/{id}/start", post(apps::apps_start))
        .route("/api/v1/apps/{id}/stop", post(apps::apps_stop))
        .route("/api/v1/apps/{id}/restart", post(apps::apps_restart))
        .route(
            "/api/v1/apps/{id}/savepoint",
            post(savepoints::apps_savepoint),
        )
        .route_layer(bearer);
    // Node to node: signed with the cluster's key, never opened by a user's token.
    let internal = Router::new()
        .route(WAKE_ROUTE, post(cluster::wake))
        .route(LEFT_ROUTE, post(cluster::left))
        .route_layer(from_fn_with_state(
            state.node_key.clone(),
            middleware::require_signature,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .merge(internal)
        .merge(web::ui_routes())
        // Applies to the routes above only: `Router::layer` wraps what is already there.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.request_timeout,
        ))
        .merge(actions)
        .layer(from_fn_with_state(state.metrics.clone(), count_request))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                // 5xx answers are logged where they arise (ApiError::internal, the panic
                // handler); a 503 from /readyz during an outage is not an error of the server.
                .layer(
                    TraceLayer::new_for_http()
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(from_fn(middleware::json_errors))
                .layer(CatchPanicLayer::custom(middleware::panic_response))
                .layer(RequestBodyLimitLayer::new(BODY_LIMIT)),
        )
        .with_state(state)
}

/// Counts every answer by method, route pattern and status.
async fn count_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The `method` label of a request: the standard methods by name, any other one as `other`.
/// Clients choose the method token freely; a label per token would let anyone grow the metrics
/// (and the memory that holds them) without bound.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

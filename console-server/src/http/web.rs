//! The routes the web console added (issue 17), kept apart from the original API's list so
//! that `mod.rs` only merges them.
//!
//! | route | handler |
//! |---|---|
//! | `GET /api/v1/cluster` | [`summary::cluster_show`] |
//! | `GET /api/v1/events` | [`events::events_stream`] (server-sent events) |
//! | `GET /api/v1/apps/{id}/log?tail=N` | [`logs::apps_log`] |
//! | `GET /api/v1/apps/{id}/tasks?page=&size=` | [`tasks::apps_tasks`] |
//! | `GET /`, `GET /ui/{file}` | [`ui::index`], [`ui::asset`]: the page, without auth |

use axum::Router;
use axum::routing::get;

use super::{ApiState, events, logs, summary, tasks, ui};

/// The API routes of the web console; they go behind the bearer check like the rest of `/api`.
pub fn api_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/cluster", get(summary::cluster_show))
        .route("/api/v1/events", get(events::events_stream))
        .route("/api/v1/apps/{id}/log", get(logs::apps_log))
        .route("/api/v1/apps/{id}/tasks", get(tasks::apps_tasks))
}

/// The page and its assets. Public: they hold no data; every call they make needs the token.
pub fn ui_routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{*file}", get(ui::asset))
}

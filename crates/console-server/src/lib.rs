//! The clustered console as a library: `main.rs` parses the command line and calls [`run`];
//! tests build the same pieces directly.

pub mod config;
pub mod executor;
pub mod http;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use registry_api::Registry;

use crate::config::ConsoleConfig;

/// Runs one node until SIGTERM or SIGINT.
pub async fn run(config: ConsoleConfig) -> Result<(), String> {
    let registry: Arc<dyn Registry> = registry_all::connect(&config.registry)
        .await
        .map_err(|error| {
            format!(
                "cannot connect the {} registry: {error}",
                config.registry.kind
            )
        })?
        .into();
    let addr = SocketAddr::new(
        config
            .server
            .host
            .parse()
            .map_err(|error| format!("server.host {:?}: {error}", config.server.host))?,
        config.server.port,
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    let bound = listener.local_addr().map_err(|error| error.to_string())?;
    tracing::info!(node = %config.node_id(bound.port()), %bound, registry = registry.backend(), "console-server listening");
    let app = Router::new().route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|error| error.to_string())?;
    registry.close().await.map_err(|error| error.to_string())?;
    tracing::info!("console-server stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

//! The HTTP listener (issue 12, finding 10): axum's router served over HTTP/1.1 with the bounds a
//! slow or hostile client must not get past.
//!
//! - **Header-read timeout.** A connection must deliver a request's headers within
//!   `server.header_read_timeout_ms` of starting to wait for them, or it is closed. Hyper arms
//!   the same timer while a keep-alive connection waits for its next request, so it is also the
//!   idle timeout. It never applies while a response is being sent: an open
//!   `GET /api/v1/events` stream is not cut.
//! - **Connection cap.** At most `server.max_connections` connections are open at once; further
//!   clients wait in the kernel's accept queue (no file descriptor spent on them) until one
//!   closes. At start-up the open-files limit is raised to its hard limit and the cap is
//!   lowered, with a warning, if it would not leave [`RESERVED_FDS`] descriptors for the node's
//!   own registry, database and app connections.
//!
//! Graceful shutdown: when `shutdown` completes, no connection is accepted any more, idle
//! connections close, and requests in flight finish; [`serve`] returns when every connection
//! has closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// File descriptors kept free of client connections: the registry and database pools, peers,
/// app logs and child processes.
pub const RESERVED_FDS: u64 = 256;

/// How long the accept loop backs off after the process ran out of descriptors (EMFILE) or
/// another accept error, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then drains the
/// open connections (see the module documentation).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // The slot first: over the cap, clients wait in the accept queue, costing no descriptor.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // Never closed; should it be, nothing more can be served.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; retrying in {ACCEPT_BACKOFF:?}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|request: hyper::Request<Incoming>| request.map(Body::new)),
        );
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Timeouts and clients that go away mid-request end here.
                tracing::debug!(%error, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Raises this process's soft open-files limit to the hard limit and returns the connection
/// cap that leaves [`RESERVED_FDS`] descriptors free: `wanted`, or less (with a warning naming
/// `server.max_connections`) when the limit is too low.
pub fn connection_cap(wanted: usize) -> usize {
    let limit = raise_open_files_limit();
    let fits = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if wanted > fits {
        let cap = fits.max(1);
        tracing::warn!(
            open_files_limit = limit,
            wanted,
            cap,
            "server.max_connections is more than the open-files limit allows with {RESERVED_FDS} descriptors kept for the node itself; serving at most {cap} connections"
        );
        return cap;
    }
    wanted
}

/// The soft `RLIMIT_NOFILE` after raising it to the hard limit (unchanged if that fails).
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    limit.rlim_cur
}

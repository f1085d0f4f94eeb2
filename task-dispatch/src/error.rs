//! The crate's one error type.

use sqlx::mysql::MySqlDatabaseError;

use crate::affinity::HostId;
use crate::state::{Action, AppState, IllegalTransition};

/// What a lookup did not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// An app.
    App,
    /// A task.
    Task,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::App => "app",
            Self::Task => "task",
        })
    }
}

/// Errors of the store and the dispatcher.
///
/// The HTTP layer maps them once: [`Error::NotFound`] → 404; [`Error::InvalidInput`] → 400;
/// [`Error::IllegalTransition`], [`Error::AppActive`], [`Error::MayStillRun`],
/// [`Error::HostUnreachable`], [`Error::Conflict`] → 409;
/// [`Error::NotOwner`], [`Error::Fenced`] (owner-side only), [`Error::Stopped`] → 503; the
/// rest → 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No app or task with this id.
    #[error("{entity} {id} not found")]
    NotFound {
        /// App or task.
        entity: Entity,
        /// The id looked up.
        id: i64,
    },
    /// The action is not allowed in the app's state (or the state it will be in once its queued
    /// tasks have run).
    #[error("cannot {action} an app that is {from}")]
    IllegalTransition {
        /// The state checked against.
        from: AppState,
        /// The refused action.
        action: Action,
    },
    /// The app cannot be deleted while it is active or has unfinished tasks.
    #[error("app {id} is {state}{}: stop it and let its tasks finish before deleting it",
        if *.unfinished_tasks { " with unfinished tasks" } else { "" })]
    AppActive {
        /// The app.
        id: i64,
        /// Its state.
        state: AppState,
        /// Whether it still has PENDING or RUNNING tasks.
        unfinished_tasks: bool,
    },
    /// A copy of the app may still be running on `host` (it was started there and has not been
    /// seen gone): deleting the app would leave that copy running with nobody to stop it.
    #[error(
        "app {id} may still be running on host {host}, where it was started: stop it (a console \
         node on that host runs the stop) before deleting it"
    )]
    MayStillRun {
        /// The app.
        id: i64,
        /// Its host.
        host: HostId,
    },
    /// A start of the app was refused: a copy may still be running on `host`, and no live node
    /// runs there, so nobody could find that copy before starting another.
    #[error(
        "app {id} may still be running on host {host}, where no console node is live: a start \
         now could run a second copy; start a console node on that host (it adopts the app), \
         then try again"
    )]
    HostUnreachable {
        /// The app.
        id: i64,
        /// Its host.
        host: HostId,
    },
    /// A concurrent writer won: the row changed since it was read (or an idempotency key was
    /// reused for a different request).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request is malformed (empty name, bad page size, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// This node's session epoch is no longer current: it lost its session (or was declared
    /// dead) and its writes are refused until it registers again.
    #[error("node {node} epoch {epoch} is fenced: a newer session or another node took over")]
    Fenced {
        /// The node id.
        node: String,
        /// The stale epoch.
        epoch: i64,
    },
    /// The app is owned by another node (or the lease is still held by its previous owner).
    #[error("app {app_id} is not owned by this node{}", .holder.as_deref().map(|h| format!(" (held by {h})")).unwrap_or_default())]
    NotOwner {
        /// The app.
        app_id: i64,
        /// The node holding its lease, if any.
        holder: Option<String>,
    },
    /// The dispatcher has stopped (shut down, or every handle dropped): nothing more is
    /// queued through it.
    #[error("the dispatcher has stopped")]
    Stopped,
    /// The database URL is not `mysql://...` or `sqlite:...`.
    #[error(
        "unsupported database URL {0:?}: expected mysql://user:pass@host:port/db or sqlite://path"
    )]
    UnsupportedUrl(String),
    /// A stored value could not be read back (an unknown state name, broken JSON).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Applying the embedded migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Creating the SQLite file's directory failed.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<IllegalTransition> for Error {
    fn from(e: IllegalTransition) -> Self {
        Self::IllegalTransition {
            from: e.from,
            action: e.action,
        }
    }
}

impl Error {
    /// Whether the caller may retry the same call and expect it to succeed: a lost race, a
    /// connection or pool timeout, a deadlock or lock timeout (MySQL), a busy database
    /// (SQLite). Refusals, bad input and a closed store are not transient.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Conflict(_) => true,
            Self::Database(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>() {
                    // By error number: 1205 lock wait timeout, 1213 deadlock (both roll back).
                    Some(mysql) => matches!(mysql.number(), 1205 | 1213),
                    // SQLite reports BUSY (5, 261, 517) and LOCKED (6, 262) by result code.
                    None => matches!(
                        db.code().as_deref(),
                        Some("5" | "6" | "261" | "262" | "517")
                    ),
                },
                _ => false,
            },
            _ => false,
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Error>();
};

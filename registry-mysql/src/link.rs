//! The client's one database connection, shared by its calls and its heartbeat.
//!
//! A client holds exactly one connection, like a ZooKeeper session holds one TCP connection: the
//! server sees one `CONNECTION_ID()` per client (recorded in the client's row by every
//! heartbeat), idle load stays at one heartbeat and one poll per interval, and "the connection
//! is lost" has one meaning. Calls take turns on it.
//!
//! A call that fails in a way that leaves the connection in an unknown state (I/O error,
//! timeout, cancellation half-way) throws the connection away; the next user opens a new one.

use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::OpError;

/// The connection slot of one client.
pub(crate) struct Link {
    options: MySqlConnectOptions,
    slot: Mutex<Option<MySqlConnection>>,
}

/// Exclusive use of the connection. Unless [`Held::settle`] judges the outcome harmless, the
/// connection is dropped with the guard, so a cancelled call never leaves a half-finished
/// transaction on a connection that someone else uses next.
pub(crate) struct Held<'a> {
    slot: MutexGuard<'a, Option<MySqlConnection>>,
    keep: bool,
}

impl Link {
    pub(crate) fn new(options: MySqlConnectOptions) -> Self {
        Self {
            options,
            slot: Mutex::new(None),
        }
    }

    /// Waits for the connection, opening a new one when there is none, for at most `within`.
    ///
    /// # Notable errors
    /// [`OpError::Busy`] when other calls kept it, [`OpError::TimedOut`] or [`OpError::Sql`]
    /// when a new connection could not be opened.
    pub(crate) async fn acquire(&self, within: Duration) -> Result<Held<'_>, OpError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut slot = tokio::time::timeout_at(deadline, self.slot.lock())
            .await
            .map_err(|_| OpError::Busy)?;
        if slot.is_none() {
            let conn = tokio::time::timeout_at(deadline, self.options.connect())
                .await
                .map_err(|_| OpError::TimedOut)??;
            *slot = Some(conn);
        }
        Ok(Held { slot, keep: false })
    }

    /// Closes the connection politely, if there is one.
    pub(crate) async fn disconnect(&self, within: Duration) {
        let conn = self.slot.lock().await.take();
        if let Some(conn) = conn {
            let _ = tokio::time::timeout(within, sqlx::Connection::close(conn)).await;
        }
    }
}

impl Held<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> Result<&mut MySqlConnection, OpError> {
        self.slot.as_mut().ok_or(OpError::TimedOut)
    }

    /// Keeps the connection unless `outcome` says it is broken or in an unknown state.
    pub(crate) fn settle<T>(&mut self, outcome: &Result<T, OpError>) {
        self.keep = match outcome {
            Ok(_) => true,
            Err(error) => !error.costs_connection(),
        };
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.keep && self.slot.take().is_some() {
            tracing::debug!(
                "dropping the registry's database connection after a failed or cancelled call"
            );
        }
    }
}

/// Runs `$body` (an expression using the connection `$conn`) on `$link` with exclusive use of the
/// connection, within `$within` for waiting and again for running. Evaluates to
/// `Result<T, OpError>`.
macro_rules! on_link {
    ($link:expr, $within:expr, |$conn:ident| $body:expr) => {{
        let within: ::std::time::Duration = $within;
        match $link.acquire(within).await {
            Ok(mut held) => {
                let outcome = match held.conn() {
                    Ok($conn) => match ::tokio::time::timeout(within, $body).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err($crate::error::OpError::TimedOut),
                    },
                    Err(error) => Err(error),
                };
                held.settle(&outcome);
                outcome
            }
            Err(error) => Err(error),
        }
    }};
}
pub(crate) use on_link;

//! A database connection of the client: one for its calls (and the poll), one for its
//! heartbeats.
//!
//! Heartbeats have a connection of their own so that nothing a call waits for (a row lock held
//! by a stalled peer, a slow statement) can delay them: a client keeps its session as long as it
//! and the database are alive (issue 12, finding 4). Calls take turns on the other one, whose
//! `CONNECTION_ID()` is recorded in the client's row, so that a peer that finds the session
//! expired can `KILL` that connection (and with it any transaction it left open) before purging.
//!
//! Every new connection is told its limits first ([`SessionLimits`]): a row lock is waited for
//! at most a second, and on MariaDB a heartbeat statement runs no longer than the heartbeat
//! timeout and a transaction left idle (by a stopped client) is rolled back by the server itself.
//!
//! A call that fails in a way that leaves the connection in an unknown state (I/O error,
//! timeout, cancellation half-way) throws the connection away; the next user opens a new one.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{OpError, is_unknown_variable};

/// What a new connection is told before its first use.
#[derive(Debug, Clone)]
pub(crate) struct SessionLimits {
    /// `innodb_lock_wait_timeout`, whole seconds (at least 1, the server's minimum).
    pub lock_wait_secs: u64,
    /// MariaDB's `max_statement_time` (fractional seconds); `None`: the server's default (off).
    pub statement_secs: Option<f64>,
    /// MariaDB's `idle_transaction_timeout`, whole seconds; `None`: the server's default (off).
    pub idle_transaction_secs: Option<u64>,
}

impl SessionLimits {
    /// The statements that apply the limits: the first must succeed; the second names
    /// MariaDB-only variables, and MySQL's "unknown system variable" is ignored.
    fn statements(&self) -> (String, Option<String>) {
        // The fence checks of the task store and the locking reads here assume REPEATABLE
        // READ; a server configured otherwise must not change what they mean.
        let common = format!(
            "SET SESSION innodb_lock_wait_timeout = {}; \
             SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            self.lock_wait_secs.max(1)
        );
        let mut mariadb = Vec::new();
        if let Some(secs) = self.statement_secs {
            mariadb.push(format!("SESSION max_statement_time = {secs:.3}"));
        }
        if let Some(secs) = self.idle_transaction_secs {
            mariadb.push(format!(
                "SESSION idle_transaction_timeout = {}",
                secs.max(1)
            ));
        }
        let mariadb = (!mariadb.is_empty()).then(|| format!("SET {}", mariadb.join(", ")));
        (common, mariadb)
    }
}

/// The connection slot of one client.
pub(crate) struct Link {
    options: MySqlConnectOptions,
    limits: SessionLimits,
    /// Where to record a new connection's id: the `clients` table and the client's row id
    /// (0: no session yet). Only the call link records.
    record: Option<(String, AtomicI64)>,
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
    /// The heartbeat link: limits only.
    pub(crate) fn heartbeats(options: MySqlConnectOptions, limits: SessionLimits) -> Self {
        Self {
            options,
            limits,
            record: None,
            slot: Mutex::new(None),
        }
    }

    /// The call link: limits, and every new connection's id recorded in `clients_table` for
    /// the client's current row (see [`Link::record_for`]).
    pub(crate) fn calls(
        options: MySqlConnectOptions,
        limits: SessionLimits,
        clients_table: &str,
    ) -> Self {
        Self {
            options,
            limits,
            record: Some((clients_table.to_owned(), AtomicI64::new(0))),
            slot: Mutex::new(None),
        }
    }

    /// From now on a new connection records its id in client row `id` (a new session's row,
    /// which registered with the id of the connection it was inserted on).
    pub(crate) fn record_for(&self, id: i64) {
        if let Some((_, client)) = &self.record {
            client.store(id, Ordering::Relaxed);
        }
    }

    async fn open(&self) -> Result<MySqlConnection, OpError> {
        let mut conn = self.options.connect().await?;
        let (common, mariadb) = self.limits.statements();
        sqlx::raw_sql(AssertSqlSafe(common))
            .execute(&mut conn)
            .await?;
        if let Some(mariadb) = mariadb
            && let Err(error) = sqlx::raw_sql(AssertSqlSafe(mariadb))
                .execute(&mut conn)
                .await
        {
            // MySQL has neither variable.
            if !is_unknown_variable(&error) {
                return Err(error.into());
            }
            tracing::debug!(%error, "the database has no MariaDB session limits; using lock waits only");
        }
        if let Some((table, client)) = &self.record {
            let id = client.load(Ordering::Relaxed);
            if id > 0 {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET connection_id = CONNECTION_ID() WHERE id = ?"
                )))
                .bind(id)
                .execute(&mut conn)
                .await?;
            }
        }
        Ok(conn)
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
            let conn = tokio::time::timeout_at(deadline, self.open())
                .await
                .map_err(|_| OpError::TimedOut)??;
            *slot = Some(conn);
        }
        let mut held = Held { slot, keep: false };
        let prepared = tokio::time::timeout_at(deadline, async {
            crate::failpoint::before_call(held.conn()?).await
        })
        .await
        .map_err(|_| OpError::TimedOut)
        .and_then(|outcome| outcome);
        held.settle(&prepared);
        prepared?;
        // Until the caller settles the outcome of its own statements, a drop (a cancelled
        // call) must throw the connection away: it may hold an unread answer or an open
        // transaction, which the next user would read or extend.
        held.keep = false;
        Ok(held)
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

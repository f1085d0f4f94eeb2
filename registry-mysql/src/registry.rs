//! [`MysqlRegistry`]: the [`Registry`] implementation.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use registry_api::{
    ConnectionListener, ConnectionState, LockGuard, Mode, Registry, RegistryError, Result,
    Subscription, path,
};
use sqlx::mysql::MySqlConnectOptions;
use tokio::sync::{OwnedMutexGuard, watch};
use tokio::task::JoinHandle;

use crate::config::MysqlConfig;
use crate::error::{BACKEND, MAX_ATTEMPTS};
use crate::link::on_link;
use crate::lock;
use crate::schema::Tables;
use crate::session;
use crate::state::Shared;
use crate::store::{self, Purge};
use crate::timing::Timing;

/// A registry client backed by MySQL or MariaDB. One value is one client with one session (one
/// row in `<prefix>clients`) at a time and two database connections (calls, heartbeats).
///
/// # Notable behaviors
/// - [`MysqlRegistry::new`] does no I/O; [`Registry::connect`] opens the connection, creates or
///   upgrades the tables (see the crate docs) and registers the session.
/// - Liveness is judged by the database's clock only: a client is dead when its last heartbeat
///   is older than its own session timeout. Any live client purges a dead one at its next poll,
///   writing `Removed` (with the last value) for each of its ephemeral keys and freeing its locks
///   in the same transaction. Only that purge ends a session (a heartbeat refreshes a row that
///   merely looks expired), and purges wait one session timeout after the database's clock
///   moved unlike the purger's own (a step), so a clock step ends no live session.
/// - Every write changes `data` and appends to the event log in one transaction; subscribers
///   read the log in commit order, once per heartbeat interval, with one query for all of the
///   client's subscriptions (which also reports dead peers).
/// - A client whose subscribers fell behind the event log's retention (ten session timeouts, at
///   least ten minutes) cannot be delivered what was purged: it reports `SessionLost` and builds
///   a new session, so that its user re-reads what it follows (etcd's `ErrCompacted`).
/// - At rest a client runs exactly two statements per heartbeat interval (the heartbeat and the
///   poll), plus one event-log purge per `event retention / 10` (one minute by default).
/// - Dropping a client without [`Registry::close`] stops its heartbeat: its session then ends
///   by timeout, as after a crash.
/// - Heartbeats have a connection of their own and never wait for a call. Writes take the
///   `sequence` row lock only inside their final packet (see `write.rs`), so a client stopped
///   mid-write holds nothing but its own rows' locks, and only until its session expires: the
///   peer that purges it first `KILL`s its recorded connection.
///
/// # Cancellation safety
/// As [`Registry`] documents per method. A call dropped half-way drops the client's connection
/// with it, so the server rolls back any open transaction (a write is one transaction: all of it
/// or none, unless its commit was already sent), and the next call opens a new connection. A
/// dropped `lock` call frees an acquisition that may have committed unseen, in the background; a
/// dropped `close` completes in the background; a dropped `connect` may leave a client row that
/// expires unused after the session timeout.
pub struct MysqlRegistry {
    shared: Arc<Shared>,
    /// One `connect` or `close` at a time; a `close` holds it until its teardown is done.
    connect_lock: Arc<tokio::sync::Mutex<()>>,
    task: Mutex<Option<BackgroundTask>>,
}

/// The background task of a connected client, and the sender that stops it.
type BackgroundTask = (JoinHandle<()>, watch::Sender<bool>);

impl MysqlRegistry {
    /// An unconnected client for `config`. Does no I/O.
    ///
    /// # Notable errors
    /// [`RegistryError::Config`] naming the key when the configuration is invalid (bad URL,
    /// credentials inside the URL, no database name, too short a session timeout, ...).
    pub fn new(config: MysqlConfig) -> Result<Self> {
        config.validate()?;
        let options = connect_options(&config)?;
        let shared = Shared::new(
            Tables::new(&config.table_prefix),
            options,
            Timing::new(config.heartbeat_interval_ms, config.session_timeout_ms),
            client_name(),
        );
        Ok(Self {
            shared: Arc::new(shared),
            connect_lock: Arc::new(tokio::sync::Mutex::new(())),
            task: Mutex::new(None),
        })
    }

    /// The id of the current session's row in `<prefix>clients`, or `None` while there is no
    /// live or suspended session. It changes after every `SessionLost`.
    pub fn client_id(&self) -> Option<u64> {
        self.shared
            .session_id()
            .and_then(|id| u64::try_from(id).ok())
    }

    /// Ends client `client_id`'s session now, as its expiry would: kills its database
    /// connection, deletes its row, its ephemeral keys (subscribers see `Removed` with the last
    /// value) and frees its locks, in one transaction; the client learns of it at its next
    /// heartbeat (`SessionLost`) and builds a new session. Answers whether there was such a
    /// session. For operators (a client that heartbeats but must go) and tests: only a purge ends
    /// a session, since a row that merely looks expired may be the database's clock stepping.
    ///
    /// # Notable errors
    /// [`RegistryError::NotConnected`] unless connected; [`RegistryError::Backend`] on database
    /// errors.
    pub async fn end_session(&self, client_id: u64) -> Result<bool> {
        self.shared.live()?;
        let shared = &self.shared;
        let id = i64::try_from(client_id).map_err(|_| RegistryError::Backend {
            backend: BACKEND,
            message: format!("client id {client_id} out of range"),
        })?;
        on_link!(shared.link, shared.timing.op_timeout, |conn| async {
            store::kill_connection(conn, &shared.tables, id, store::Kill::Always).await?;
            store::purge_client(conn, &shared.tables, id, Purge::Always).await
        })
        .map_err(|error| shared.failed(error, &format!("ending session {client_id}")))
    }

    /// Deletes change events older than `age` (by the database's clock) now, and returns how
    /// many. Connected clients already do this in the background with a retention of ten session
    /// timeouts, at least ten minutes; this is for operators and tests.
    ///
    /// # Notable errors
    /// [`RegistryError::NotConnected`] unless connected; [`RegistryError::Backend`] on database
    /// errors.
    pub async fn purge_events_older_than(&self, age: Duration) -> Result<u64> {
        self.shared.live()?;
        let shared = &self.shared;
        on_link!(shared.link, shared.timing.op_timeout, |conn| {
            crate::events::purge_older_than(conn, &shared.tables, age)
        })
        .map_err(|error| shared.failed(error, "purging old events"))
    }

    fn task_slot(&self) -> MutexGuard<'_, Option<BackgroundTask>> {
        self.task
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Runs `$attempt` (an expression using the live session's id `$me`) until it succeeds, retrying
/// at once after a deadlock or a lost optimistic check, at most [`MAX_ATTEMPTS`] times.
macro_rules! retrying {
    ($shared:expr, $doing:expr, |$me:ident| $attempt:expr) => {{
        let ($me, _) = $shared.live()?;
        let mut attempt = 1;
        loop {
            match $attempt {
                Ok(value) => break Ok(value),
                Err(error) if error.is_retryable() && attempt < MAX_ATTEMPTS => attempt += 1,
                Err(error) => break Err($shared.failed(error, $doing)),
            }
        }
    }};
}

/// The rest of `close` once the client is `Closed`: stops the background task, ends the session's
/// rows (so peers see `Removed` at once), drops the connection, and ends subscriptions and
/// listeners. Holds the connect lock until done.
async fn tear_down(
    shared: Arc<Shared>,
    doomed: Vec<i64>,
    task: Option<BackgroundTask>,
    _connecting: OwnedMutexGuard<()>,
) {
    if let Some((task, stop)) = task {
        let _ = stop.send(true);
        task.abort();
        let _ = task.await;
    }
    for id in doomed {
        let purged = on_link!(shared.link, shared.timing.op_timeout, |conn| {
            store::purge_client(conn, &shared.tables, id, Purge::Always)
        });
        if let Err(error) = purged {
            tracing::warn!(%error, client = id, "could not end the registry session on close; it ends by timeout");
        }
    }
    shared.link.disconnect(Duration::from_secs(1)).await;
    shared.beat_link.disconnect(Duration::from_secs(1)).await;
    shared.closed();
}

/// Connection options from the configuration, with the credentials from their own keys.
fn connect_options(config: &MysqlConfig) -> Result<MySqlConnectOptions> {
    let bad = |message: String| RegistryError::Config {
        key: "registry.mysql.url".to_owned(),
        message,
    };
    if let Some(problem) = crate::config::url_problem(&config.url) {
        return Err(bad(problem));
    }
    let url = config.url.replacen("mariadb://", "mysql://", 1);
    let options = MySqlConnectOptions::from_str(&url).map_err(|error| bad(error.to_string()))?;
    let mut options = options.username(&config.username);
    if !config.password.is_empty() {
        options = options.password(config.password.expose());
    }
    Ok(options)
}

/// What the `clients.name` column says about this process, for operators.
fn client_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned());
    let mut name = format!("{} pid {}", host.trim(), std::process::id());
    name.truncate(255);
    name
}

impl Drop for MysqlRegistry {
    fn drop(&mut self) {
        if let Some((task, _stop)) = self.task_slot().take() {
            task.abort();
        }
    }
}

impl fmt::Debug for MysqlRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlRegistry")
            .field("tables", &self.shared.tables.clients)
            .field("client_id", &self.client_id())
            .field("state", &self.shared.connection_state())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Registry for MysqlRegistry {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn connect(&self, timeout: Duration) -> Result<()> {
        let _connecting = self.connect_lock.lock().await;
        if !self.shared.needs_connecting()? {
            return Ok(());
        }
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + timeout;
        let timeout_error = |reason: String| RegistryError::ConnectTimeout {
            backend: BACKEND,
            timeout,
            reason,
        };
        let (id, last_seq, sent) = loop {
            let sent = tokio::time::Instant::now();
            let remaining = deadline.saturating_duration_since(sent);
            if remaining.is_zero() {
                return Err(timeout_error(
                    "the database did not answer in time".to_owned(),
                ));
            }
            let outcome = on_link!(shared.link, remaining, |conn| session::first_session(
                conn,
                &shared.tables,
                &shared.client_name,
                shared.timing.session_timeout_ms()
            ));
            match outcome {
                Ok((id, last_seq)) => break (id, last_seq, sent),
                // A refusal (bad credentials, no such database, a schema from the future):
                // waiting will not help.
                Err(error) if !error.is_transient() => {
                    return Err(timeout_error(error.to_string()));
                }
                Err(error) => {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if remaining.is_zero() {
                        return Err(timeout_error(error.to_string()));
                    }
                    tracing::debug!(%error, "registry database not reachable yet; retrying");
                    tokio::time::sleep(remaining.min(Duration::from_millis(200))).await;
                }
            }
        };
        *shared.cursor.lock().await = last_seq;
        shared.contacted(sent);
        shared.connected(id);
        *self.task_slot() = Some(session::spawn(shared.clone()));
        Ok(())
    }

    fn connection_state(&self) -> Option<ConnectionState> {
        self.shared.connection_state()
    }

    fn connection_listener(&self) -> ConnectionListener {
        self.shared.listen()
    }

    fn session_timeout(&self) -> Duration {
        self.shared.timing.session_timeout
    }

    fn last_contact(&self) -> Option<std::time::Instant> {
        self.shared.last_contact()
    }

    async fn put(&self, key: &str, value: &[u8], mode: Mode) -> Result<()> {
        path::validate_key(key)?;
        store::check_length(key)?;
        let shared = &self.shared;
        let pending = shared.pending_put(key, value, mode);
        let outcome = async {
            retrying!(shared, &format!("put {key}"), |me| on_link!(
                shared.link,
                shared.timing.op_timeout,
                |conn| async {
                    store::put(conn, &shared.tables, me, key, value, mode).await?;
                    pending.committed();
                    Ok(())
                }
            ))
        }
        .await;
        pending.settle(&outcome);
        outcome
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        path::validate(key)?;
        self.shared.live()?;
        if key.len() > store::MAX_PATH_BYTES {
            return Ok(None);
        }
        let shared = &self.shared;
        on_link!(shared.link, shared.timing.op_timeout, |conn| store::get(
            conn,
            &shared.tables,
            key
        ))
        .map_err(|error| shared.failed(error, &format!("get {key}")))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        path::validate_key(key)?;
        if key.len() > store::MAX_PATH_BYTES {
            self.shared.live()?;
            return Ok(());
        }
        let shared = &self.shared;
        let pending = shared.pending_delete(key);
        let outcome = async {
            retrying!(shared, &format!("delete {key}"), |me| on_link!(
                shared.link,
                shared.timing.op_timeout,
                |conn| async {
                    store::delete(conn, &shared.tables, me, key).await?;
                    pending.committed();
                    Ok(())
                }
            ))
        }
        .await;
        pending.settle(&outcome);
        outcome
    }

    async fn children(&self, parent: &str) -> Result<Vec<String>> {
        path::validate(parent)?;
        self.shared.live()?;
        let shared = &self.shared;
        on_link!(shared.link, shared.timing.op_timeout, |conn| {
            store::children(conn, &shared.tables, parent)
        })
        .map_err(|error| shared.failed(error, &format!("children of {parent}")))
    }

    async fn subscribe(&self, prefix: &str) -> Result<Subscription> {
        path::validate(prefix)?;
        let (me, _) = self.shared.live()?;
        let shared = &self.shared;
        // Deliver everything committed so far to the existing subscriptions first, so the new one
        // starts at the log's current end: it sees exactly what commits after this call.
        let mut cursor = shared.cursor.lock().await;
        session::catch_up(shared, &mut cursor, me)
            .await
            .map_err(|error| shared.failed(error, &format!("subscribe {prefix}")))?;
        Ok(shared.subscribers.subscribe(prefix))
    }

    async fn lock(&self, key: &str, timeout: Option<Duration>) -> Result<LockGuard> {
        path::validate_key(key)?;
        store::check_length(key)?;
        lock::acquire(&self.shared, key, timeout).await
    }

    async fn close(&self) -> Result<()> {
        let connecting = self.connect_lock.clone().lock_owned().await;
        let Some(doomed) = self.shared.close() else {
            return Ok(());
        };
        let task = self.task_slot().take();
        // The teardown runs as a task of its own, so that a dropped `close` still completes it.
        let teardown = tokio::spawn(tear_down(self.shared.clone(), doomed, task, connecting));
        match teardown.await {
            Ok(()) => Ok(()),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down, and with it the caller: nobody sees this.
            Err(_) => Ok(()),
        }
    }
}

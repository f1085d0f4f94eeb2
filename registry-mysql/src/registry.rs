//! [`MysqlRegistry`]: the [`Registry`] implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use registry_api::{
    ConnectionListener, ConnectionState, ConnectionStates, LockGuard, Mode, Registry,
    RegistryError, Result, Subscribers, Subscription, path,
};
use sqlx::mysql::MySqlConnectOptions;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::MysqlConfig;
use crate::error::{BACKEND, OpError};
use crate::link::{Link, on_link};
use crate::lock::{self, Claim, PendingClaim};
use crate::schema::Tables;
use crate::session::{self, Timing};
use crate::store::{self, Purge};

/// How often a call is retried at once after a deadlock or a lost optimistic check.
const MAX_ATTEMPTS: u32 = 8;

/// A registry client backed by MySQL or MariaDB. One value is one client with one session (one
/// row in `<prefix>clients`) at a time and one database connection.
///
/// # Notable behaviors
/// - [`MysqlRegistry::new`] does no I/O; [`Registry::connect`] opens the connection, creates or
///   upgrades the tables (see the crate docs) and registers the session.
/// - Liveness is judged by the database's clock only: a client is dead when its last heartbeat
///   is older than its own session timeout. Any live client purges a dead one at its next poll,
///   writing `Removed` (with the last value) for each of its ephemeral keys and freeing its locks
///   in the same transaction.
/// - Every write changes `data` and appends to the event log in one transaction; subscribers
///   read the log in commit order, once per heartbeat interval, with one query for all of the
///   client's subscriptions (which also reports dead peers).
/// - At rest a client runs exactly two statements per heartbeat interval (the heartbeat and the
///   poll), plus one event-log purge per `event retention / 10` (one minute by default).
/// - Dropping a client without [`Registry::close`] stops its heartbeat: its session then ends
///   by timeout, as after a crash.
/// - Writes are serialized across all clients by the `sequence` row lock (a few milliseconds
///   each): fine for a registry, not a general-purpose store.
///
/// # Cancellation safety
/// Every call is cancel-safe: a call dropped half-way drops the client's connection with it, so
/// the server rolls back any open transaction, and the next call opens a new connection. A
/// dropped `lock` call frees an acquisition that may have committed unseen, in the background.
pub struct MysqlRegistry {
    shared: Arc<Shared>,
    connect_lock: tokio::sync::Mutex<()>,
    task: Mutex<Option<(JoinHandle<()>, watch::Sender<bool>)>>,
}

/// What the client and its background task share.
pub(crate) struct Shared {
    pub tables: Tables,
    pub link: Link,
    pub timing: Timing,
    pub client_name: String,
    pub states: ConnectionStates,
    pub subscribers: Subscribers,
    session: Mutex<Session>,
    /// The event log position delivered so far; held while polling so deliveries never
    /// interleave.
    pub cursor: tokio::sync::Mutex<i64>,
    /// Asks the background task for an early heartbeat (after a failed call).
    pub wake: Notify,
    /// Wakes this client's lock waiters when one of its locks is released.
    pub lock_freed: Notify,
    next_claim: AtomicI64,
}

pub(crate) struct Session {
    pub phase: Phase,
    /// The ephemeral keys this client holds, re-created in a new session after a session loss.
    pub held: BTreeMap<String, Vec<u8>>,
    /// `true` while the current session lives; lock guards of the session watch it.
    pub validity: watch::Sender<bool>,
}

#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Unconnected,
    Live {
        id: i64,
    },
    Suspended {
        id: i64,
    },
    /// The session is gone; `stale` lists client rows to purge before the next one is live.
    Lost {
        stale: Vec<i64>,
    },
    Closed,
}

impl Shared {
    pub(crate) fn session(&self) -> MutexGuard<'_, Session> {
        // Every update under this lock is a plain assignment: a poisoned lock is consistent.
        self.session
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn wake_session(&self) {
        self.wake.notify_one();
    }

    /// The live session's id and a validity receiver for lock guards.
    fn live(&self) -> Result<(i64, watch::Receiver<bool>)> {
        let session = self.session();
        match &session.phase {
            Phase::Live { id } => Ok((*id, session.validity.subscribe())),
            Phase::Closed => Err(RegistryError::Closed),
            Phase::Unconnected | Phase::Suspended { .. } | Phase::Lost { .. } => {
                Err(RegistryError::NotConnected { backend: BACKEND })
            }
        }
    }

    /// A heartbeat of session `id` succeeded.
    pub(crate) fn resume(&self, id: i64) {
        let mut session = self.session();
        if matches!(session.phase, Phase::Suspended { id: s } if s == id) {
            session.phase = Phase::Live { id };
            drop(session);
            tracing::info!(client = id, "registry connection is back; session kept");
            self.states.set(ConnectionState::Reconnected);
        }
    }

    /// A call lost the connection: the session is suspended until a heartbeat gets through,
    /// which the background task tries at once.
    pub(crate) fn connection_lost(&self, error: &OpError) {
        let id = match self.session().phase {
            Phase::Live { id } => id,
            _ => return,
        };
        self.suspend(id, error);
        self.wake_session();
    }

    /// A heartbeat of session `id` failed, or a call lost the connection.
    pub(crate) fn suspend(&self, id: i64, error: &OpError) {
        let mut session = self.session();
        if matches!(session.phase, Phase::Live { id: s } if s == id) {
            session.phase = Phase::Suspended { id };
            drop(session);
            tracing::warn!(client = id, %error, "registry heartbeat failed; suspended");
            self.states.set(ConnectionState::Suspended);
        }
    }

    /// Session `id` is over: lock guards turn invalid and listeners hear `SessionLost`.
    pub(crate) fn lose(&self, id: i64, why: &str) {
        let mut session = self.session();
        if matches!(session.phase, Phase::Live { id: s } | Phase::Suspended { id: s } if s == id) {
            session.phase = Phase::Lost { stale: vec![id] };
            let (fresh, _) = watch::channel(true);
            let old = std::mem::replace(&mut session.validity, fresh);
            old.send_replace(false);
            drop(session);
            tracing::warn!(client = id, why, "registry session lost");
            self.states.set(ConnectionState::SessionLost);
        }
    }

    /// Turns a failed call into the caller's error, asking for an early heartbeat when the
    /// failure may mean the connection or the session is gone.
    pub(crate) fn failed(&self, error: OpError, doing: &str) -> RegistryError {
        if error.costs_connection() {
            self.connection_lost(&error);
        } else if matches!(
            error,
            OpError::Refused(RegistryError::SessionLost { .. }) | OpError::Busy
        ) {
            self.wake_session();
        }
        error.into_registry(doing)
    }
}

impl MysqlRegistry {
    /// An unconnected client for `config`. Does no I/O.
    ///
    /// # Notable errors
    /// [`RegistryError::Config`] naming the key when the configuration is invalid (bad URL,
    /// credentials inside the URL, no database name, too short a session timeout, ...).
    pub fn new(config: MysqlConfig) -> Result<Self> {
        config.validate()?;
        let options = connect_options(&config)?;
        let (validity, _) = watch::channel(false);
        let shared = Shared {
            tables: Tables::new(&config.table_prefix),
            link: Link::new(options),
            timing: Timing::new(config.heartbeat_interval_ms, config.session_timeout_ms),
            client_name: client_name(),
            states: ConnectionStates::new(),
            subscribers: Subscribers::new(),
            session: Mutex::new(Session {
                phase: Phase::Unconnected,
                held: BTreeMap::new(),
                validity,
            }),
            cursor: tokio::sync::Mutex::new(0),
            wake: Notify::new(),
            lock_freed: Notify::new(),
            next_claim: AtomicI64::new(1),
        };
        Ok(Self {
            shared: Arc::new(shared),
            connect_lock: tokio::sync::Mutex::new(()),
            task: Mutex::new(None),
        })
    }

    /// The id of the current session's row in `<prefix>clients`, or `None` while there is no
    /// live or suspended session. It changes after every `SessionLost`.
    pub fn client_id(&self) -> Option<u64> {
        match self.shared.session().phase {
            Phase::Live { id } | Phase::Suspended { id } => u64::try_from(id).ok(),
            _ => None,
        }
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

    fn task_slot(&self) -> MutexGuard<'_, Option<(JoinHandle<()>, watch::Sender<bool>)>> {
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

/// Connection options from the configuration, with the credentials from their own keys.
fn connect_options(config: &MysqlConfig) -> Result<MySqlConnectOptions> {
    let bad = |message: String| RegistryError::Config {
        key: "registry.mysql.url".to_owned(),
        message,
    };
    let url = config.url.replacen("mariadb://", "mysql://", 1);
    let authority = url
        .strip_prefix("mysql://")
        .and_then(|rest| rest.split(['/', '?']).next())
        .unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not allowed; put them in registry.mysql.username and registry.mysql.password".to_owned(),
        ));
    }
    let options = MySqlConnectOptions::from_str(&url)
        .map_err(|error| bad(format!("{:?} is not a MySQL URL: {error}", config.url)))?;
    if options.get_database().is_none_or(str::is_empty) {
        return Err(bad(format!(
            "{:?} names no database; expected mysql://host:port/database",
            config.url
        )));
    }
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
            .field("state", &self.shared.states.current())
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
        match self.shared.session().phase {
            Phase::Unconnected => {}
            Phase::Closed => return Err(RegistryError::Closed),
            _ => return Ok(()),
        }
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + timeout;
        let timeout_error = |reason: String| RegistryError::ConnectTimeout {
            backend: BACKEND,
            timeout,
            reason,
        };
        let (id, last_seq) = loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
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
                Ok(started) => break started,
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
        {
            let mut session = shared.session();
            session.phase = Phase::Live { id };
            session.validity.send_replace(true);
        }
        tracing::info!(client = id, tables = %shared.tables.clients, "registry session established");
        shared.states.set(ConnectionState::Connected);
        *self.task_slot() = Some(session::spawn(shared.clone()));
        Ok(())
    }

    fn connection_state(&self) -> Option<ConnectionState> {
        self.shared.states.current()
    }

    fn connection_listener(&self) -> ConnectionListener {
        self.shared.states.listen()
    }

    fn session_timeout(&self) -> Duration {
        self.shared.timing.session_timeout
    }

    async fn put(&self, key: &str, value: &[u8], mode: Mode) -> Result<()> {
        path::validate_key(key)?;
        store::check_length(key)?;
        let shared = &self.shared;
        retrying!(shared, &format!("put {key}"), |me| on_link!(
            shared.link,
            shared.timing.op_timeout,
            |conn| async {
                store::put(conn, &shared.tables, me, key, value, mode).await?;
                // Recorded while the connection is still ours, so a session rebuild cannot run
                // between the commit and this line and miss the key.
                let mut session = shared.session();
                match mode {
                    Mode::Ephemeral => session.held.insert(key.to_owned(), value.to_vec()),
                    Mode::Persistent => session.held.remove(key),
                };
                Ok(())
            }
        ))
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
        retrying!(shared, &format!("delete {key}"), |me| on_link!(
            shared.link,
            shared.timing.op_timeout,
            |conn| async {
                store::delete(conn, &shared.tables, me, key).await?;
                shared
                    .session()
                    .held
                    .retain(|held, _| !path::is_within(key, held));
                Ok(())
            }
        ))
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
        let shared = &self.shared;
        let started = tokio::time::Instant::now();
        let deadline = timeout.map(|t| started + t);
        let claim = shared.next_claim.fetch_add(1, Ordering::Relaxed);
        loop {
            let (me, validity) = shared.live()?;
            let freed = shared.lock_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let pending = PendingClaim::new(Claim {
                shared: Arc::downgrade(shared),
                path: key.to_owned(),
                owner: me,
                claim,
            });
            let attempt = on_link!(shared.link, shared.timing.op_timeout, |conn| {
                lock::try_acquire(conn, &shared.tables, me, claim, key)
            });
            match attempt {
                Ok(Some(token)) => {
                    if let Some(granted) = pending.disarm() {
                        return Ok(LockGuard::new(key, token, validity, Box::new(granted)));
                    }
                }
                Ok(None) => {
                    pending.disarm();
                }
                Err(error) if error.is_retryable() => {
                    pending.disarm();
                }
                Err(error) => {
                    // `pending` frees the attempt in the background if its commit went unseen.
                    if !error.costs_connection() {
                        pending.disarm();
                    }
                    return Err(shared.failed(error, &format!("lock {key}")));
                }
            }
            let now = tokio::time::Instant::now();
            let nap = match deadline {
                Some(deadline) if now >= deadline => {
                    return Err(RegistryError::LockTimeout {
                        path: key.to_owned(),
                        waited: now - started,
                    });
                }
                Some(deadline) => shared.timing.interval.min(deadline - now),
                None => shared.timing.interval,
            };
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = &mut freed => {}
            }
        }
    }

    async fn close(&self) -> Result<()> {
        let _connecting = self.connect_lock.lock().await;
        let doomed: Vec<i64> = {
            let mut session = self.shared.session();
            let doomed = match std::mem::replace(&mut session.phase, Phase::Closed) {
                Phase::Closed => return Ok(()),
                Phase::Unconnected => Vec::new(),
                Phase::Live { id } | Phase::Suspended { id } => vec![id],
                Phase::Lost { stale } => stale,
            };
            session.validity.send_replace(false);
            session.held.clear();
            doomed
        };
        let task = self.task_slot().take();
        if let Some((task, stop)) = task {
            let _ = stop.send(true);
            task.abort();
            let _ = task.await;
        }
        let shared = &self.shared;
        for id in doomed {
            let purged = on_link!(shared.link, shared.timing.op_timeout, |conn| {
                store::purge_client(conn, &shared.tables, id, Purge::Always)
            });
            if let Err(error) = purged {
                tracing::warn!(%error, client = id, "could not end the registry session on close; it ends by timeout");
            }
        }
        shared.link.disconnect(Duration::from_secs(1)).await;
        shared.subscribers.close_all();
        shared.states.close();
        shared.lock_freed.notify_waiters();
        Ok(())
    }
}

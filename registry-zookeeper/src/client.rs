//! [`ZookeeperRegistry`]: the [`Registry`] on a ZooKeeper ensemble.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use registry_api::{
    ConnectionListener, ConnectionState, ConnectionStates, LockGuard, Mode, Registry,
    RegistryError, Subscribers, Subscription, path,
};
use tokio::task::JoinHandle;

use crate::config::ZookeeperConfig;
use crate::error::BACKEND;
use crate::session::Session;
use crate::watch::WatchHandle;
use crate::{lock, supervisor, tree};

/// How long `close` waits for the server to confirm the end of the session.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A registry client on a ZooKeeper ensemble, all of its keys under `namespace`.
///
/// Built unconnected by [`ZookeeperRegistry::new`] (or the `"zookeeper"` factory);
/// [`Registry::connect`] opens the first session.
///
/// # Notable behaviors
/// - Keys are znodes whose value was written at least once; implied parents and lock nodes are
///   empty znodes that `get`, `exists` and subscribers do not see (see the crate docs).
/// - Connection states follow the session exactly: `Disconnected` → [`ConnectionState::Suspended`],
///   the same session back → [`ConnectionState::Reconnected`], `Expired` →
///   [`ConnectionState::SessionLost`]. After a loss the client builds a new session by itself,
///   re-arms its watches and delivers what changed meanwhile, re-creates the ephemeral keys it
///   holds (never over another session's node, never by deleting a live one), then reports
///   [`ConnectionState::Connected`].
/// - While suspended, calls fail at once with [`RegistryError::NotConnected`] rather than queue.
/// - Dropping the client without `close` stops its tasks and closes its session.
pub struct ZookeeperRegistry {
    shared: Arc<Shared>,
}

/// The state shared by the client and its supervisor task.
pub(crate) struct Shared {
    pub(crate) config: ZookeeperConfig,
    pub(crate) states: ConnectionStates,
    pub(crate) subscribers: Subscribers,
    phase: Mutex<Phase>,
    /// The ephemeral keys this client holds, re-created in every new session.
    held: Mutex<BTreeMap<String, Vec<u8>>>,
    /// One `connect` at a time.
    connecting: tokio::sync::Mutex<()>,
}

enum Phase {
    Unconnected,
    Live {
        /// `None` while a lost session is being replaced.
        session: Option<Arc<Session>>,
        watch: Arc<WatchHandle>,
        supervisor: JoinHandle<()>,
    },
    Closed,
}

impl ZookeeperRegistry {
    /// An unconnected client; no I/O happens until [`Registry::connect`].
    ///
    /// # Notable errors
    /// [`RegistryError::Config`] naming the offending key (see [`ZookeeperConfig::validate`]).
    pub fn new(config: ZookeeperConfig) -> Result<Self, RegistryError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                states: ConnectionStates::new(),
                subscribers: Subscribers::new(),
                phase: Mutex::new(Phase::Unconnected),
                held: Mutex::new(BTreeMap::new()),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ZookeeperConfig {
        &self.shared.config
    }

    /// The id of the current ZooKeeper session (the `ephemeralOwner` of this client's ephemeral
    /// nodes), or `None` while there is none.
    pub fn session_id(&self) -> Option<i64> {
        self.shared.current_session().map(|session| session.id())
    }

    /// Ends the current session on the server as a session timeout would, without closing this
    /// client: the server removes its ephemeral nodes and frees its locks at once, and this client
    /// then goes through [`ConnectionState::SessionLost`] to a new session as it would after a
    /// real expiry. For failure drills and tests.
    ///
    /// # Notable errors
    /// [`RegistryError::NotConnected`] when there is no live session; a backend error when the
    /// second connection to the session cannot be made.
    pub async fn expire_session(&self) -> Result<(), RegistryError> {
        let session = self.shared.session()?;
        session
            .expire_on_server(&self.shared.config)
            .await
            .map_err(|message| RegistryError::Backend {
                backend: BACKEND,
                message,
            })
    }
}

impl Shared {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Updates of the phase are single assignments that cannot panic half-way.
        self.phase
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn held_keys(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.held
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn current_session(&self) -> Option<Arc<Session>> {
        match &*self.phase() {
            Phase::Live { session, .. } => session.clone(),
            _ => None,
        }
    }

    /// The session for a call, or why there is none usable now.
    fn session(&self) -> Result<Arc<Session>, RegistryError> {
        match &*self.phase() {
            Phase::Unconnected | Phase::Live { session: None, .. } => {
                Err(RegistryError::NotConnected { backend: BACKEND })
            }
            Phase::Closed => Err(RegistryError::Closed),
            Phase::Live {
                session: Some(session),
                ..
            } => {
                if self.states.current() == Some(ConnectionState::Suspended) {
                    return Err(RegistryError::NotConnected { backend: BACKEND });
                }
                Ok(session.clone())
            }
        }
    }

    fn watch(&self) -> Option<Arc<WatchHandle>> {
        match &*self.phase() {
            Phase::Live { watch, .. } => Some(watch.clone()),
            _ => None,
        }
    }

    /// Takes the lost session out of service; returns whether the client is still open.
    pub(crate) fn retire_session(&self) -> bool {
        match &mut *self.phase() {
            Phase::Live { session, .. } => {
                *session = None;
                true
            }
            _ => false,
        }
    }

    /// Puts a recovered session into service; returns whether the client is still open.
    pub(crate) fn install_session(&self, new: Arc<Session>) -> bool {
        match &mut *self.phase() {
            Phase::Live { session, .. } => {
                *session = Some(new);
                true
            }
            _ => false,
        }
    }

    /// Moves the watches to a new session (see [`WatchHandle::adopt`]).
    pub(crate) async fn adopt_watches(&self, session: &Session) {
        if let Some(watch) = self.watch() {
            watch.adopt(session.client().clone()).await;
        }
    }

    /// The ephemeral keys this client holds, with their values.
    pub(crate) fn held(&self) -> Vec<(String, Vec<u8>)> {
        self.held_keys()
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Stops re-creating `key` (it now belongs to someone else).
    pub(crate) fn forget_held(&self, key: &str) {
        self.held_keys().remove(key);
    }
}

impl Drop for ZookeeperRegistry {
    fn drop(&mut self) {
        let phase = std::mem::replace(&mut *self.shared.phase(), Phase::Closed);
        if let Phase::Live {
            session,
            supervisor,
            ..
        } = phase
        {
            supervisor.abort();
            if let Some(session) = session {
                session.end(true);
            }
            // The watch task stops when its handle drops; the session closes with the last
            // clone of its client.
        }
    }
}

impl fmt::Debug for ZookeeperRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZookeeperRegistry")
            .field("servers", &self.shared.config.servers)
            .field("namespace", &self.shared.config.namespace)
            .field("state", &self.shared.states.current())
            .field("session", &self.shared.current_session())
            .finish()
    }
}

#[async_trait]
impl Registry for ZookeeperRegistry {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn connect(&self, timeout: Duration) -> Result<(), RegistryError> {
        let _one_at_a_time = self.shared.connecting.lock().await;
        match &*self.shared.phase() {
            Phase::Live { .. } => return Ok(()),
            Phase::Closed => return Err(RegistryError::Closed),
            Phase::Unconnected => {}
        }
        let limit = timeout.min(self.shared.config.connect_timeout());
        let session = Session::establish(&self.shared.config, limit)
            .await
            .map_err(|reason| RegistryError::ConnectTimeout {
                backend: BACKEND,
                timeout: limit,
                reason,
            })?;
        let session = Arc::new(session);
        let watch = Arc::new(WatchHandle::start(
            session.client().clone(),
            self.shared.subscribers.clone(),
        ));
        let mut phase = self.shared.phase();
        if matches!(*phase, Phase::Closed) {
            session.end(true);
            return Err(RegistryError::Closed);
        }
        // Connected before the supervisor can report anything later.
        self.shared.states.set(ConnectionState::Connected);
        let supervisor = tokio::spawn(supervisor::run(self.shared.clone(), session.clone()));
        *phase = Phase::Live {
            session: Some(session),
            watch,
            supervisor,
        };
        Ok(())
    }

    fn connection_state(&self) -> Option<ConnectionState> {
        self.shared.states.current()
    }

    fn connection_listener(&self) -> ConnectionListener {
        self.shared.states.listen()
    }

    fn session_timeout(&self) -> Duration {
        self.shared
            .current_session()
            .map(|session| session.timeout())
            .unwrap_or_else(|| self.shared.config.session_timeout())
    }

    async fn put(&self, key: &str, value: &[u8], mode: Mode) -> Result<(), RegistryError> {
        path::validate_key(key)?;
        let session = self.shared.session()?;
        let acls = self.shared.config.acls();
        tree::put(session.client(), acls, session.id(), key, value, mode).await?;
        let mut held = self.shared.held_keys();
        match mode {
            Mode::Ephemeral => held.insert(key.to_owned(), value.to_vec()),
            Mode::Persistent => held.remove(key),
        };
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        path::validate(key)?;
        let session = self.shared.session()?;
        tree::get(session.client(), key).await
    }

    async fn exists(&self, key: &str) -> Result<bool, RegistryError> {
        path::validate(key)?;
        let session = self.shared.session()?;
        tree::exists(session.client(), key).await
    }

    async fn delete(&self, key: &str) -> Result<(), RegistryError> {
        path::validate_key(key)?;
        let session = self.shared.session()?;
        tree::delete(session.client(), key).await?;
        self.shared
            .held_keys()
            .retain(|held, _| !path::is_within(key, held));
        Ok(())
    }

    async fn children(&self, parent: &str) -> Result<Vec<String>, RegistryError> {
        path::validate(parent)?;
        let session = self.shared.session()?;
        tree::children(session.client(), parent).await
    }

    async fn subscribe(&self, prefix: &str) -> Result<Subscription, RegistryError> {
        path::validate(prefix)?;
        self.shared.session()?;
        let watch = self.shared.watch().ok_or(RegistryError::Closed)?;
        watch.subscribe(prefix).await
    }

    async fn lock(&self, key: &str, timeout: Option<Duration>) -> Result<LockGuard, RegistryError> {
        path::validate_key(key)?;
        let session = self.shared.session()?;
        lock::acquire(session, self.shared.config.acls(), key, timeout).await
    }

    async fn close(&self) -> Result<(), RegistryError> {
        let phase = std::mem::replace(&mut *self.shared.phase(), Phase::Closed);
        if let Phase::Live {
            session,
            watch,
            supervisor,
        } = phase
        {
            // Stop the tasks first: each holds a clone of the session's client.
            supervisor.abort();
            let _ = supervisor.await;
            if let Ok(watch) = Arc::try_unwrap(watch) {
                watch.stop().await;
            }
            if let Some(session) = session {
                session.end(true);
                let mut state = session.client().state_watcher();
                drop(session);
                // The last clone is gone (or goes when in-flight calls finish): the client
                // closes the session, and the server removes its ephemerals.
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    while !state.peek_state().is_terminated() {
                        state.changed().await;
                    }
                })
                .await;
            }
        }
        self.shared.held_keys().clear();
        self.shared.subscribers.close_all();
        self.shared.states.close();
        Ok(())
    }
}

//! [`ZookeeperRegistry`]: the [`Registry`] on a ZooKeeper ensemble.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use registry_api::{
    ConnectionListener, ConnectionState, LockGuard, Mode, Registry, RegistryError, Subscription,
    path,
};

use crate::config::ZookeeperConfig;
use crate::error::BACKEND;
use crate::session::Session;
use crate::state::Shared;
use crate::watch::WatchHandle;
use crate::{lock, supervisor, tree};

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

impl ZookeeperRegistry {
    /// An unconnected client; no I/O happens until [`Registry::connect`].
    ///
    /// # Notable errors
    /// [`RegistryError::Config`] naming the offending key (see [`ZookeeperConfig::validate`]).
    pub fn new(config: ZookeeperConfig) -> Result<Self, RegistryError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(config)),
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

impl Drop for ZookeeperRegistry {
    fn drop(&mut self) {
        self.shared.close_now();
    }
}

impl fmt::Debug for ZookeeperRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZookeeperRegistry")
            .field("servers", &self.shared.config.servers)
            .field("namespace", &self.shared.config.namespace)
            .field("state", &self.shared.connection_state())
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
        let _one_at_a_time = self.shared.connecting().await;
        if !self.shared.needs_connecting()? {
            return Ok(());
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
        let shared = self.shared.clone();
        let first = session.clone();
        self.shared.connected(session, watch, move || {
            tokio::spawn(supervisor::run(shared, first))
        })
    }

    fn connection_state(&self) -> Option<ConnectionState> {
        self.shared.connection_state()
    }

    fn connection_listener(&self) -> ConnectionListener {
        self.shared.listen()
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
        let pending = self.shared.pending_put(key, value, mode);
        let outcome = tree::put(session.client(), acls, session.id(), key, value, mode).await;
        pending.settle(&outcome);
        outcome
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
        let pending = self.shared.pending_delete(key);
        let outcome = tree::delete(session.client(), key).await;
        pending.settle(&outcome);
        outcome
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
        let ending = self.shared.close();
        let shared = self.shared.clone();
        // The rest runs as a task of its own, so that a dropped `close` still completes it.
        let closing = tokio::spawn(async move { shared.closed(ending).await });
        match closing.await {
            Ok(()) => Ok(()),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down, and with it the caller: nobody sees this.
            Err(_) => Ok(()),
        }
    }
}

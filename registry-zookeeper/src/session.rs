//! One ZooKeeper session: how it is built (authenticated, inside the namespace), how its end is
//! signalled to the locks it granted, and how a test or an operator can expire it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use registry_api::RegistryError;
use tokio::sync::watch;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::config::ZookeeperConfig;
use crate::error::BACKEND;

/// How long to wait between attempts when every server refused the connection.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// A live (or just ended) ZooKeeper session and the client that speaks for it, rooted at the
/// namespace.
///
/// # Notable behaviors
/// - The session is closed on the server (its ephemerals removed at once) when the last clone of
///   its [`zk::Client`] is dropped; holders other than the registry keep at most a [`std::sync::Weak`].
/// - [`Session::end`] marks it over for every lock it granted: their validity turns false.
pub(crate) struct Session {
    client: zk::Client,
    id: i64,
    timeout: Duration,
    /// `true` while the session lives; lock waiters of this session watch it.
    validity: watch::Sender<bool>,
    /// The validity of every lock guard granted in this session, turned false by [`Session::end`]
    /// in the same call, so a guard is invalid as soon as `SessionLost` is reported.
    guards: Mutex<Vec<Weak<watch::Sender<bool>>>>,
    /// Set when the session ended because its owner closed the registry, not by expiry.
    closed: AtomicBool,
}

impl Session {
    /// Connects to the ensemble, authenticates, creates the namespace if it is missing and checks
    /// that this client may read it. Retries refused connections until `timeout` passes.
    ///
    /// # Notable errors
    /// A one-line reason (the servers tried and the last error, or the missing permission), for
    /// [`RegistryError::ConnectTimeout`].
    pub(crate) async fn establish(
        config: &ZookeeperConfig,
        timeout: Duration,
    ) -> Result<Session, String> {
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, Self::establish_until(config, deadline)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "no ZooKeeper server at {:?} answered within {timeout:?}",
                config.servers
            )),
        }
    }

    async fn establish_until(
        config: &ZookeeperConfig,
        deadline: Instant,
    ) -> Result<Session, String> {
        let mut attempts = 0u32;
        let client = loop {
            attempts += 1;
            match connector(config).connect(&config.servers).await {
                Ok(client) => break client,
                Err(error) => {
                    let why = match error {
                        zk::Error::NoHosts => "every server refused the connection".to_owned(),
                        other => other.to_string(),
                    };
                    if Instant::now() + RETRY_DELAY >= deadline {
                        return Err(format!(
                            "no ZooKeeper session at {:?} after {attempts} attempt(s): {why}",
                            config.servers
                        ));
                    }
                    tracing::debug!(servers = %config.servers, %why, "ZooKeeper connect attempt failed; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        };
        let client = enter_namespace(client, config).await?;
        let id = client.session_id().0;
        let timeout = client.session_timeout();
        tracing::info!(session = %format_args!("{id:#x}"), ?timeout, namespace = %config.namespace, "ZooKeeper session established");
        let (validity, _) = watch::channel(true);
        Ok(Session {
            client,
            id,
            timeout,
            validity,
            guards: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// The client of this session, rooted at the namespace.
    pub(crate) fn client(&self) -> &zk::Client {
        &self.client
    }

    /// The server's id of this session (the `ephemeralOwner` of its ephemeral nodes).
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// The session timeout the server granted.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the session has not been marked over.
    pub(crate) fn is_live(&self) -> bool {
        *self.validity.borrow()
    }

    /// Completes when the session is marked over.
    ///
    /// # Cancellation safety
    /// Cancel-safe.
    pub(crate) async fn ended(&self) {
        let mut validity = self.validity.subscribe();
        let _ = validity.wait_for(|live| !*live).await;
    }

    /// The error for a call that outlived the session.
    pub(crate) fn end_error(&self) -> RegistryError {
        if self.closed.load(Ordering::SeqCst) {
            RegistryError::Closed
        } else {
            RegistryError::SessionLost { backend: BACKEND }
        }
    }

    /// Marks the session over: lock guards turn invalid and lock waiters give up.
    /// `closed` says whether the owner closed the registry (rather than the session expiring).
    pub(crate) fn end(&self, closed: bool) {
        if closed {
            self.closed.store(true, Ordering::SeqCst);
        }
        self.validity.send_replace(false);
        for guard in self.guards().drain(..) {
            if let Some(guard) = guard.upgrade() {
                guard.send_replace(false);
            }
        }
    }

    /// Registers the validity of a lock guard granted in this session, so that [`Session::end`]
    /// turns it false. A guard registered after the end is invalid at once.
    pub(crate) fn register_guard(&self, validity: &Arc<watch::Sender<bool>>) {
        let mut guards = self.guards();
        guards.retain(|guard| guard.strong_count() > 0);
        guards.push(Arc::downgrade(validity));
        drop(guards);
        if !self.is_live() {
            validity.send_replace(false);
        }
    }

    fn guards(&self) -> MutexGuard<'_, Vec<Weak<watch::Sender<bool>>>> {
        // Pushes and drains only: a poisoned lock still holds a consistent list.
        self.guards
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Expires the session on the server as a timeout would: attaches a second connection to it
    /// with its id and password and closes that connection, which closes the session (its
    /// ephemerals are deleted and its watchers notified). The owning client learns of it on its
    /// next exchange with the server and reports the session expired.
    ///
    /// # Notable behaviors
    /// Attaching makes the server drop the owner's connection, and the owner reconnects at once
    /// and takes the session back, possibly before the attached connection could close it. So
    /// this attaches again until the server answers that the session is gone: that answer, not
    /// the close, is the proof.
    pub(crate) async fn expire_on_server(&self, config: &ZookeeperConfig) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            match connector(config)
                .with_session(self.client.session().clone())
                .connect(&config.servers)
                .await
            {
                Err(zk::Error::SessionExpired) => return Ok(()),
                Ok(attached) => {
                    // Holding the session now: dropping the last clone sends CloseSession.
                    let mut state = attached.state_watcher();
                    drop(attached);
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while !state.peek_state().is_terminated() {
                            state.changed().await;
                        }
                    })
                    .await;
                    last = "the session was closed; checking".to_owned();
                }
                // The owner took the session back first; try again.
                Err(error) => last = error.to_string(),
            }
        }
        Err(format!(
            "could not expire session {:#x} within 20s (last: {last})",
            self.id
        ))
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &format_args!("{:#x}", self.id))
            .field("timeout", &self.timeout)
            .field("live", &self.is_live())
            .finish()
    }
}

/// A connector with the configured session timeout and credentials that gives up on a round of
/// refused connections at once (the caller retries until its own deadline).
fn connector(config: &ZookeeperConfig) -> zk::Connector {
    let connector = zk::Client::connector()
        .with_session_timeout(config.session_timeout())
        .with_fail_eagerly();
    if config.digest.is_empty() {
        connector
    } else {
        connector.with_auth("digest", config.digest.expose().as_bytes())
    }
}

/// Creates the namespace if it is missing, roots the client there and checks that it may read it.
async fn enter_namespace(
    client: zk::Client,
    config: &ZookeeperConfig,
) -> Result<zk::Client, String> {
    let namespace = config.namespace.as_str();
    let denied = |doing: &str| {
        format!(
            "not authorized to {doing} namespace {namespace:?}: its ACL does not admit these \
             credentials (registry.zookeeper.digest)"
        )
    };
    if namespace != registry_api::path::ROOT {
        let options = zk::CreateMode::Persistent.with_acls(config.acls());
        match client.mkdir(namespace, &options).await {
            Ok(()) => {}
            Err(zk::Error::NoAuth) => return Err(denied("create")),
            Err(error) => return Err(format!("creating namespace {namespace:?} failed: {error}")),
        }
    }
    let client = client
        .chroot(namespace)
        .map_err(|_| format!("namespace {namespace:?} is not a valid ZooKeeper path"))?;
    match client.list_children("/").await {
        Ok(_) => Ok(client),
        Err(zk::Error::NoAuth) => Err(denied("read")),
        Err(error) => Err(format!("reading namespace {namespace:?} failed: {error}")),
    }
}

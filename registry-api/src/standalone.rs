//! The in-process `standalone` registry: the embedded default for a single node.
//!
//! Like Flink's `StandaloneHaServices`, it needs no server: the key tree, locks and sessions live in
//! this process, so leadership is granted at once and nothing survives a restart. Several clients
//! can share one [`StandaloneServer`], each with its own session, which is how the conformance kit
//! exercises ephemeral keys and locks without a network.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use crate::connection::{ConnectionListener, ConnectionState, ConnectionStates};
use crate::error::{RegistryError, Result};
use crate::event::{Event, EventKind, Mode};
use crate::lock::{LockGuard, LockRelease};
use crate::path;
use crate::registry::Registry;
use crate::subscription::{Subscribers, Subscription};

const BACKEND: &str = "standalone";

/// The shared in-process state behind one or more [`StandaloneRegistry`] clients.
#[derive(Clone, Default)]
pub struct StandaloneServer {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    tree: Mutex<Tree>,
}

#[derive(Default)]
struct Tree {
    entries: BTreeMap<String, Entry>,
    locks: HashMap<String, LockSlot>,
    /// Where events go: every connected client's subscriptions.
    clients: HashMap<u64, Subscribers>,
    next_client: u64,
    next_session: u64,
}

struct Entry {
    value: Vec<u8>,
    /// The session that owns an ephemeral key; `None` for persistent keys.
    owner: Option<u64>,
}

#[derive(Default)]
struct LockSlot {
    /// (session, fencing token) of the holder.
    holder: Option<(u64, u64)>,
    /// The highest token ever granted; never goes back, so slots are never removed.
    last_token: u64,
    freed: Arc<Notify>,
}

impl StandaloneServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, unconnected client of this server with its own session.
    pub fn client(&self) -> StandaloneRegistry {
        let (id, subscribers) = {
            let mut tree = self.tree();
            tree.next_client += 1;
            let subscribers = Subscribers::new();
            let id = tree.next_client;
            tree.clients.insert(id, subscribers.clone());
            (id, subscribers)
        };
        StandaloneRegistry {
            server: self.clone(),
            client_id: id,
            subscribers,
            states: ConnectionStates::new(),
            session: Mutex::new(ClientSession::default()),
        }
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // Every mutation of the tree completes before the guard drops and none can panic
        // half-way, so a poisoned lock still guards consistent data.
        self.shared
            .tree
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl fmt::Debug for StandaloneServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandaloneServer").finish_non_exhaustive()
    }
}

impl Tree {
    fn publish(&self, event: Event) {
        for subscribers in self.clients.values() {
            subscribers.publish(&event);
        }
    }

    fn keys_within<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let start = if prefix == path::ROOT {
            Bound::Unbounded
        } else {
            Bound::Included(prefix.to_owned())
        };
        self.entries
            .range::<String, _>((start, Bound::Unbounded))
            .map(|(key, _)| key)
            .take_while(move |key| key.starts_with(prefix))
            .filter(move |key| path::is_within(prefix, key))
    }

    fn put(&mut self, session: u64, key: &str, value: &[u8], mode: Mode) -> Result<()> {
        if let Some(parent) = path::ancestors(key).find(|a| {
            self.entries
                .get(*a)
                .is_some_and(|entry| entry.owner.is_some())
        }) {
            return Err(RegistryError::InvalidPath {
                path: key.to_owned(),
                reason: format!(
                    "its parent {parent} is ephemeral, and ephemeral keys cannot have children"
                ),
            });
        }
        if mode == Mode::Ephemeral && self.keys_within(key).any(|k| k != key) {
            return Err(RegistryError::InvalidPath {
                path: key.to_owned(),
                reason: "it has children, and ephemeral keys cannot have children".to_owned(),
            });
        }
        let owner = (mode == Mode::Ephemeral).then_some(session);
        let kind = match self.entries.get_mut(key) {
            Some(entry) => {
                if entry.owner.is_some_and(|o| o != session) {
                    return Err(RegistryError::Conflict {
                        path: key.to_owned(),
                        reason: "it is an ephemeral key of another live session".to_owned(),
                    });
                }
                entry.value = value.to_vec();
                entry.owner = owner;
                EventKind::Updated
            }
            None => {
                self.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: value.to_vec(),
                        owner,
                    },
                );
                EventKind::Added
            }
        };
        self.publish(Event::new(kind, key, value));
        Ok(())
    }

    fn remove(&mut self, keys: Vec<String>) {
        // Deepest first, as a recursive delete on a real tree would.
        for key in keys.into_iter().rev() {
            if let Some(entry) = self.entries.remove(&key) {
                self.publish(Event::new(EventKind::Removed, key, entry.value));
            }
        }
    }

    /// Removes a session's ephemerals (reporting each) and frees its locks.
    fn end_session(&mut self, session: u64) {
        let owned: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.owner == Some(session))
            .map(|(key, _)| key.clone())
            .collect();
        self.remove(owned);
        for slot in self.locks.values_mut() {
            if slot.holder.is_some_and(|(holder, _)| holder == session) {
                slot.holder = None;
                slot.freed.notify_waiters();
            }
        }
    }
}

/// One client of a [`StandaloneServer`], with one session at a time.
///
/// [`StandaloneRegistry::new`] makes a client of a private server: what the console uses when no
/// registry is configured. Dropping a client without `close` ends its session, as a crash would.
pub struct StandaloneRegistry {
    server: StandaloneServer,
    client_id: u64,
    subscribers: Subscribers,
    states: ConnectionStates,
    session: Mutex<ClientSession>,
}

#[derive(Default)]
struct ClientSession {
    phase: Phase,
    /// The ephemeral keys this client holds, re-created in a new session after a session loss.
    held: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
enum Phase {
    #[default]
    Unconnected,
    Live {
        id: u64,
        /// `true` while the session lives; lock guards of the session watch it.
        validity: watch::Sender<bool>,
    },
    Closed,
}

impl StandaloneRegistry {
    /// A client of its own private server.
    pub fn new() -> Self {
        StandaloneServer::new().client()
    }

    /// Ends the current session as a server would after a timeout, then builds a new one:
    /// listeners see `SessionLost` then `Connected`, peers see `Removed` and then `Added` for each
    /// re-created ephemeral, and lock guards of the old session turn invalid. A hook for tests
    /// of session-loss handling; does nothing unless connected.
    pub fn expire_session(&self) {
        let mut session = self.session();
        let Phase::Live { id, .. } = session.phase else {
            return;
        };
        self.states.set(ConnectionState::SessionLost);
        self.server.tree().end_session(id);
        session.phase = Phase::Unconnected;
        let new_id = self.start_session(&mut session);
        let mut tree = self.server.tree();
        session.held.retain(|key, value| {
            match tree.put(new_id, key, value, Mode::Ephemeral) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, key, "could not re-create an ephemeral key after session loss; dropping it");
                    false
                }
            }
        });
        drop(tree);
        self.states.set(ConnectionState::Connected);
    }

    fn session(&self) -> MutexGuard<'_, ClientSession> {
        // Updates complete under the guard without panicking: poisoning cannot expose a torn state.
        self.session
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn start_session(&self, session: &mut ClientSession) -> u64 {
        let id = {
            let mut tree = self.server.tree();
            tree.next_session += 1;
            tree.next_session
        };
        let (validity, _) = watch::channel(true);
        session.phase = Phase::Live { id, validity };
        id
    }

    /// The live session's id and lock validity, or the error that explains why there is none.
    fn live(session: &ClientSession) -> Result<(u64, watch::Receiver<bool>)> {
        match &session.phase {
            Phase::Live { id, validity } => Ok((*id, validity.subscribe())),
            Phase::Unconnected => Err(RegistryError::NotConnected { backend: BACKEND }),
            Phase::Closed => Err(RegistryError::Closed),
        }
    }

    fn ensure_live(&self) -> Result<u64> {
        Self::live(&self.session()).map(|(id, _)| id)
    }

    fn end(&self, session: &mut ClientSession, next: Phase) {
        if let Phase::Live { id, validity } = std::mem::replace(&mut session.phase, next) {
            let _ = validity.send(false);
            self.server.tree().end_session(id);
        }
    }
}

impl Default for StandaloneRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StandaloneRegistry {
    fn drop(&mut self) {
        let mut session = std::mem::take(&mut *self.session());
        self.end(&mut session, Phase::Closed);
        self.server.tree().clients.remove(&self.client_id);
    }
}

impl fmt::Debug for StandaloneRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandaloneRegistry")
            .field("client_id", &self.client_id)
            .field("state", &self.states.current())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Registry for StandaloneRegistry {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn connect(&self, _timeout: Duration) -> Result<()> {
        let mut session = self.session();
        match session.phase {
            Phase::Live { .. } => return Ok(()),
            Phase::Closed => return Err(RegistryError::Closed),
            Phase::Unconnected => {}
        }
        self.start_session(&mut session);
        self.states.set(ConnectionState::Connected);
        Ok(())
    }

    fn connection_state(&self) -> Option<ConnectionState> {
        self.states.current()
    }

    fn connection_listener(&self) -> ConnectionListener {
        self.states.listen()
    }

    fn session_timeout(&self) -> Duration {
        Duration::ZERO
    }

    async fn put(&self, key: &str, value: &[u8], mode: Mode) -> Result<()> {
        path::validate_key(key)?;
        let mut session = self.session();
        let (id, _) = Self::live(&session)?;
        self.server.tree().put(id, key, value, mode)?;
        match mode {
            Mode::Ephemeral => session.held.insert(key.to_owned(), value.to_vec()),
            Mode::Persistent => session.held.remove(key),
        };
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        path::validate(key)?;
        self.ensure_live()?;
        Ok(self.server.tree().entries.get(key).map(|e| e.value.clone()))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        path::validate(key)?;
        self.ensure_live()?;
        Ok(self.server.tree().entries.contains_key(key))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        path::validate_key(key)?;
        let mut session = self.session();
        Self::live(&session)?;
        let mut tree = self.server.tree();
        let doomed: Vec<String> = tree.keys_within(key).cloned().collect();
        tree.remove(doomed);
        session.held.retain(|held, _| !path::is_within(key, held));
        Ok(())
    }

    async fn children(&self, parent: &str) -> Result<Vec<String>> {
        path::validate(parent)?;
        self.ensure_live()?;
        let tree = self.server.tree();
        let mut names: Vec<String> = tree
            .keys_within(parent)
            .filter_map(|key| path::child_of(parent, key))
            .map(str::to_owned)
            .collect();
        names.dedup(); // keys are sorted, so equal names are adjacent...
        names.sort(); // ...but "a-b" sorts between "a" and "a/x"; sort for the contract.
        names.dedup();
        Ok(names)
    }

    async fn subscribe(&self, prefix: &str) -> Result<Subscription> {
        path::validate(prefix)?;
        self.ensure_live()?;
        Ok(self.subscribers.subscribe(prefix))
    }

    async fn lock(&self, key: &str, timeout: Option<Duration>) -> Result<LockGuard> {
        path::validate_key(key)?;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let freed = {
                let (session, validity) = Self::live(&self.session())?;
                let mut tree = self.server.tree();
                let slot = tree.locks.entry(key.to_owned()).or_default();
                if slot.holder.is_none() {
                    slot.last_token += 1;
                    slot.holder = Some((session, slot.last_token));
                    let release = StandaloneLockRelease {
                        server: Arc::downgrade(&self.server.shared),
                        key: key.to_owned(),
                        holder: (session, slot.last_token),
                    };
                    return Ok(LockGuard::new(
                        key,
                        slot.last_token,
                        validity,
                        Box::new(release),
                    ));
                }
                slot.freed.clone()
            };
            let notified = freed.notified();
            tokio::pin!(notified);
            // Register for the wake-up, then re-check: a release between the check above and
            // here is not missed.
            notified.as_mut().enable();
            if self
                .server
                .tree()
                .locks
                .get(key)
                .is_some_and(|s| s.holder.is_none())
            {
                continue;
            }
            match deadline {
                None => notified.await,
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(RegistryError::LockTimeout {
                            path: key.to_owned(),
                            waited: timeout.unwrap_or_default(),
                        });
                    }
                }
            }
        }
    }

    async fn close(&self) -> Result<()> {
        {
            let mut session = self.session();
            self.end(&mut session, Phase::Closed);
            session.held.clear();
        }
        self.subscribers.close_all();
        self.states.close();
        let mut tree = self.server.tree();
        tree.clients.remove(&self.client_id);
        // Wake this client's own waiters so they see `Closed` instead of waiting forever.
        for slot in tree.locks.values() {
            slot.freed.notify_waiters();
        }
        Ok(())
    }
}

struct StandaloneLockRelease {
    server: Weak<Shared>,
    key: String,
    holder: (u64, u64),
}

#[async_trait]
impl LockRelease for StandaloneLockRelease {
    async fn release(self: Box<Self>) -> Result<()> {
        self.release_in_background();
        Ok(())
    }

    /// Releasing is a memory update: done at once even without a runtime.
    fn release_in_background(self: Box<Self>) {
        let Some(shared) = self.server.upgrade() else {
            return;
        };
        let server = StandaloneServer { shared };
        let mut tree = server.tree();
        if let Some(slot) = tree.locks.get_mut(&self.key) {
            // Only the holder that was granted this token may free it.
            if slot.holder == Some(self.holder) {
                slot.holder = None;
                slot.freed.notify_waiters();
            }
        }
    }
}

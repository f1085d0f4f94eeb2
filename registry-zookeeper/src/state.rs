//! The client's state machine: which session serves calls, the ephemeral keys the client holds,
//! and every transition with the connection state it reports. The facade (`client.rs`) connects
//! and closes; the supervisor task (`supervisor.rs`) follows each session and replaces a lost
//! one through the narrow functions below.
//!
//! # Phases
//! ```text
//!              connect                         the session ends (expired, moved, closed)
//! Unconnected ────────▶ Live { Some(session) } ──────────────────────▶ Live { None }
//!                                 ▲                                          │
//!                                 └──────── a new session, restored ─────────┘
//!
//! every phase ── close or drop ──▶ Closed
//! ```
//! Reported connection states: `Connected` on connect and when a restored session is installed;
//! while a session lives, its `Disconnected` is `Suspended` and its `SyncConnected` after that is
//! `Reconnected` ([`Shared::follow`]); `SessionLost` when it ends. Calls are served only by a
//! live session that is not suspended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use registry_api::{
    ConnectionListener, ConnectionState, ConnectionStates, Mode, RegistryError, Subscribers, path,
};
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use crate::config::ZookeeperConfig;
use crate::error::BACKEND;
use crate::session::Session;
use crate::watch::WatchHandle;

/// How long `close` waits for the server to confirm the end of the session.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The state shared by the client and its supervisor task.
pub(crate) struct Shared {
    pub(crate) config: ZookeeperConfig,
    pub(crate) subscribers: Subscribers,
    states: ConnectionStates,
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

/// What a closed client still has to end: taken out of the `Live` phase by [`Shared::close`].
pub(crate) struct Ending {
    session: Option<Arc<Session>>,
    watch: Arc<WatchHandle>,
    supervisor: JoinHandle<()>,
}

impl Shared {
    pub(crate) fn new(config: ZookeeperConfig) -> Self {
        Self {
            config,
            subscribers: Subscribers::new(),
            states: ConnectionStates::new(),
            phase: Mutex::new(Phase::Unconnected),
            held: Mutex::new(BTreeMap::new()),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

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

    /// The current connection state; `None` before the first connect.
    pub(crate) fn connection_state(&self) -> Option<ConnectionState> {
        self.states.current()
    }

    /// A listener for connection-state changes.
    pub(crate) fn listen(&self) -> ConnectionListener {
        self.states.listen()
    }

    /// The session in service, live or suspended; `None` while there is none.
    pub(crate) fn current_session(&self) -> Option<Arc<Session>> {
        match &*self.phase() {
            Phase::Live { session, .. } => session.clone(),
            _ => None,
        }
    }

    /// The session for a call, or why there is none usable now.
    pub(crate) fn session(&self) -> Result<Arc<Session>, RegistryError> {
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

    /// The watcher task's handle while the client is open.
    pub(crate) fn watch(&self) -> Option<Arc<WatchHandle>> {
        match &*self.phase() {
            Phase::Live { watch, .. } => Some(watch.clone()),
            _ => None,
        }
    }

    /// Waits for any `connect` in progress, and holds off others while the guard lives.
    pub(crate) async fn connecting(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.connecting.lock().await
    }

    /// Whether `connect` has a first session to build: `Ok(false)` when it has one already.
    pub(crate) fn needs_connecting(&self) -> Result<bool, RegistryError> {
        match &*self.phase() {
            Phase::Live { .. } => Ok(false),
            Phase::Closed => Err(RegistryError::Closed),
            Phase::Unconnected => Ok(true),
        }
    }

    /// `Unconnected → Live`: the first session and its watcher are in service. Reports
    /// `Connected`, then starts the supervisor with `supervise` (so it cannot report anything
    /// before). A client closed meanwhile ends the session instead.
    pub(crate) fn connected(
        &self,
        session: Arc<Session>,
        watch: Arc<WatchHandle>,
        supervise: impl FnOnce() -> JoinHandle<()>,
    ) -> Result<(), RegistryError> {
        let mut phase = self.phase();
        if matches!(*phase, Phase::Closed) {
            session.end(true);
            return Err(RegistryError::Closed);
        }
        self.states.set(ConnectionState::Connected);
        *phase = Phase::Live {
            session: Some(session),
            watch,
            supervisor: supervise(),
        };
        Ok(())
    }

    /// Reports the states of `session` until it ends; returns the terminal state.
    ///
    /// `Disconnected` is `Suspended`; `SyncConnected` after it is `Reconnected`. A reconnection so
    /// quick that the `Disconnected` in between was never observed is still reported as both.
    pub(crate) async fn follow(&self, session: &Session) -> zk::SessionState {
        let mut watcher = session.client().state_watcher();
        let mut state = watcher.peek_state();
        let mut first = true;
        let mut suspended = false;
        loop {
            match state {
                zk::SessionState::Disconnected => {
                    suspended = true;
                    self.states.set(ConnectionState::Suspended);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    if !first && !suspended {
                        self.states.set(ConnectionState::Suspended);
                    }
                    if !first || suspended {
                        self.states.set(ConnectionState::Reconnected);
                    }
                    suspended = false;
                }
                terminal => return terminal,
            }
            first = false;
            state = watcher.changed().await;
        }
    }

    /// `Live { session } → Live { None }`: the session ended; its lock guards turn invalid and
    /// listeners hear `SessionLost`. `false` when the client was closed meanwhile.
    pub(crate) fn session_lost(&self, session: &Session) -> bool {
        match &mut *self.phase() {
            Phase::Live {
                session: current, ..
            } => *current = None,
            _ => return false,
        }
        session.end(false);
        self.states.set(ConnectionState::SessionLost);
        true
    }

    /// `Live { None } → Live { session }`: a new session is restored and in service; listeners
    /// hear `Connected` unless it has ended already (the supervisor then goes round again).
    /// `false` when the client was closed meanwhile.
    pub(crate) fn session_restored(&self, new: &Arc<Session>) -> bool {
        match &mut *self.phase() {
            Phase::Live { session, .. } => *session = Some(new.clone()),
            _ => return false,
        }
        if !new.client().state().is_terminated() {
            self.states.set(ConnectionState::Connected);
        }
        true
    }

    /// `any → Closed`: what is left to end, if the client was open.
    pub(crate) fn close(&self) -> Option<Ending> {
        match std::mem::replace(&mut *self.phase(), Phase::Closed) {
            Phase::Live {
                session,
                watch,
                supervisor,
            } => Some(Ending {
                session,
                watch,
                supervisor,
            }),
            Phase::Unconnected | Phase::Closed => None,
        }
    }

    /// The rest of `close`: stops the tasks, ends the session and waits (briefly) for the server
    /// to confirm, then ends subscriptions and listeners.
    pub(crate) async fn closed(&self, ending: Option<Ending>) {
        if let Some(Ending {
            session,
            watch,
            supervisor,
        }) = ending
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
        self.held_keys().clear();
        self.subscribers.close_all();
        self.states.close();
    }

    /// `close` without waiting, for a client dropped unclosed: its tasks stop and its session
    /// closes with the last clone of its client.
    pub(crate) fn close_now(&self) {
        if let Some(Ending {
            session,
            supervisor,
            ..
        }) = self.close()
        {
            supervisor.abort();
            if let Some(session) = session {
                session.end(true);
            }
            // The watch task stops when its handle drops; the session closes with the last
            // clone of its client.
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

    /// A `put` of `key` is about to be sent.
    pub(crate) fn pending_put(&self, key: &str, value: &[u8], mode: Mode) -> PendingWrite<'_> {
        let change = match mode {
            Mode::Ephemeral => HeldChange::Hold(key.to_owned(), value.to_vec()),
            Mode::Persistent => HeldChange::Forget(key.to_owned()),
        };
        PendingWrite {
            shared: self,
            change: Some(change),
        }
    }

    /// A `delete` of `key` (and everything below it) is about to be sent.
    pub(crate) fn pending_delete(&self, key: &str) -> PendingWrite<'_> {
        PendingWrite {
            shared: self,
            change: Some(HeldChange::ForgetWithin(key.to_owned())),
        }
    }
}

/// How a write changes the record of held ephemeral keys.
enum HeldChange {
    Hold(String, Vec<u8>),
    Forget(String),
    ForgetWithin(String),
}

/// A `put` or `delete` in flight, for the record of the ephemeral keys that a new session
/// re-creates. The record follows the call when it succeeds, and also when the call is dropped
/// half-way: the server may then have applied the write unseen, so the record follows what the
/// caller asked (a dropped delete is never undone by a later session). A call that fails leaves
/// the record as it was.
pub(crate) struct PendingWrite<'a> {
    shared: &'a Shared,
    change: Option<HeldChange>,
}

impl PendingWrite<'_> {
    /// The call ended: a successful call is recorded, a failed one leaves the record as it was.
    pub(crate) fn settle<T>(mut self, outcome: &Result<T, RegistryError>) {
        if outcome.is_err() {
            self.change = None;
        }
    }
}

impl Drop for PendingWrite<'_> {
    fn drop(&mut self) {
        let Some(change) = self.change.take() else {
            return;
        };
        let mut held = self.shared.held_keys();
        match change {
            HeldChange::Hold(key, value) => {
                held.insert(key, value);
            }
            HeldChange::Forget(key) => {
                held.remove(&key);
            }
            HeldChange::ForgetWithin(key) => {
                held.retain(|held, _| !path::is_within(&key, held));
            }
        }
    }
}

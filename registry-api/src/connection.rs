//! Connection states of a registry client and the listeners that follow them.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

/// The state of a client's connection and session.
///
/// The usual life: `Connected`, then any number of `Suspended` → `Reconnected` round trips; when
/// the session itself ends, `SessionLost`, after which the client builds a new session by itself,
/// re-creates the ephemeral keys it still holds, and reports `Connected` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// A new session is established (first connect, or after `SessionLost`).
    Connected,
    /// The connection is lost; the session may still be alive on the server. Ephemerals and locks
    /// are kept if the connection comes back within the session timeout. Callers that must not act
    /// on a possibly-dead session bound this state with their own clock.
    Suspended,
    /// The connection is back and the session survived: nothing was lost.
    Reconnected,
    /// The session is gone: its ephemeral keys were removed and its locks freed. Lock guards of the
    /// session report themselves invalid and leadership is revoked.
    SessionLost,
}

impl ConnectionState {
    /// Whether calls can be expected to succeed in this state.
    pub fn is_connected(self) -> bool {
        matches!(self, Self::Connected | Self::Reconnected)
    }
}

/// Receives every connection-state change of one client, in order. The first item is the state
/// when the listener was added (if the client had connected by then).
pub struct ConnectionListener {
    states: mpsc::UnboundedReceiver<ConnectionState>,
}

impl ConnectionListener {
    /// The next state change; `None` once the client is closed.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a dropped call loses no state change.
    pub async fn next(&mut self) -> Option<ConnectionState> {
        self.states.recv().await
    }

    /// The next state change if one is already buffered.
    pub fn try_next(&mut self) -> Option<ConnectionState> {
        self.states.try_recv().ok()
    }
}

impl fmt::Debug for ConnectionListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionListener").finish_non_exhaustive()
    }
}

/// The current connection state of a client and its listeners; backends own one and call
/// [`ConnectionStates::set`] on every change. Cloning shares it.
#[derive(Clone, Default)]
pub struct ConnectionStates {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    current: Option<ConnectionState>,
    listeners: Vec<mpsc::UnboundedSender<ConnectionState>>,
    closed: bool,
}

impl ConnectionStates {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state, or `None` before the first connect.
    pub fn current(&self) -> Option<ConnectionState> {
        self.lock().current
    }

    /// A new listener; it first receives the current state, then every change.
    pub fn listen(&self) -> ConnectionListener {
        let (sender, states) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        if !inner.closed {
            if let Some(current) = inner.current {
                let _ = sender.send(current);
            }
            inner.listeners.push(sender);
        }
        ConnectionListener { states }
    }

    /// Records a new state and tells every listener. Setting the state it already has does
    /// nothing, so listeners only hear real changes.
    pub fn set(&self, state: ConnectionState) {
        let mut inner = self.lock();
        if inner.closed || inner.current == Some(state) {
            return;
        }
        tracing::debug!(?state, "registry connection state");
        inner.current = Some(state);
        inner
            .listeners
            .retain(|listener| listener.send(state).is_ok());
    }

    /// Ends every listener (the client was closed); later `set` calls are ignored.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.listeners.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a single assignment or retain: a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl fmt::Debug for ConnectionStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionStates")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionState::*;

    #[test]
    fn listeners_get_the_current_state_then_real_changes_only() {
        let states = ConnectionStates::new();
        let mut early = states.listen();
        states.set(Connected);
        let mut late = states.listen();
        states.set(Connected);
        states.set(Suspended);
        states.set(Reconnected);
        let drain =
            |l: &mut ConnectionListener| std::iter::from_fn(|| l.try_next()).collect::<Vec<_>>();
        assert_eq!(drain(&mut early), [Connected, Suspended, Reconnected]);
        assert_eq!(drain(&mut late), [Connected, Suspended, Reconnected]);
        states.close();
        states.set(SessionLost);
        assert_eq!(states.current(), Some(Reconnected));
    }
}

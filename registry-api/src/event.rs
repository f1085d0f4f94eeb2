//! What subscribers are told: a key was added, updated or removed.

use std::fmt;

/// How long a key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Lives until deleted.
    Persistent,
    /// Lives as long as the session of the client that put it. When the session ends for any
    /// reason (close, crash, network loss past the session timeout) the key is removed and
    /// subscribers receive [`EventKind::Removed`]. After a session loss the client re-creates the
    /// ephemeral keys it still holds in its new session.
    Ephemeral,
}

/// The kind of change an [`Event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key did not exist and now does.
    Added,
    /// The key existed and its value was written again.
    Updated,
    /// The key no longer exists (deleted, or its owner's session ended).
    Removed,
}

/// One change to one key under a subscribed prefix.
///
/// `value` is the key's value after the change, and for [`EventKind::Removed`] the last value the
/// key held, so that a subscriber can tell which node left without a cache of its own.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub path: String,
    pub value: Vec<u8>,
}

impl Event {
    pub fn new(kind: EventKind, path: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            kind,
            path: path.into(),
            value: value.into(),
        }
    }

    /// The value as UTF-8 text, lossily; for logs and tests.
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({} = {:?})", self.kind, self.path, self.value_str())
    }
}

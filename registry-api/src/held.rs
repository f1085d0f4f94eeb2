//! The record of the ephemeral keys a client holds, which it re-creates in every new session.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::Mode;
use crate::path;

/// The ephemeral keys a client holds, with their values: what a backend re-creates after
/// [`crate::ConnectionState::SessionLost`]. Cloning shares the record.
///
/// Every `put` and `delete` goes through a [`PendingWrite`], so that the record follows the
/// `# Cancellation safety` contract of [`crate::Registry::put`] and [`crate::Registry::delete`]:
/// a successful call is recorded, a failed one is not, and a call dropped half-way (whose
/// write the server may have applied unseen) is recorded as the caller asked.
///
/// ```
/// use registry_api::{HeldEphemerals, Mode, RegistryError};
///
/// let held = HeldEphemerals::new();
/// let put = held.pending_put("/nodes/a", b"v1", Mode::Ephemeral);
/// put.settle(&Ok::<(), RegistryError>(()));
/// drop(held.pending_put("/nodes/b", b"v2", Mode::Ephemeral)); // dropped: recorded as asked
/// held.pending_put("/nodes/c", b"v3", Mode::Ephemeral)
///     .settle(&Err::<(), _>(RegistryError::Closed)); // failed: not recorded
/// held.pending_delete("/nodes/b").settle(&Ok::<(), RegistryError>(()));
/// assert_eq!(held.snapshot(), [("/nodes/a".to_owned(), b"v1".to_vec())]);
/// ```
#[derive(Clone, Default)]
pub struct HeldEphemerals {
    keys: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl HeldEphemerals {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `put` of `key` is about to be sent; settle the returned value with its outcome.
    pub fn pending_put(&self, key: &str, value: &[u8], mode: Mode) -> PendingWrite {
        let change = match mode {
            Mode::Ephemeral => Change::Hold(key.to_owned(), value.to_vec()),
            Mode::Persistent => Change::Forget(key.to_owned()),
        };
        self.pending(change)
    }

    /// A `delete` of `key` and everything below it is about to be sent.
    pub fn pending_delete(&self, key: &str) -> PendingWrite {
        self.pending(Change::ForgetWithin(key.to_owned()))
    }

    /// The held keys and their values, sorted by key: what a new session re-creates.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Stops re-creating `key`, if it is still held with `value` (another client owns it now).
    pub fn forget(&self, key: &str, value: &[u8]) {
        let mut keys = self.lock();
        if keys.get(key).is_some_and(|held| held == value) {
            keys.remove(key);
        }
    }

    /// Forgets every key (the client was closed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn pending(&self, change: Change) -> PendingWrite {
        PendingWrite {
            held: self.clone(),
            change: Some(change),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // Every update is one insert, remove or retain: a poisoned lock is still consistent.
        self.keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl fmt::Debug for HeldEphemerals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.lock().keys()).finish()
    }
}

enum Change {
    Hold(String, Vec<u8>),
    Forget(String),
    ForgetWithin(String),
}

/// A `put` or `delete` in flight (see [`HeldEphemerals`]): recorded when it is settled with a
/// success or dropped unsettled, not recorded when settled with an error.
#[must_use = "settle it with the outcome of the call"]
pub struct PendingWrite {
    held: HeldEphemerals,
    change: Option<Change>,
}

impl PendingWrite {
    /// The call ended: a success is recorded, an error leaves the record as it was.
    pub fn settle<T, E>(mut self, outcome: &Result<T, E>) {
        if outcome.is_err() {
            self.change = None;
        }
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        let Some(change) = self.change.take() else {
            return;
        };
        let mut keys = self.held.lock();
        match change {
            Change::Hold(key, value) => {
                keys.insert(key, value);
            }
            Change::Forget(key) => {
                keys.remove(&key);
            }
            Change::ForgetWithin(prefix) => keys.retain(|key, _| !path::is_within(&prefix, key)),
        }
    }
}

impl fmt::Debug for PendingWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingWrite").finish_non_exhaustive()
    }
}

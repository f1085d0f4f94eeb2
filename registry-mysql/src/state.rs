//! The client's state machine: the phase of its session, the ephemeral keys it holds, and every
//! transition between phases with the connection state each one reports. Nothing here does I/O:
//! the facade (`registry.rs`) connects and closes, calls report failures through
//! [`Shared::failed`], and the background task (`session.rs`) heartbeats and rebuilds.
//!
//! # Phases
//! ```text
//!              connect               a heartbeat or a call fails
//! Unconnected ────────▶ Live { id } ─────────────────────────────▶ Suspended { id }
//!                        ▲   │      ◀─────────────────────────────       │
//!                        │   │           a heartbeat succeeds            │
//!                        │   └────────────────┬──────────────────────────┘
//!                        │                    │ a heartbeat matched no row, or none succeeded
//!                        │                    ▼ for a whole session timeout
//!                        └──────────── Lost { stale }
//!                  a new row, the old ones purged, the held ephemerals re-created
//!
//! every phase ── close ──▶ Closed
//! ```
//! Reported connection states: `Connected` on entering `Live` from `Unconnected` or `Lost`,
//! `Suspended` on `Live → Suspended`, `Reconnected` on `Suspended → Live`, `SessionLost` on
//! entering `Lost`. Lock guards of a session watch its validity, which turns false on `Lost`
//! and `Closed`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use registry_api::{
    ConnectionListener, ConnectionState, ConnectionStates, Mode, RegistryError, Subscribers, path,
};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};

use crate::error::{BACKEND, OpError};
use crate::link::Link;
use crate::schema::Tables;
use crate::timing::Timing;
use sqlx::mysql::MySqlConnectOptions;

/// What the client, its lock guards and its background task share.
pub(crate) struct Shared {
    pub tables: Tables,
    /// The connection for calls, polls and purges.
    pub link: Link,
    /// The connection for heartbeats only.
    pub beat_link: Link,
    pub timing: Timing,
    pub client_name: String,
    pub subscribers: Subscribers,
    /// The event log position delivered so far; held while polling so deliveries never
    /// interleave.
    pub cursor: tokio::sync::Mutex<i64>,
    /// Wakes this client's lock waiters when one of its locks is released.
    pub lock_freed: Notify,
    states: ConnectionStates,
    session: Mutex<Session>,
    /// Asks the background task for an early heartbeat (after a failed call).
    wake: Notify,
    next_claim: AtomicI64,
    /// When the last heartbeat (or registration) that succeeded was sent.
    last_contact: Mutex<Option<std::time::Instant>>,
}

struct Session {
    phase: Phase,
    /// The ephemeral keys this client holds, re-created in a new session after a session loss.
    held: BTreeMap<String, Vec<u8>>,
    /// `true` while the current session lives; lock guards of the session watch it.
    validity: watch::Sender<bool>,
}

#[derive(Debug, Clone)]
enum Phase {
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

/// What the background task does at its next turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Duty {
    /// Heartbeat (and poll for) session `id`, live or suspended.
    Heartbeat(i64),
    /// Build a new session: the last one is lost.
    Rebuild,
    /// Nothing any more: the client is closed (or was never connected).
    Stop,
}

impl Shared {
    pub(crate) fn new(
        tables: Tables,
        options: MySqlConnectOptions,
        timing: Timing,
        client_name: String,
    ) -> Self {
        let (validity, _) = watch::channel(false);
        Self {
            link: Link::calls(options.clone(), timing.call_limits(), &tables.clients),
            beat_link: Link::heartbeats(options, timing.heartbeat_limits()),
            tables,
            timing,
            client_name,
            subscribers: Subscribers::new(),
            cursor: tokio::sync::Mutex::new(0),
            lock_freed: Notify::new(),
            states: ConnectionStates::new(),
            session: Mutex::new(Session {
                phase: Phase::Unconnected,
                held: BTreeMap::new(),
                validity,
            }),
            wake: Notify::new(),
            next_claim: AtomicI64::new(1),
            last_contact: Mutex::new(None),
        }
    }

    /// Records that a heartbeat or registration sent at `sent` succeeded.
    pub(crate) fn contacted(&self, sent: tokio::time::Instant) {
        let mut last = self
            .last_contact
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let sent = sent.into_std();
        if last.is_none_or(|last| last < sent) {
            *last = Some(sent);
        }
    }

    /// When the last successful heartbeat or registration was sent; see
    /// [`registry_api::Registry::last_contact`].
    pub(crate) fn last_contact(&self) -> Option<std::time::Instant> {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // Every update under this lock is a plain assignment: a poisoned lock is consistent.
        self.session
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

    /// The live session's id and a validity receiver for lock guards.
    pub(crate) fn live(&self) -> Result<(i64, watch::Receiver<bool>), RegistryError> {
        let session = self.session();
        match &session.phase {
            Phase::Live { id } => Ok((*id, session.validity.subscribe())),
            Phase::Closed => Err(RegistryError::Closed),
            Phase::Unconnected | Phase::Suspended { .. } | Phase::Lost { .. } => {
                Err(RegistryError::NotConnected { backend: BACKEND })
            }
        }
    }

    /// The id of the current session's row while there is a live or suspended session.
    pub(crate) fn session_id(&self) -> Option<i64> {
        match self.session().phase {
            Phase::Live { id } | Phase::Suspended { id } => Some(id),
            _ => None,
        }
    }

    /// A fresh acquisition id for a `lock` call.
    pub(crate) fn next_claim(&self) -> i64 {
        self.next_claim.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `connect` has a first session to build: `Ok(false)` when it has one already.
    pub(crate) fn needs_connecting(&self) -> Result<bool, RegistryError> {
        match self.session().phase {
            Phase::Unconnected => Ok(true),
            Phase::Closed => Err(RegistryError::Closed),
            _ => Ok(false),
        }
    }

    /// `Unconnected → Live`: the first session, row `id`, is registered.
    pub(crate) fn connected(&self, id: i64) {
        self.link.record_for(id);
        {
            let mut session = self.session();
            session.phase = Phase::Live { id };
            session.validity.send_replace(true);
        }
        tracing::info!(client = id, tables = %self.tables.clients, "registry session established");
        self.states.set(ConnectionState::Connected);
    }

    /// What the background task does next.
    pub(crate) fn duty(&self) -> Duty {
        match self.session().phase {
            Phase::Closed | Phase::Unconnected => Duty::Stop,
            Phase::Lost { .. } => Duty::Rebuild,
            Phase::Live { id } | Phase::Suspended { id } => Duty::Heartbeat(id),
        }
    }

    /// Asks the background task for an early heartbeat.
    pub(crate) fn wake_session(&self) {
        self.wake.notify_one();
    }

    /// Completes when someone asked for an early heartbeat.
    pub(crate) fn woken(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// `Suspended → Live`: a heartbeat of session `id` succeeded.
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

    /// `Live → Suspended`: a heartbeat of session `id` failed, or a call lost the connection.
    pub(crate) fn suspend(&self, id: i64, error: &OpError) {
        let mut session = self.session();
        if matches!(session.phase, Phase::Live { id: s } if s == id) {
            session.phase = Phase::Suspended { id };
            drop(session);
            tracing::warn!(client = id, %error, "registry heartbeat failed; suspended");
            self.states.set(ConnectionState::Suspended);
        }
    }

    /// `Live | Suspended → Lost`: session `id` is over; lock guards turn invalid and listeners
    /// hear `SessionLost`.
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

    /// The client rows of lost sessions still to purge, while the session is lost.
    pub(crate) fn lost_rows(&self) -> Option<Vec<i64>> {
        match &self.session().phase {
            Phase::Lost { stale } => Some(stale.clone()),
            _ => None,
        }
    }

    /// A rebuild registered row `id`: until the rebuild completes it is purged with the lost
    /// ones (by the next attempt or by `close`). `false` when the session is no longer lost.
    pub(crate) fn rebuild_registered(&self, id: i64) -> bool {
        match &mut self.session().phase {
            Phase::Lost { stale } => {
                stale.push(id);
                self.link.record_for(id);
                true
            }
            _ => false,
        }
    }

    /// A rebuild purged the lost row `id`.
    pub(crate) fn rebuild_purged(&self, id: i64) {
        if let Phase::Lost { stale } = &mut self.session().phase {
            stale.retain(|stale| *stale != id);
        }
    }

    /// `Lost → Live`: the new session, row `id`, holds every ephemeral key again. `false` when
    /// the session is no longer lost (the client was closed meanwhile).
    pub(crate) fn rebuilt(&self, id: i64) -> bool {
        {
            let mut session = self.session();
            if !matches!(session.phase, Phase::Lost { .. }) {
                return false;
            }
            session.phase = Phase::Live { id };
        }
        tracing::info!(client = id, "registry session re-established");
        self.states.set(ConnectionState::Connected);
        true
    }

    /// `any → Closed`: lock guards turn invalid and the client forgets its ephemeral keys.
    /// Returns the client rows to purge, or `None` when the client was closed already.
    pub(crate) fn close(&self) -> Option<Vec<i64>> {
        let mut session = self.session();
        let doomed = match std::mem::replace(&mut session.phase, Phase::Closed) {
            Phase::Closed => return None,
            Phase::Unconnected => Vec::new(),
            Phase::Live { id } | Phase::Suspended { id } => vec![id],
            Phase::Lost { stale } => stale,
        };
        session.validity.send_replace(false);
        session.held.clear();
        Some(doomed)
    }

    /// The last step of `close`, after the rows are purged: subscriptions and listeners end and
    /// this client's lock waiters wake up to see `Closed`.
    pub(crate) fn closed(&self) {
        self.subscribers.close_all();
        self.states.close();
        self.lock_freed.notify_waiters();
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

    /// The ephemeral keys this client holds, with their values.
    pub(crate) fn held(&self) -> Vec<(String, Vec<u8>)> {
        self.session()
            .held
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Stops re-creating `key` (it cannot be re-created in the new session).
    pub(crate) fn forget_held(&self, key: &str) {
        self.session().held.remove(key);
    }

    /// A `put` of `key` is about to be sent.
    pub(crate) fn pending_put(&self, key: &str, value: &[u8], mode: Mode) -> PendingWrite<'_> {
        let change = match mode {
            Mode::Ephemeral => HeldChange::Hold(key.to_owned(), value.to_vec()),
            Mode::Persistent => HeldChange::Forget(key.to_owned()),
        };
        PendingWrite::new(self, change)
    }

    /// A `delete` of `key` (and everything below it) is about to be sent.
    pub(crate) fn pending_delete(&self, key: &str) -> PendingWrite<'_> {
        PendingWrite::new(self, HeldChange::ForgetWithin(key.to_owned()))
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
/// half-way: the write may then have committed unseen, so the record follows what the caller
/// asked (a dropped delete is never undone by a later session rebuild). A call that fails leaves
/// the record as it was.
pub(crate) struct PendingWrite<'a> {
    shared: &'a Shared,
    change: Mutex<Option<HeldChange>>,
}

impl<'a> PendingWrite<'a> {
    fn new(shared: &'a Shared, change: HeldChange) -> Self {
        Self {
            shared,
            change: Mutex::new(Some(change)),
        }
    }

    fn take(&self) -> Option<HeldChange> {
        self.change
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }

    /// The write committed: record it now. Called while the call still holds the connection, so
    /// a session rebuild cannot run between the commit and the record and miss the key.
    pub(crate) fn committed(&self) {
        if let Some(change) = self.take() {
            self.apply(change);
        }
    }

    /// The call ended: a successful call is recorded (if [`PendingWrite::committed`] has not
    /// done so yet), a failed one leaves the record as it was.
    pub(crate) fn settle<T>(self, outcome: &Result<T, RegistryError>) {
        if outcome.is_ok() {
            self.committed();
        } else {
            self.take();
        }
    }

    fn apply(&self, change: HeldChange) {
        let mut session = self.shared.session();
        match change {
            HeldChange::Hold(key, value) => {
                session.held.insert(key, value);
            }
            HeldChange::Forget(key) => {
                session.held.remove(&key);
            }
            HeldChange::ForgetWithin(key) => {
                session.held.retain(|held, _| !path::is_within(&key, held));
            }
        }
    }
}

impl Drop for PendingWrite<'_> {
    fn drop(&mut self) {
        if let Some(change) = self.take() {
            self.apply(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::mysql::MySqlConnectOptions;

    use super::*;

    fn shared() -> Shared {
        let options = MySqlConnectOptions::from_str("mysql://127.0.0.1:1/db").unwrap();
        Shared::new(
            Tables::new("t_"),
            options,
            Timing::new(200, 1_000),
            "test".to_owned(),
        )
    }

    fn drain(listener: &mut ConnectionListener) -> Vec<ConnectionState> {
        std::iter::from_fn(|| listener.try_next()).collect()
    }

    #[test]
    fn a_session_goes_live_suspended_back_lost_and_rebuilt() {
        use ConnectionState::*;
        let shared = shared();
        let mut listener = shared.listen();
        assert_eq!(shared.needs_connecting(), Ok(true));
        assert_eq!(shared.duty(), Duty::Stop);
        shared.connected(7);
        let (id, validity) = shared.live().unwrap();
        assert_eq!((id, *validity.borrow()), (7, true));
        assert_eq!(shared.needs_connecting(), Ok(false));

        shared.suspend(7, &OpError::TimedOut);
        assert_eq!(
            shared.live().unwrap_err(),
            RegistryError::NotConnected { backend: BACKEND }
        );
        assert_eq!(shared.duty(), Duty::Heartbeat(7));
        shared.resume(7);
        assert!(shared.live().is_ok());

        shared.lose(8, "another session's news");
        assert_eq!(
            shared.session_id(),
            Some(7),
            "only the current session can be lost"
        );
        shared.lose(7, "row purged");
        assert!(!*validity.borrow(), "guards of a lost session turn invalid");
        assert_eq!(shared.duty(), Duty::Rebuild);
        assert!(shared.rebuild_registered(9));
        assert_eq!(shared.lost_rows(), Some(vec![7, 9]));
        shared.rebuild_purged(7);
        assert!(shared.rebuilt(9));
        assert_eq!(shared.session_id(), Some(9));
        assert_eq!(
            drain(&mut listener),
            [Connected, Suspended, Reconnected, SessionLost, Connected]
        );

        assert_eq!(shared.close(), Some(vec![9]));
        assert_eq!(shared.close(), None, "closing twice is not an error");
        assert_eq!(shared.live().unwrap_err(), RegistryError::Closed);
        assert!(!shared.rebuilt(10), "a closed client is never rebuilt");
        assert_eq!(shared.needs_connecting(), Err(RegistryError::Closed));
    }

    #[test]
    fn a_close_during_a_rebuild_purges_every_row_it_made() {
        let shared = shared();
        shared.connected(1);
        shared.lose(1, "expired");
        assert!(shared.rebuild_registered(2));
        assert_eq!(shared.close(), Some(vec![1, 2]));
        assert!(!shared.rebuild_registered(3));
    }

    #[test]
    fn the_held_record_follows_completed_and_dropped_writes_but_not_failed_ones() {
        let shared = shared();
        shared.pending_put("/a", b"1", Mode::Ephemeral).committed();
        shared
            .pending_put("/b/c", b"2", Mode::Ephemeral)
            .committed();
        let failed = shared.pending_put("/a", b"lost", Mode::Ephemeral);
        failed.settle::<()>(&Err(RegistryError::NotConnected { backend: BACKEND }));
        assert_eq!(
            shared.held(),
            [
                ("/a".to_owned(), b"1".to_vec()),
                ("/b/c".to_owned(), b"2".to_vec())
            ]
        );
        // Dropped half-way: the record follows what the caller asked.
        drop(shared.pending_delete("/b"));
        drop(shared.pending_put("/d", b"3", Mode::Ephemeral));
        assert_eq!(
            shared.held(),
            [
                ("/a".to_owned(), b"1".to_vec()),
                ("/d".to_owned(), b"3".to_vec())
            ]
        );
        shared
            .pending_put("/a", b"4", Mode::Persistent)
            .settle::<()>(&Ok(()));
        assert_eq!(shared.held(), [("/d".to_owned(), b"3".to_vec())]);
    }
}

//! The [`Registry`] trait every backend implements, and [`RegistryExt`] helpers built on it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::connection::{ConnectionListener, ConnectionState};
use crate::error::{RegistryError, Result};
use crate::event::Mode;
use crate::lock::LockGuard;
use crate::subscription::Subscription;

/// A client of a coordination service: a key/value tree with ephemeral keys, change
/// subscriptions, connection states and locks.
///
/// One value of this type is one client with one session at a time. Every method takes `&self`,
/// so share a client with `Arc`.
///
/// # Notable behaviors
/// - Paths follow [`crate::path`]: absolute, `/`-separated, prefixes match on segment boundaries.
/// - `put` creates or overwrites and implies missing parents; `get` of a missing key is `Ok(None)`;
///   `delete` is recursive and deleting a missing key is `Ok(())`.
/// - An implied parent is listed by `children`; whether `get`/`exists` see it is backend-specific
///   (ZooKeeper stores it as an empty node, SQL backends store nothing), so do not rely on it.
/// - Ephemeral keys cannot have children (ZooKeeper forbids it): such a `put` fails with
///   [`RegistryError::InvalidPath`].
/// - A `put` over another live session's ephemeral key fails with [`RegistryError::Conflict`]:
///   nobody overwrites or converts a key whose owner is alive.
/// - After [`ConnectionState::SessionLost`] the client builds a new session by itself, re-creates
///   the ephemeral keys it still holds (without first deleting a live one), re-arms its
///   subscriptions, and reports [`ConnectionState::Connected`]. It never exits the process.
///
/// # Notable errors
/// [`RegistryError::NotConnected`] before `connect` and while suspended, [`RegistryError::Closed`]
/// after `close`, [`RegistryError::InvalidPath`] for malformed paths.
///
/// # Cancellation safety
/// Any call may be dropped at any await point without harming the client: later calls, the
/// session and the other subscriptions carry on. What a dropped call leaves behind is written on
/// each method. In short: reads and `subscribe` leave nothing; `lock` leaves no claim; `close`
/// completes in the background; a dropped `put` or `delete` is like a write whose answer was
/// lost (it may or may not have taken effect), and the client's record of its ephemeral keys
/// follows what the call asked.
#[async_trait]
pub trait Registry: Send + Sync + fmt::Debug + 'static {
    /// The backend's type name, as used in the configuration (`"zookeeper"`).
    fn backend(&self) -> &'static str;

    /// Establishes the first session, waiting at most `timeout`. Calling it again while
    /// connected does nothing.
    ///
    /// # Notable errors
    /// [`RegistryError::ConnectTimeout`] naming the reason (unreachable server, bad credentials).
    ///
    /// # Cancellation safety
    /// Cancel-safe: a dropped call leaves the client unconnected, and `connect` can be called
    /// again. A session it was opening is closed or expires unused after the session timeout
    /// (a MySQL client row registered just before the drop); it holds no ephemeral key or lock.
    async fn connect(&self, timeout: Duration) -> Result<()>;

    /// The current connection state; `None` before the first connect.
    fn connection_state(&self) -> Option<ConnectionState>;

    /// A listener for connection-state changes; it first receives the current state.
    fn connection_listener(&self) -> ConnectionListener;

    /// How long the backend keeps a silent client's session alive: the bound on how long a
    /// crashed client's ephemerals and locks outlive it.
    fn session_timeout(&self) -> Duration;

    /// When the last exchange that proved this client's session alive to the server was
    /// *sent* (a heartbeat, a keep-alive): the server judged the session alive at or after this
    /// instant, so it cannot expire the session before `last_contact + session_timeout` (both
    /// measured at the same rate). A client that loses contact stops acting before then
    /// (issue 12, finding 3). `None` when the backend cannot say (the caller then counts from
    /// when `Suspended` was reported); the default.
    fn last_contact(&self) -> Option<std::time::Instant> {
        None
    }

    /// Creates or overwrites `path` with `value`; missing parents are implied.
    ///
    /// # Cancellation safety
    /// Not atomic under cancellation, like any write whose answer was lost: a dropped call may
    /// or may not have written the value (a server can commit a write whose answer never came
    /// back), and on ZooKeeper it may have created the key's missing parents only. Either way
    /// the client's record of its ephemeral keys follows the call: after a later session loss
    /// the client re-creates the key as this call asked (with [`Mode::Ephemeral`]) or no longer
    /// re-creates it (with [`Mode::Persistent`]). To know the outcome, `get` the key or repeat
    /// the `put`, which is idempotent.
    async fn put(&self, path: &str, value: &[u8], mode: Mode) -> Result<()>;

    /// The value at `path`, or `None` if there is none.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a read changes nothing.
    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>>;

    /// Whether a value is stored at `path`.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a read changes nothing.
    async fn exists(&self, path: &str) -> Result<bool>;

    /// Deletes `path` and everything below it. Each deleted key is reported as
    /// [`crate::EventKind::Removed`]. Deleting a missing path is not an error.
    ///
    /// # Cancellation safety
    /// Not atomic under cancellation: a dropped call may have deleted all of the keys, none, or
    /// (on ZooKeeper, which deletes the deepest keys first, one at a time) some of them;
    /// subscribers see `Removed` for exactly those deleted. Either way the client no longer
    /// re-creates its ephemeral keys at or below `path` after a session loss. Repeat the
    /// `delete` to finish it.
    async fn delete(&self, path: &str) -> Result<()>;

    /// The names of the direct children of `path` (including implied parents), sorted; empty if
    /// there are none.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a read changes nothing.
    async fn children(&self, path: &str) -> Result<Vec<String>>;

    /// Subscribes to changes of `prefix` and everything below it. Every change committed after
    /// this call returns is delivered, in commit order per key. Dropping the subscription
    /// unsubscribes.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a dropped call subscribes to nothing (a watch the backend armed for it is
    /// dropped again), and the client's other subscriptions lose no event.
    async fn subscribe(&self, prefix: &str) -> Result<Subscription>;

    /// Takes the lock at `path`, waiting at most `timeout` (`None`: until it is free).
    ///
    /// # Notable errors
    /// [`RegistryError::LockTimeout`] when `timeout` passed while another holder kept it.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a dropped call leaves no claim behind, whether it was waiting or had an
    /// acquisition in flight. Backends delete its contender node (ZooKeeper) or free an
    /// acquisition that may have committed unseen (MySQL) in the background, without waiting
    /// for the session to end, so the next contender gets the lock as soon as the holder
    /// releases it. The conformance case `a_dropped_lock_call_leaves_no_claim_behind` checks it.
    async fn lock(&self, path: &str, timeout: Option<Duration>) -> Result<LockGuard>;

    /// Ends the session: its ephemerals are removed (subscribers of other clients see
    /// `Removed`), its locks freed, its subscriptions and listeners ended. Later calls fail
    /// with [`RegistryError::Closed`]. Closing twice is not an error.
    ///
    /// # Cancellation safety
    /// Cancel-safe: the client is `Closed` from the call's first step, and a dropped call
    /// completes the rest in the background (the session ends, subscriptions and listeners
    /// end). A call dropped while it still waited for a `connect` in progress did nothing.
    async fn close(&self) -> Result<()>;
}

/// Conveniences built from [`Registry`]'s methods, available on every registry.
#[async_trait]
pub trait RegistryExt: Registry {
    /// Like [`Registry::lock`] with a timeout, but a timeout is `Ok(None)` instead of an error.
    ///
    /// # Cancellation safety
    /// As [`Registry::lock`]: a dropped call leaves no claim behind.
    async fn try_lock(&self, path: &str, timeout: Duration) -> Result<Option<LockGuard>> {
        match self.lock(path, Some(timeout)).await {
            Ok(guard) => Ok(Some(guard)),
            Err(RegistryError::LockTimeout { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Waits until the connection state satisfies `accept`, at most `timeout`; returns the state.
    ///
    /// # Cancellation safety
    /// Cancel-safe: it only listens.
    async fn wait_for_state(
        &self,
        timeout: Duration,
        accept: fn(ConnectionState) -> bool,
    ) -> Option<ConnectionState> {
        let mut listener = self.connection_listener();
        tokio::time::timeout(timeout, async {
            while let Some(state) = listener.next().await {
                if accept(state) {
                    return Some(state);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}

impl<R: Registry + ?Sized> RegistryExt for R {}

//! Self-fencing: when this node must stop acting because its registry session may be over.
//!
//! A task of its own, beside the supervisor: the supervisor's handlers await registry calls
//! (publishing the node's load, confirming a peer's `Removed`) that a partition can hold for
//! seconds, and a node must stop acting on time whatever it is waiting for. Found by
//! `tests/tests/acceptance/node_partitions.rs`: a node cut from etcd acted 0.4-0.7 s after a
//! peer had adopted its apps, because its supervisor sat in a black-holed `put` while the
//! deadline passed.
//!
//! # When it stops the node
//! - `SessionLost`: at once.
//! - `Suspended`: two thirds of the session timeout after the last exchange the server answered
//!   (`Registry::last_contact`), or after the report where the backend cannot say.
//! - No report at all, but no answered exchange for two thirds of the session timeout (a client
//!   stuck behind a stalled connection may report nothing): at once.
//!
//! It only ever stops; resuming (re-registering, re-reading the live set) is the supervisor's,
//! which reads [`Fence::stopped_for_stale_contact`] to know it should resume once the contact is
//! fresh again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registry_api::{ConnectionListener, ConnectionState, Registry};
use task_dispatch::Dispatcher;
use tokio::time::Instant;

/// The shortest period of the last-contact check (a session timeout of a few hundred
/// milliseconds would otherwise make it spin).
const CONTACT_CHECK_MIN: Duration = Duration::from_millis(50);

/// What the fence and the supervisor share.
#[derive(Debug, Clone)]
pub struct Fence {
    /// False from the moment the node must stop until the supervisor resumes it.
    acting: Arc<AtomicBool>,
    dispatcher: Dispatcher,
    stale_contact: Arc<AtomicBool>,
}

impl Fence {
    pub fn new(acting: Arc<AtomicBool>, dispatcher: Dispatcher) -> Self {
        Self {
            acting,
            dispatcher,
            stale_contact: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops every action of this node now (idempotent).
    pub fn stop_acting(&self) {
        if self.acting.swap(false, Ordering::SeqCst) {
            self.dispatcher.session_lost();
        }
    }

    /// Whether the node acts.
    pub fn is_acting(&self) -> bool {
        self.acting.load(Ordering::SeqCst)
    }

    /// Marks the node acting again (the supervisor, once resumed).
    pub fn resumed(&self) {
        self.acting.store(true, Ordering::SeqCst);
        self.stale_contact.store(false, Ordering::SeqCst);
    }

    /// Whether the last stop was for a stale last contact without any report (the supervisor
    /// resumes once the contact is fresh again).
    pub fn stopped_for_stale_contact(&self) -> bool {
        self.stale_contact.load(Ordering::SeqCst)
    }

    /// Watches `registry` until dropped (abort the task to end it).
    pub async fn watch(self, registry: Arc<dyn Registry>, mut states: ConnectionListener) {
        let bound = registry.session_timeout() * 2 / 3;
        let mut suspended_until: Option<Instant> = None;
        let mut contact_check = tokio::time::interval((bound / 4).max(CONTACT_CHECK_MIN));
        loop {
            let deadline = suspended_until;
            tokio::select! {
                state = states.next() => match state {
                    Some(ConnectionState::Suspended) => {
                        let reported = Instant::now() + bound;
                        let deadline = match registry.last_contact() {
                            Some(at) => reported.min(Instant::from_std(at) + bound),
                            None => reported,
                        };
                        tracing::warn!(?bound, stop_in = ?deadline.saturating_duration_since(Instant::now()), "registry connection suspended");
                        suspended_until = Some(deadline);
                    }
                    Some(ConnectionState::SessionLost) => {
                        tracing::error!("registry session lost; stopping all actions until a new session is up");
                        self.stop_acting();
                        suspended_until = None;
                    }
                    Some(ConnectionState::Connected | ConnectionState::Reconnected) => {
                        suspended_until = None;
                    }
                    None => return,
                },
                _ = super::sleep_until(deadline) => {
                    tracing::warn!(?bound, last_contact_ago = ?registry.last_contact().map(|at| at.elapsed()), "registry unreachable for two thirds of the session timeout; acting as if the session were lost");
                    self.stop_acting();
                    suspended_until = None;
                }
                _ = contact_check.tick() => {
                    let Some(ago) = registry.last_contact().map(|at| at.elapsed()) else {
                        continue;
                    };
                    if ago > bound && self.is_acting() {
                        tracing::warn!(?ago, ?bound, "no exchange with the registry succeeded for two thirds of the session timeout; acting as if the session were lost");
                        self.stale_contact.store(true, Ordering::SeqCst);
                        self.stop_acting();
                    }
                }
            }
        }
    }
}
